"""The connected pieces of a propagated mask (engine.propagate): a mask in separate pieces is
followed piece by piece, for LiteMedSAM segments one object per box and one box over two pieces
made it merge them or drop one; and the parts of a mask that touch another."""

from __future__ import annotations

import numpy as np


def pieces_to_follow(mask: np.ndarray, min_side_px: float) -> list[np.ndarray]:
    """`mask` split into its pieces (8-connected) of at least `min_side_px` squared pixels, each
    holding the smaller pieces nearest to it; [] when it has fewer than two such pieces."""
    from scipy.ndimage import distance_transform_edt, label

    labelled, count = label(mask, structure=np.ones((3, 3), dtype=bool))
    if count < 2:
        return []
    areas = np.bincount(labelled.ravel())[1:]
    large = [i + 1 for i, area in enumerate(areas) if area >= min_side_px ** 2]
    if len(large) < 2:
        return []
    # every pixel belongs to the nearest large piece, so crumbs go with their neighbour
    _, (rows, cols) = distance_transform_edt(~np.isin(labelled, large), return_indices=True)
    owner = labelled[rows, cols]
    return [mask & (owner == i) for i in large]


def parts_touching(mask: np.ndarray, other: np.ndarray) -> np.ndarray:
    """The connected (8-connected) parts of `mask` that overlap `other`; empty when none does."""
    from scipy.ndimage import label

    labelled, _ = label(mask, structure=np.ones((3, 3), dtype=bool))
    touching = np.unique(labelled[mask & other])
    return np.isin(labelled, touching[touching > 0])
