"""Lengths in slice pixels that were measured on the labelled scans, scaled to a slice's matrix, so
a 512-matrix CT gets the same reach into the anatomy as the 122- and 126-pixel crops they came from."""

from __future__ import annotations

# The labelled scans' slices are at most this many pixels on their longest side (122 and 126).
REFERENCE_SIDE_PX = 128.0


def pixel_scale(shape: tuple[int, ...]) -> float:
    """How many pixels of a slice of `shape` (H, W, ...) make one pixel of the reference slice: its
    longest side over REFERENCE_SIDE_PX, never below 1 (a pixel is the finest a length can be)."""
    return max(1.0, max(int(v) for v in shape[:2]) / REFERENCE_SIDE_PX)
