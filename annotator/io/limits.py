"""What a file's header may make us allocate: the size it claims is checked against the file's own
size and a cap before any voxel is read, so a crafted or damaged header is refused, not obeyed.

The cap is ANNOTATOR_MAX_VOLUME_GB (default 8 GiB of decoded voxels per volume: a 2000-slice
512² CT in float32 is 2 GiB); a larger volume needs that variable raised on purpose.
"""

from __future__ import annotations

import os

from annotator.core.errors import InputError

DEFAULT_MAX_VOLUME_GB = 8.0
# The most one byte of DEFLATE (gzip, zlib) data can expand to; a longer claim is a lie.
DEFLATE_MAX_RATIO = 1032


def max_volume_bytes() -> int:
    """The cap on one volume's decoded voxels, in bytes."""
    text = os.environ.get("ANNOTATOR_MAX_VOLUME_GB", "")
    try:
        gigabytes = float(text) if text else DEFAULT_MAX_VOLUME_GB
    except ValueError:
        gigabytes = DEFAULT_MAX_VOLUME_GB
    return int(max(gigabytes, 0.0) * (1 << 30))


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"


def check_within_cap(path: str | os.PathLike[str] | None, claimed_bytes: int, what: str = "voxel data") -> None:
    """InputError naming `path` if the header claims more than the cap allows."""
    cap = max_volume_bytes()
    if claimed_bytes > cap:
        raise InputError(path, f"header claims {human_bytes(claimed_bytes)} of {what}, more than the "
                               f"{human_bytes(cap)} limit (ANNOTATOR_MAX_VOLUME_GB); refusing to allocate it")


def check_fits_file(path: str | os.PathLike[str] | None, claimed_bytes: int, stored_bytes: int, *, expansion: float = 1.0,
                    what: str = "voxel data") -> None:
    """Refuse a header claiming more than `stored_bytes` of file can hold.

    expansion: how many decoded bytes one stored byte can give at most (1 for raw data,
    DEFLATE_MAX_RATIO for gzip); 0 means "unknown" and nothing is checked.
    """
    if claimed_bytes < 0:
        raise InputError(path, f"header claims a negative size of {what}")
    if expansion > 0 and claimed_bytes > stored_bytes * expansion:
        if expansion == 1.0:
            detail = f"the file holds only {human_bytes(max(stored_bytes, 0))} after the header (cut short?)"
        else:
            detail = (f"{human_bytes(max(stored_bytes, 0))} of compressed data cannot expand to that "
                      "(damaged or crafted header)")
        raise InputError(path, f"header claims {human_bytes(claimed_bytes)} of {what}, but {detail}")
