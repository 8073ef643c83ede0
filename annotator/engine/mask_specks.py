"""Holes and crumbs finer than a pixel of the reference slice: what pixel-level decisions (a random
walker, a per-pixel grey test, a model's logits thresholded on noise) leave on a fine, noisy
matrix. Nothing a click could point at, so nothing a click could take away; a clinician sees them
as pinholes in an organ."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from annotator.engine.pixel_lengths import length_scale


def without_specks(mask: np.ndarray, clicks_rc: Sequence[tuple[int, int, bool]], below_px: int) -> np.ndarray:
    """`mask` with its holes (binary_fill_holes' notion: background 4-connected) and its islands
    (8-connected pieces other than the largest) of fewer than `below_px` pixels filled or dropped,
    except those holding a click (row, col, positive): a hole a negative click made stays, as does
    a piece a positive click asked for."""
    from scipy.ndimage import binary_fill_holes, label

    mask = np.asarray(mask, dtype=bool)
    out = mask.copy()
    holes, n_holes = label(binary_fill_holes(mask) & ~mask)
    kept = {int(holes[r, c]) for r, c, positive in clicks_rc if not positive}
    if n_holes:
        sizes = np.bincount(holes.ravel())
        small = [k for k in range(1, n_holes + 1) if sizes[k] < below_px and k not in kept]
        out |= np.isin(holes, small)
    pieces, n_pieces = label(out, structure=np.ones((3, 3), dtype=bool))
    if n_pieces > 1:
        sizes = np.bincount(pieces.ravel())
        sizes[0] = 0
        kept = {int(pieces[r, c]) for r, c, positive in clicks_rc if positive} | {int(np.argmax(sizes))}
        small = [k for k in range(1, n_pieces + 1) if sizes[k] < below_px and k not in kept]
        out &= ~np.isin(pieces, small)
    return out


def speck_px(side_px: float) -> int:
    """The fewest pixels a hole or an island must hold not to be a speck, for a speck side of
    `side_px` slice pixels; 1 (nothing is a speck) at a side of one pixel or less."""
    return max(1, int(np.ceil(side_px ** 2)))


def without_specks_finer_than_reference(mask: np.ndarray, clicks_rc: Sequence[tuple[int, int, bool]] = (),
                                        side_px: float = 1.0) -> np.ndarray:
    """`mask` without specks smaller than a square of `side_px` reference-slice pixels, grown with
    the matrix as far as the object's size allows (pixel_lengths.length_scale); on a slice no finer
    than the reference, `mask` as is (a pixel there can be anatomy)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any() or side_px <= 0:
        return mask
    below = speck_px(side_px * length_scale(mask.shape, float(np.count_nonzero(mask))))
    return without_specks(mask, clicks_rc, below) if below > 1 else mask
