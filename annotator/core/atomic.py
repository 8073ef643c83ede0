"""Atomic file writes (temp file in the same folder + rename) so a crash never leaves half a file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is renamed onto `target`.

    The temporary name keeps the target's suffixes (".nii.gz", ".png") so writers that pick a
    format from the file name behave. On error the temporary file is removed and `target` is
    left exactly as it was. overwrite=False refuses to replace an existing file.
    """
    target = Path(target)
    if not overwrite and target.exists():
        raise FileExistsError(f"{target}: already exists (refusing to overwrite)")
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes) or ".tmp"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name.split('.')[0]}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not overwrite and target.exists():
            raise FileExistsError(f"{target}: already exists (refusing to overwrite)")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes, *, overwrite: bool = True) -> None:
    with atomic_path(target, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(target: str | os.PathLike[str], text: str, *, overwrite: bool = True) -> None:
    atomic_write_bytes(target, text.encode("utf-8"), overwrite=overwrite)
