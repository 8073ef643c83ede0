"""On-disk cache of exported/compiled models, so only the first start pays for export.

Each entry is a folder under settings.compiled_model_dir() named from a key (weights SHA-256,
runtime and its version, precision, input shapes, ...). It is built in a temporary folder and
renamed into place (atomic), and holds a manifest with the SHA-256 of every file: an entry whose
files do not match, or that the runtime fails to load, is deleted and rebuilt, never trusted.

A manifest beside the files it certifies proves nothing to whoever can write that folder, so the
SHA-256 of every manifest we wrote is also recorded outside the cache (the trust folder, under
the config directory): an entry is used only if its manifest is one we recorded for that key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
MANIFEST = "manifest.json"
CACHE_FORMAT = 1


@dataclass(frozen=True)
class ArtifactKey:
    """Everything an exported/compiled model depends on; any difference is another entry."""

    part: str  # "lite-medsam.encoder"
    model_sha256: str
    runtime: str  # "onnx", "openvino"
    runtime_version: str  # e.g. "torch 2.13.0 / opset 17" or "openvino 2026.4.1"
    precision: str
    input_shapes: tuple[tuple[int, ...], ...]
    extra: tuple[tuple[str, str], ...] = ()  # e.g. (("cpu", "..."),) for machine-specific blobs

    def digest(self) -> str:
        payload = json.dumps(asdict(self), sort_keys=True, default=list).encode()
        return hashlib.sha256(payload).hexdigest()

    def folder_name(self) -> str:
        safe_part = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.part)
        return f"{safe_part}-{self.runtime}-{self.precision}-{self.digest()[:16]}"


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    builds: int = 0
    rebuilt_corrupt: int = 0
    events: list[str] = field(default_factory=list)


class CompiledModelCache:
    """Folders of exported models keyed by ArtifactKey; see the module docstring."""

    def __init__(self, root: str | os.PathLike[str] | None = None,
                 trust_dir: str | os.PathLike[str] | None = None) -> None:
        if root is None:
            from annotator.settings import compiled_model_dir, config_dir

            root = compiled_model_dir()
            trust_dir = trust_dir or config_dir() / "compiled-model-trust"
        self.root = Path(root)
        # outside the cache folder: what certifies the entries must not live beside them
        self.trust_dir = Path(trust_dir) if trust_dir is not None else self.root.with_name(self.root.name + ".trust")
        self.stats = CacheStats()

    def _trust_path(self, key: ArtifactKey) -> Path:
        return self.trust_dir / f"{key.folder_name()}.json"

    def _trusted_manifests(self, key: ArtifactKey) -> set[str]:
        try:
            record = json.loads(self._trust_path(key).read_text(encoding="utf-8"))
            if record.get("key_digest") != key.digest():
                return set()
            return {str(m) for m in record.get("manifests", [])}
        except (OSError, ValueError, TypeError, AttributeError):
            return set()

    def _trust(self, key: ArtifactKey, manifest_sha: str) -> None:
        from annotator.core.atomic import atomic_write_text

        known = sorted(self._trusted_manifests(key) | {manifest_sha})[-8:]
        atomic_write_text(self._trust_path(key), json.dumps({"key_digest": key.digest(), "manifests": known}))

    def folder(self, key: ArtifactKey) -> Path:
        return self.root / key.folder_name()

    def _verified(self, key: ArtifactKey) -> Path | None:
        """The entry's folder if its manifest matches the key and every file its hash; else None."""
        folder = self.folder(key)
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            return None
        try:
            manifest_bytes = manifest_path.read_bytes()
            if hashlib.sha256(manifest_bytes).hexdigest() not in self._trusted_manifests(key):
                raise ValueError("its manifest is not one this app recorded (written by something else?)")
            manifest = json.loads(manifest_bytes.decode("utf-8"))
            if manifest.get("format") != CACHE_FORMAT or manifest.get("key_digest") != key.digest():
                raise ValueError("manifest is for another key")
            files = manifest["files"]
            if not files:
                raise ValueError("manifest lists no files")
            for name, sha in files.items():
                if file_sha256(folder / name) != sha:
                    raise ValueError(f"{name}: SHA-256 does not match the manifest")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("%s: corrupt compiled model (%s); rebuilding", folder, exc)
            self.stats.rebuilt_corrupt += 1
            self.stats.events.append(f"corrupt:{key.folder_name()}")
            return None
        return folder

    def get_or_build(self, key: ArtifactKey, build: Callable[[Path], None],
                     load: Callable[[Path], T]) -> T:
        """load(folder) of the cached entry, building it first with build(empty_folder) if needed.

        A cached entry that fails verification or whose load raises is removed and rebuilt once.
        """
        folder = self._verified(key)
        if folder is not None:
            try:
                result = load(folder)
            except Exception as exc:  # noqa: BLE001 - any runtime error loading a cached file means "corrupt"
                log.warning("%s: cached model does not load (%s); rebuilding", folder, exc)
                self.stats.rebuilt_corrupt += 1
                self.stats.events.append(f"unloadable:{key.folder_name()}")
            else:
                self.stats.hits += 1
                self.stats.events.append(f"hit:{key.folder_name()}")
                return result
        folder = self._build(key, build)
        return load(folder)

    def _build(self, key: ArtifactKey, build: Callable[[Path], None]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.folder(key)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key.folder_name()}.", dir=self.root))
        try:
            build(tmp)
            files = {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            manifest = {"format": CACHE_FORMAT, "key_digest": key.digest(), "key": asdict(key),
                        "files": files}
            manifest_bytes = json.dumps(manifest, indent=1, default=list).encode("utf-8")
            (tmp / MANIFEST).write_bytes(manifest_bytes)
            # recorded before the rename, so another process that finds this entry first trusts it
            self._trust(key, hashlib.sha256(manifest_bytes).hexdigest())
            if target.exists():
                shutil.rmtree(target)
            try:
                os.rename(tmp, target)
            except OSError:
                # Another process finished the same entry first; use theirs if it verifies.
                if self._verified(key) is None:
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self.stats.builds += 1
        self.stats.events.append(f"build:{key.folder_name()}")
        log.info("compiled model cached in %s", target)
        return target
