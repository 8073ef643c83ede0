"""Crash recovery: the label map is saved every few minutes beside a small JSON sidecar, keyed by the
volume's content_id, so reopening the same image after a crash can offer the lost work back."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from annotator.core.atomic import atomic_path, atomic_write_text
from annotator.core.errors import InputError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_SAFE_ID = re.compile(r"[0-9A-Za-z_-]{1,128}")


@dataclass(frozen=True)
class AutosaveInfo:
    """What the sidecar says about one autosave (read without loading the voxels)."""

    labels_path: Path
    sidecar_path: Path
    content_id: str
    source_path: str
    shape_zyx: tuple[int, int, int]
    saved_at: float  # seconds since the epoch


def _checked_id(volume_content_id: str) -> str:
    # The id becomes a file name: refuse anything that could leave the folder.
    if not isinstance(volume_content_id, str) or not _SAFE_ID.fullmatch(volume_content_id):
        raise ValueError(f"not a usable volume content id: {volume_content_id!r}")
    return volume_content_id


def autosave_paths(directory: str | os.PathLike[str], volume_content_id: str) -> tuple[Path, Path]:
    """(labels .npz, sidecar .json) for one volume."""
    name = _checked_id(volume_content_id)
    directory = Path(directory)
    return directory / f"{name}.npz", directory / f"{name}.json"


def save_autosave(directory: str | os.PathLike[str], volume_content_id: str, source_path: str | None,
                  label_array: np.ndarray, label_table_json: list[dict[str, Any]] | dict[str, Any]) -> Path:
    """Write the label map (+ its table) atomically; returns the .npz path.

    The table is stored inside the .npz too, so a crash between the two writes can never pair
    voxels with a stale table; the sidecar only lets find_autosave answer without loading voxels.
    """
    label_array = np.asarray(label_array)
    if label_array.dtype != np.uint16 or label_array.ndim != 3:
        raise ValueError(f"autosave expects a (z, y, x) uint16 label array, got {label_array.dtype} "
                         f"{label_array.shape}")
    labels_path, sidecar_path = autosave_paths(directory, volume_content_id)
    table_text = json.dumps(label_table_json)
    with atomic_path(labels_path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, labels=np.ascontiguousarray(label_array),
                            table_json=np.frombuffer(table_text.encode("utf-8"), dtype=np.uint8))
        fh.flush()
        os.fsync(fh.fileno())
    sidecar = {
        "format_version": FORMAT_VERSION,
        "content_id": volume_content_id,
        "source_path": str(source_path or ""),
        "shape_zyx": [int(n) for n in label_array.shape],
        "dtype": "uint16",
        "saved_at": time.time(),
        "label_table": label_table_json,
    }
    atomic_write_text(sidecar_path, json.dumps(sidecar, indent=2))
    return labels_path


def find_autosave(directory: str | os.PathLike[str], volume_content_id: str) -> AutosaveInfo | None:
    """The autosave of this volume, or None (none there, or its sidecar is unreadable)."""
    labels_path, sidecar_path = autosave_paths(directory, volume_content_id)
    if not (labels_path.is_file() and sidecar_path.is_file()):
        return None
    try:
        data = json.loads(sidecar_path.read_text(encoding="utf-8"))
        shape = tuple(int(n) for n in data["shape_zyx"])
        if data.get("content_id") != volume_content_id or len(shape) != 3:
            raise ValueError("sidecar does not describe this volume")
        return AutosaveInfo(labels_path, sidecar_path, volume_content_id, str(data.get("source_path", "")),
                            shape, float(data.get("saved_at", 0.0)))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: unreadable autosave sidecar (%s); ignored", sidecar_path, exc)
        return None


def load_autosave(info: AutosaveInfo) -> tuple[np.ndarray, list[dict[str, Any]] | dict[str, Any]]:
    """(uint16 zyx label array, label table json). InputError naming the file if it is damaged."""
    path = info.labels_path
    try:
        raw = path.read_bytes()
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            if "labels" not in npz.files or "table_json" not in npz.files:
                raise InputError(path, f"autosave is missing arrays (has {sorted(npz.files)})")
            labels = npz["labels"]
            table_bytes = npz["table_json"]
    except InputError:
        raise
    except Exception as exc:  # zip/zlib/format errors of a damaged file all mean the same
        raise InputError(path, f"autosave is damaged and cannot be read ({type(exc).__name__}: {exc})") from exc
    if labels.dtype != np.uint16:
        raise InputError(path, f"autosave labels are {labels.dtype}, expected uint16")
    if labels.shape != tuple(info.shape_zyx):
        raise InputError(path, f"autosave labels have shape {labels.shape}, expected {tuple(info.shape_zyx)}")
    if table_bytes.dtype != np.uint8 or table_bytes.ndim != 1:
        raise InputError(path, "autosave label table is not stored as text")
    try:
        table = json.loads(table_bytes.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(path, f"autosave label table is not valid JSON ({exc})") from exc
    if not isinstance(table, (list, dict)):
        raise InputError(path, "autosave label table is neither a list nor a name map")
    return labels, table


def discard_autosave(directory: str | os.PathLike[str], volume_content_id: str) -> bool:
    """Remove this volume's autosave (both files); True if anything was removed."""
    removed = False
    for path in autosave_paths(directory, volume_content_id):
        try:
            path.unlink()
            removed = True
        except FileNotFoundError:
            pass
    return removed


# ---- one window's claim on a volume's recovery files --------------------------------------------
MAX_SLOTS = 16


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive lock on `path`, or None if someone holds it. The
    operating system drops the lock when the process dies, so a crashed window frees its slot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.name == "nt":
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


class AutosaveSlot:
    """The recovery files one window writes for one volume, locked for as long as it is open.

    A second window (or app instance) on the same image gets the next slot, so neither overwrites
    nor deletes the other's recovery copy. Writes are ordered: a write of an older snapshot
    (`sequence`) that arrives after a newer one (a background save finishing after the final save
    on close) is dropped instead of replacing it.
    """

    def __init__(self, directory: Path, name: str, lock_fd: int) -> None:
        self.directory = directory
        self.name = name
        self._lock_fd: int | None = lock_fd
        self._write_lock = threading.Lock()
        self._written = -1

    @classmethod
    def claim(cls, directory: str | os.PathLike[str], volume_content_id: str) -> AutosaveSlot:
        """The first free slot of this volume (its own id, then id-1, id-2, ...)."""
        directory = Path(directory)
        base = _checked_id(volume_content_id)
        for n in range(MAX_SLOTS):
            name = base if n == 0 else f"{base[:120]}-{n}"
            fd = _try_lock(directory / f"{name}.lock")
            if fd is not None:
                return cls(directory, name, fd)
        raise OSError(f"{directory}: {MAX_SLOTS} windows already hold autosaves of this image")

    def save(self, sequence: int, source_path: str | None, label_array: np.ndarray,
             label_table_json: list[dict[str, Any]] | dict[str, Any]) -> bool:
        """Write snapshot number `sequence`; False (nothing written) if a newer one is already saved."""
        with self._write_lock:
            if sequence < self._written:
                return False
            save_autosave(self.directory, self.name, source_path, label_array, label_table_json)
            self._written = sequence
            return True

    def find(self) -> AutosaveInfo | None:
        return find_autosave(self.directory, self.name)

    def discard(self) -> bool:
        with self._write_lock:
            self._written = -1
            return discard_autosave(self.directory, self.name)

    def release(self) -> None:
        """Give the slot back (its files stay: they are what a later window may offer)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the lock
            self._lock_fd = None

    @property
    def held(self) -> bool:
        return self._lock_fd is not None
