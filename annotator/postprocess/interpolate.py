"""Shape interpolation between two slice masks (the ITK-SNAP / Slicer "fill between slices" habit):
the signed distance maps of the two masks are blended, so a shape moves and morphs smoothly
instead of the two masks being cross-faded. Shapes that do not overlap at all thin out towards
the middle (the blend of two far apart distance maps is positive there): neighbouring slices of
one structure overlap, which is what this is for."""

from __future__ import annotations

import numpy as np


def signed_distance(mask_hw: np.ndarray, spacing_rc: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """(H, W) float: negative inside the mask, positive outside, 0 half-way across the boundary, in
    the units of `spacing_rc`. An empty mask is far outside everywhere (+inf)."""
    from scipy.ndimage import distance_transform_edt

    mask = np.asarray(mask_hw, dtype=bool)
    if not mask.any():
        return np.full(mask.shape, np.inf)
    if mask.all():
        return np.full(mask.shape, -np.inf)
    outside = distance_transform_edt(~mask, sampling=spacing_rc)
    inside = distance_transform_edt(mask, sampling=spacing_rc)
    return outside - inside + np.where(mask, 0.5, -0.5) * min(spacing_rc)


def blend_masks(mask_a: np.ndarray, mask_b: np.ndarray, t: float,
                spacing_rc: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """The shape a fraction `t` of the way from `mask_a` (t = 0) to `mask_b` (t = 1).

    An empty end shrinks the other shape towards nothing: the blend keeps the part of the other
    mask deeper than the interpolated depth, so half-way to "absent" leaves its core.
    """
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must be within 0..1, got {t}")
    a = np.asarray(mask_a, dtype=bool)
    b = np.asarray(mask_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} and {b.shape}")
    if not a.any() and not b.any():
        return np.zeros_like(a)
    if not a.any() or not b.any():
        present, weight = (b, t) if not a.any() else (a, 1.0 - t)
        sdf = signed_distance(present, spacing_rc)
        depth = float(-sdf.min())
        return sdf < -(1.0 - weight) * depth
    return (1.0 - t) * signed_distance(a, spacing_rc) + t * signed_distance(b, spacing_rc) < 0


def fill_between(mask_lo: np.ndarray, mask_hi: np.ndarray, count: int,
                 spacing_rc: tuple[float, float] = (1.0, 1.0)) -> list[np.ndarray]:
    """The `count` slices strictly between two slice masks, lowest first."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return [blend_masks(mask_lo, mask_hi, (i + 1) / (count + 1), spacing_rc) for i in range(count)]


def fill_between_slices(array: np.ndarray, label_id: int, axis: int,
                        spacing_zyx_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """A copy of the label array in which every run of slices (along `axis`) without `label_id`
    that lies between two slices with it is filled by shape interpolation. Only background is
    painted: other labels are never overwritten."""
    out = np.array(array, copy=True)
    moved = np.moveaxis(out, axis, 0)  # a view: writing into it writes into `out`
    in_plane = tuple(float(s) for i, s in enumerate(spacing_zyx_mm) if i != axis)
    has = np.flatnonzero((moved == label_id).any(axis=(1, 2)))
    for lo, hi in zip(has[:-1], has[1:], strict=True):
        if hi - lo < 2:
            continue
        fills = fill_between(moved[lo] == label_id, moved[hi] == label_id, int(hi - lo - 1),
                             (in_plane[0], in_plane[1]))
        for offset, mask in enumerate(fills, start=1):
            target = moved[lo + offset]
            target[mask & (target == 0)] = label_id
    return out
