"""The one place a volume slice becomes the 8-bit RGB image an encoder sees, so every engine,
the cache key and the CLI agree on what was embedded."""

from __future__ import annotations

import numpy as np

from annotator.core.geometry import Window, apply_window, slice_2d
from annotator.core.volume import Volume


def slice_rgb_u8(volume: Volume, axis: int, index: int, window: Window) -> np.ndarray:
    """(H, W, 3) uint8: raw slice `index` along array `axis` (rows/cols as core.geometry.slice_2d,
    no display flips), windowed with core.geometry.apply_window and repeated over 3 channels."""
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    gray = apply_window(slice_2d(volume.array, axis, int(index)), window)
    return np.repeat(gray[:, :, None], 3, axis=2)


def slice_count(volume: Volume, axis: int) -> int:
    """Number of slices along array `axis`."""
    return int(volume.array.shape[axis])
