"""EmbeddingCache: pay for each slice embedding once, ever. A byte-bounded memory LRU (fp16) in
front of a byte-bounded disk tier of safetensors files whose stored key signature is checked on load."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from annotator.core.atomic import atomic_path
from annotator.engine.api import EmbeddingKey, ImageEmbedding

if TYPE_CHECKING:
    from annotator.settings import Settings


log = logging.getLogger(__name__)

DISK_FORMAT_VERSION = "1"
_FEATURES = "features"
_EXTRA_PREFIX = "extra."


@dataclass
class CacheStats:
    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    disk_rejected: int = 0  # files present but unusable (signature mismatch, corrupt)


def _pair(values: list[int]) -> tuple[int, int]:
    first, second = values
    return int(first), int(second)


def _to_fp16(array: np.ndarray) -> np.ndarray:
    if np.issubdtype(array.dtype, np.floating) and array.dtype != np.float16:
        return array.astype(np.float16)
    return array


def _compact(embedding: ImageEmbedding) -> ImageEmbedding:
    """The same embedding with float arrays stored as float16 (half the memory and disk)."""
    return ImageEmbedding(
        features=np.ascontiguousarray(_to_fp16(embedding.features)),
        original_size=tuple(int(v) for v in embedding.original_size),  # type: ignore[arg-type]
        input_size=tuple(int(v) for v in embedding.input_size),  # type: ignore[arg-type]
        model_id=embedding.model_id,
        extras={k: np.ascontiguousarray(_to_fp16(v)) for k, v in embedding.extras.items()},
    )


class EmbeddingCache:
    """Thread-safe two-tier cache of ImageEmbedding by EmbeddingKey.

    memory_bytes: budget of the in-memory LRU (features kept as float16).
    disk_dir:     folder of the disk tier, or None for memory only (the app passes
                  annotator.settings.embedding_cache_dir()).
    disk_bytes:   budget of the disk tier; least recently used files are removed beyond it.

    Files are `<signature>.safetensors` (portable across machines: no pickle, little-endian
    arrays); their metadata holds the full key and its signature, and a file whose stored key
    differs from the requested one is a miss, never a wrong embedding.
    """

    def __init__(self, memory_bytes: int = 2 << 30, disk_dir: str | os.PathLike[str] | None = None,
                 disk_bytes: int = 20 << 30) -> None:
        if memory_bytes < 0 or disk_bytes < 0:
            raise ValueError("cache budgets must be >= 0 bytes")
        self.memory_bytes = int(memory_bytes)
        self.disk_bytes = int(disk_bytes)
        self.disk_dir = Path(disk_dir) if disk_dir is not None else None
        self.stats = CacheStats()
        self._memory: OrderedDict[str, ImageEmbedding] = OrderedDict()
        self._memory_used = 0
        self._disk_used: int | None = None  # scanned lazily
        self._lock = threading.RLock()

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> EmbeddingCache:
        """A cache with the user's budgets under the platformdirs embedding cache folder."""
        from annotator import settings as settings_module

        chosen = settings or settings_module.Settings.load()
        return cls(memory_bytes=chosen.memory_cache_bytes, disk_dir=settings_module.embedding_cache_dir(),
                   disk_bytes=chosen.disk_cache_bytes)

    # ---- public ------------------------------------------------------------------------------
    @property
    def memory_used_bytes(self) -> int:
        return self._memory_used

    def __len__(self) -> int:
        return len(self._memory)

    def contains(self, key: EmbeddingKey) -> bool:
        """True when `key` is in memory or has a file on disk (the file is not validated here)."""
        sig = key.signature()
        with self._lock:
            if sig in self._memory:
                return True
        return self.disk_dir is not None and self._disk_path(sig).exists()

    def get(self, key: EmbeddingKey) -> ImageEmbedding | None:
        """The cached embedding (float16 features) or None. A disk hit is promoted to memory."""
        sig = key.signature()
        with self._lock:
            hit = self._memory.get(sig)
            if hit is not None:
                self._memory.move_to_end(sig)
                self.stats.memory_hits += 1
                return hit
        loaded = self._load_disk(key, sig)
        with self._lock:
            if loaded is None:
                self.stats.misses += 1
                return None
            self.stats.disk_hits += 1
            self._remember(sig, loaded)
            return loaded

    def put(self, key: EmbeddingKey, embedding: ImageEmbedding) -> ImageEmbedding:
        """Store `embedding` in both tiers; returns the compact (float16) copy that was stored."""
        sig = key.signature()
        compact = _compact(embedding)
        with self._lock:
            self._remember(sig, compact)
        if self.disk_dir is not None and self.disk_bytes > 0:
            try:
                self._save_disk(key, sig, compact)
            except OSError as exc:  # a full or read-only disk must not break annotation
                log.warning("embedding cache: cannot write %s (%s)", self._disk_path(sig), exc)
        return compact

    def clear_memory(self) -> None:
        with self._lock:
            self._memory.clear()
            self._memory_used = 0

    # ---- memory tier -------------------------------------------------------------------------
    def _remember(self, sig: str, embedding: ImageEmbedding) -> None:
        size = embedding.nbytes
        if size > self.memory_bytes:
            return
        old = self._memory.pop(sig, None)
        if old is not None:
            self._memory_used -= old.nbytes
        self._memory[sig] = embedding
        self._memory_used += size
        while self._memory_used > self.memory_bytes and self._memory:
            _, evicted = self._memory.popitem(last=False)
            self._memory_used -= evicted.nbytes

    # ---- disk tier ---------------------------------------------------------------------------
    def _disk_path(self, sig: str) -> Path:
        assert self.disk_dir is not None
        return self.disk_dir / sig[:2] / f"{sig}.safetensors"

    def _save_disk(self, key: EmbeddingKey, sig: str, embedding: ImageEmbedding) -> None:
        from safetensors.numpy import save_file

        tensors = {_FEATURES: embedding.features}
        tensors.update({_EXTRA_PREFIX + k: v for k, v in embedding.extras.items()})
        metadata = {
            "format_version": DISK_FORMAT_VERSION,
            "signature": sig,
            "key": json.dumps(asdict(key), sort_keys=True, default=list),
            "original_size": json.dumps(list(embedding.original_size)),
            "input_size": json.dumps(list(embedding.input_size)),
            "model_id": embedding.model_id,
        }
        target = self._disk_path(sig)
        with atomic_path(target) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
        with self._lock:
            if self._disk_used is not None:
                self._disk_used += target.stat().st_size
        self._enforce_disk_budget(keep=target)

    def _load_disk(self, key: EmbeddingKey, sig: str) -> ImageEmbedding | None:
        if self.disk_dir is None:
            return None
        path = self._disk_path(sig)
        if not path.exists():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="np") as fh:
                meta = fh.metadata() or {}
                stored_key = json.loads(meta.get("key", "null"))
                expected_key = json.loads(json.dumps(asdict(key), sort_keys=True, default=list))
                if meta.get("signature") != sig or stored_key != expected_key:
                    log.warning("%s: stored key does not match the requested one; ignoring it", path)
                    self.stats.disk_rejected += 1
                    return None
                arrays = {name: fh.get_tensor(name) for name in fh.keys()}
            embedding = ImageEmbedding(
                features=arrays.pop(_FEATURES),
                original_size=_pair(json.loads(meta["original_size"])),
                input_size=_pair(json.loads(meta["input_size"])),
                model_id=meta["model_id"],
                extras={k[len(_EXTRA_PREFIX):]: v for k, v in arrays.items() if k.startswith(_EXTRA_PREFIX)},
            )
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a miss, never a crash
            log.warning("%s: unreadable cached embedding (%s); removing it", path, exc)
            self.stats.disk_rejected += 1
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)  # mark as recently used for the disk LRU
        except OSError:
            pass
        return embedding

    def disk_used_bytes(self) -> int:
        with self._lock:
            if self._disk_used is None:
                self._disk_used = sum(p.stat().st_size for p in self._disk_files())
            return self._disk_used

    def _disk_files(self) -> list[Path]:
        if self.disk_dir is None or not self.disk_dir.exists():
            return []
        return [p for p in self.disk_dir.glob("*/*.safetensors") if p.is_file()]

    def _enforce_disk_budget(self, keep: Path | None = None) -> None:
        if self.disk_used_bytes() <= self.disk_bytes:
            return
        with self._lock:
            entries = []
            for p in self._disk_files():
                try:
                    st = p.stat()
                except OSError:
                    continue
                entries.append((st.st_mtime, st.st_size, p))
            entries.sort()
            used = sum(size for _, size, _ in entries)
            # Evict down to 90% of the budget so the folder is not rescanned on every write.
            target = int(self.disk_bytes * 0.9)
            for _, size, p in entries:
                if used <= target:
                    break
                if keep is not None and p == keep:
                    continue
                p.unlink(missing_ok=True)
                used -= size
            self._disk_used = used
