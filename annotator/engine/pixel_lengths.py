"""Lengths in slice pixels that were measured on the labelled scans, scaled to a slice's matrix, so
a 512-matrix CT gets the same reach into the anatomy as the 122- and 126-pixel crops they came from,
but never more than the object's own size allows."""

from __future__ import annotations

import math

# The lengths were measured on slices at most this many pixels on their longest side (the labelled
# scans: 122 and 126).
REFERENCE_SIDE_PX = 128.0
# ... and measured on objects about this many pixels across there (the labelled items' median area:
# 236 px on the CT, 310 on the CTA). A smaller object on a finer matrix keeps lengths nearer those:
# on the labelled CT resampled to 0.75 mm, lengths grown with the matrix alone lost on its ribs,
# adrenals and spinal cord what they gained on the organs (BENCHMARKS.md).
REFERENCE_OBJECT_SIDE_PX = 16.0


def pixel_scale(shape: tuple[int, ...]) -> float:
    """How many pixels of a slice of `shape` (H, W, ...) make one pixel of the reference slice: its
    longest side over REFERENCE_SIDE_PX, never below 1 (a pixel is the finest a length can be)."""
    return max(1.0, max(int(v) for v in shape[:2]) / REFERENCE_SIDE_PX)


def length_scale(shape: tuple[int, ...], object_area_px: float | None) -> float:
    """pixel_scale, but no more than the object's side (the square root of its area) over
    REFERENCE_OBJECT_SIDE_PX, and never below 1: a small object on a fine matrix is as many pixels
    across as the objects the lengths were measured on, and lengths grown with the matrix would
    span it. Without an area (nothing there yet): pixel_scale."""
    scale = pixel_scale(shape)
    if object_area_px is None or object_area_px <= 0:
        return scale
    return min(scale, max(1.0, math.sqrt(float(object_area_px)) / REFERENCE_OBJECT_SIDE_PX))
