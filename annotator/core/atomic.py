"""Atomic file writes, so a crash never leaves half a file, nor a temporary one a dataset reader
would take for data.

A write goes to `<folder>/.annotator-partial-XXXX/<final name>`: the final name keeps writers that
pick a format from the suffix (".nii.gz", ".png") working, and the hidden folder keeps it out of
every flat listing (`glob("*.nii.gz")`, nnU-Net's `subfiles`, our own folder walk, which skips
hidden entries). The file is fsynced, renamed onto the target, and the folder fsynced after the
rename. It is created with the user's umask like any other file. Partial folders left by a crash
are removed when the next write in that folder finds them older than STALE_AFTER_S.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

PARTIAL_PREFIX = ".annotator-partial-"
# A partial folder this old belongs to a writer that died: no single file takes us an hour.
STALE_AFTER_S = 3600.0

_swept: set[str] = set()  # folders already cleaned by this process (listing one per write is O(n²))
_swept_lock = threading.Lock()


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # Windows cannot open a folder; its rename is already durable enough
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (network shares) refuse fsync on folders; the data is still written
    finally:
        os.close(fd)


def remove_stale_partials(folder: str | os.PathLike[str], *, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete partial-write folders in `folder` left by writers that crashed; returns what went."""
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(PARTIAL_PREFIX):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < older_than_s:
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


def _sweep_once(folder: Path) -> None:
    key = os.fspath(folder.resolve())
    with _swept_lock:
        if key in _swept:
            return
        _swept.add(key)
    remove_stale_partials(folder)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path with `target`'s file name; on success it replaces `target`.

    On error the temporary file is removed and `target` is left exactly as it was.
    overwrite=False refuses to replace an existing file, also one that appeared while writing.
    """
    target = Path(target)
    if not overwrite and target.exists():
        raise FileExistsError(f"{target}: already exists (refusing to overwrite)")
    target.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(target.parent)
    workdir = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=target.parent))
    tmp = workdir / target.name
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"{target}: the writer produced no file")
        _fsync_path(tmp)
        if overwrite:
            os.replace(tmp, target)
        else:
            _rename_if_absent(tmp, target)
        _fsync_path(target.parent, directory=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _rename_if_absent(tmp: Path, target: Path) -> None:
    # A hard link fails if the target exists, closing the gap between the check and the rename.
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise FileExistsError(f"{target}: already exists (refusing to overwrite)") from None
    except OSError:  # no hard links on this file system (FAT, some shares): check, then rename
        if target.exists():
            raise FileExistsError(f"{target}: already exists (refusing to overwrite)") from None
        os.replace(tmp, target)


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes, *, overwrite: bool = True) -> None:
    with atomic_path(target, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def atomic_write_text(target: str | os.PathLike[str], text: str, *, overwrite: bool = True) -> None:
    atomic_write_bytes(target, text.encode("utf-8"), overwrite=overwrite)
