"""Per-label measurements a reviewer acts on: volume, islands (pieces beside the largest) and
enclosed holes, computed on each label's bounding box so a 512² × 300 map with 40 labels stays fast.

Islands use full connectivity (26 in 3-D), the notion of "one piece" of `cleanup`; a hole is a
background region the label encloses completely (6-connected background, as scipy's
binary_fill_holes defines it), i.e. exactly what `cleanup.fill_holes` would fill.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelStats:
    label_id: int
    voxels: int
    volume_ml: float
    islands: int  # pieces beside the largest one
    island_voxels: int
    holes: int  # enclosed background regions
    hole_voxels: int


def label_stats(array: np.ndarray, spacing_zyx_mm: Sequence[float],
                label_ids: Sequence[int] | None = None) -> list[LabelStats]:
    """Statistics of every nonzero label present in `array` (or of `label_ids`, absent ones as zeros)."""
    from scipy import ndimage

    array = np.asarray(array)
    if array.dtype.kind not in "ui":
        raise ValueError(f"label array must hold integers, got {array.dtype}")
    voxel_ml = float(np.prod([float(s) for s in spacing_zyx_mm])) / 1000.0
    present = [int(v) for v in np.unique(array) if v > 0]
    ids = present if label_ids is None else [int(i) for i in label_ids]
    top = max(present, default=0)
    boxes = ndimage.find_objects(array.astype(np.int64, copy=False), max_label=top) if top else []
    structure = ndimage.generate_binary_structure(array.ndim, array.ndim)
    out = []
    for label_id in ids:
        box = boxes[label_id - 1] if 0 < label_id <= len(boxes) else None
        if box is None:
            out.append(LabelStats(label_id, 0, 0.0, 0, 0, 0, 0))
            continue
        mask = array[box] == label_id
        voxels = int(np.count_nonzero(mask))
        pieces, n = ndimage.label(mask, structure=structure)
        islands = island_voxels = 0
        if n > 1:
            sizes = np.bincount(pieces.ravel())[1:]
            islands = n - 1
            island_voxels = int(sizes.sum() - sizes.max())
        cavities = ndimage.binary_fill_holes(mask) & ~mask
        holes = 0
        if cavities.any():
            _, holes = ndimage.label(cavities)
        out.append(LabelStats(label_id, voxels, voxels * voxel_ml, islands, island_voxels, int(holes),
                              int(np.count_nonzero(cavities))))
    return out
