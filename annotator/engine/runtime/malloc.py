"""glibc malloc tuning at engine start: stops torch from mmap/munmap-ing every large tensor on CPU.

By default glibc serves allocations above a (dynamic) threshold with fresh mmap()s and hands
freed memory at the top of the heap straight back to the kernel. An encoder forward pass
allocates and frees the same large activations every layer, so each one page-faults again:
measured on the LiteMedSAM encoder this costs a third of torch's CPU time (figures below).
Switching per-allocation mmap off and raising the trim threshold keeps those
pages in the heap and reuses them. Apply it before the engine's worker thread first allocates
(M_ARENA_MAX only affects threads that have no arena yet).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
import threading

log = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
M_ARENA_MAX = -8

# What we apply, measured on the LiteMedSAM encoder (256², real weights, 1 thread, CPU time and
# minor page faults per forward pass, which unlike wall time are not blurred by other processes):
#   glibc defaults                                  2580 ms  448k faults
#   M_MMAP_THRESHOLD 32 MiB + M_TRIM_THRESHOLD 1 GiB 2457 ms  176k faults (tensors > 32 MiB still mmap)
#   M_MMAP_MAX 0 + M_TRIM_THRESHOLD 1 GiB            1688 ms    8k faults, but 279k in a worker thread
#   ... + M_ARENA_MAX 1                               1698 ms     0 faults, main and worker thread
# M_TOP_PAD made no measurable difference and is left alone. The engine runs in a worker thread
# whose own arena lives in mmap'd heaps that are trimmed eagerly, hence M_ARENA_MAX=1 (one
# encoder thread: no lock contention worth the page faults). Cost: freed memory stays in the
# process (up to 1 GiB at the top of the heap) instead of going back to the system.
DEFAULT_SETTINGS: dict[str, int] = {
    "M_MMAP_MAX": 0,  # no allocation is served by its own mmap (and unmapped again on free)
    "M_TRIM_THRESHOLD": 1 << 30,  # keep up to 1 GiB of freed heap instead of returning it each time
    "M_ARENA_MAX": 1,  # worker threads share the main (brk) heap instead of eagerly trimmed mmap heaps
}
_PARAM_IDS = {"M_TRIM_THRESHOLD": M_TRIM_THRESHOLD, "M_TOP_PAD": M_TOP_PAD,
              "M_MMAP_THRESHOLD": M_MMAP_THRESHOLD, "M_ARENA_MAX": M_ARENA_MAX,
              "M_MMAP_MAX": M_MMAP_MAX}

_lock = threading.Lock()
_applied: dict[str, int] | None = None


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    # musl (Alpine) has no mallopt; only glibc is tuned.
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc


def apply_mallopt(settings: dict[str, int]) -> dict[str, int]:
    """Apply each glibc mallopt setting; return those glibc accepted (empty off glibc/Linux)."""
    libc = _libc()
    if libc is None:
        return {}
    accepted: dict[str, int] = {}
    for name, value in settings.items():
        if name not in _PARAM_IDS:
            raise ValueError(f"unknown mallopt parameter {name!r}; expected one of {sorted(_PARAM_IDS)}")
        if libc.mallopt(_PARAM_IDS[name], int(value)) == 1:
            accepted[name] = int(value)
        else:
            log.debug("mallopt(%s, %d) refused by glibc", name, value)
    return accepted


def tune_malloc(settings: dict[str, int] | None = None) -> dict[str, int]:
    """Apply DEFAULT_SETTINGS once per process (later calls return what was applied).

    Set ANNOTATOR_NO_MALLOC_TUNING=1 to leave malloc alone (for measuring the difference).
    """
    global _applied
    import os

    with _lock:
        if _applied is not None:
            return dict(_applied)
        if os.environ.get("ANNOTATOR_NO_MALLOC_TUNING"):
            _applied = {}
            return {}
        _applied = apply_mallopt(DEFAULT_SETTINGS if settings is None else settings)
        if _applied:
            log.info("glibc malloc tuned for tensor workloads: %s", _applied)
        return dict(_applied)
