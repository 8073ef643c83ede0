"""Resampling a stack that is not a regular grid (gantry tilt, uneven gaps) onto an orthogonal grid
in patient space, only when the caller asks for it."""

from __future__ import annotations

from typing import Any

import numpy as np

from annotator.core.errors import InputError
from annotator.io.dicom.frames import Frame
from annotator.io.dicom.stack import SeriesPlan


def regularize_stack(plan: SeriesPlan, frames: list[Frame], stack: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Resample an irregular stack (tilt, uneven gaps) onto a regular orthogonal grid in patient space.

    Grid: x along the image rows' direction, z along the line through the slice origins, y
    completing a right-handed orthogonal frame; z spacing = the smallest gap, y spacing = the
    pixel spacing; extent covers every source voxel. Linear interpolation within and between slices.
    """
    from scipy.ndimage import map_coordinates

    row_cos = np.asarray(plan.direction_lps[:, 0])
    col_cos = np.asarray(plan.direction_lps[:, 1])
    normal = np.asarray(plan.direction_lps[:, 2])
    ipps = np.array([f.ipp for f in frames])
    dists = ipps @ normal
    stack_dir = ipps[-1] - ipps[0]
    stack_dir /= np.linalg.norm(stack_dir)
    x_dir = row_cos - (row_cos @ stack_dir) * stack_dir
    x_dir /= np.linalg.norm(x_dir)
    y_dir = np.cross(stack_dir, x_dir)
    if y_dir @ col_cos < 0:
        y_dir = -y_dir
    z_dir = np.cross(x_dir, y_dir)
    if z_dir @ stack_dir < 0:  # keep index order along the slice positions
        y_dir, z_dir = -y_dir, -z_dir
    dz_along = np.diff(ipps @ stack_dir)
    spacing_z = float(np.min(np.abs(dz_along)))
    _, dy, dx = plan.spacing_zyx_mm
    nz_src, ny_src, nx_src = stack.shape
    # corners of every source slice, expressed in the new frame
    corner_list = []
    for ipp in (ipps[0], ipps[-1]):
        for j in (0, ny_src - 1):
            for i in (0, nx_src - 1):
                corner_list.append(ipp + row_cos * dx * i + col_cos * dy * j)
    corners = np.array(corner_list)
    frame_axes = np.column_stack([x_dir, y_dir, z_dir])
    start = ipps[0]
    local = (corners - start) @ frame_axes
    lo = local.min(axis=0)
    hi = local.max(axis=0)
    lo[2], hi[2] = 0.0, float((ipps[-1] - ipps[0]) @ z_dir)
    steps = np.array([dx, dy, spacing_z])
    n = np.floor((hi - lo) / steps + 1e-6).astype(int) + 1
    if n.prod() > 4 * stack.size + 10_000_000:
        raise InputError(plan.uid, "resampling this series would need an unreasonably large grid")
    origin = start + frame_axes @ lo
    # world position of every target voxel -> fractional source (slice, row, column), one
    # target slice at a time so memory stays at a few slices whatever the volume size
    source = stack.astype(np.float32, copy=False)
    fill = float(stack.min())
    values = np.empty(tuple(n[::-1]), dtype=stack.dtype if stack.dtype.kind in "iu" else np.float32)
    yy, xx = np.meshgrid(np.arange(n[1]), np.arange(n[0]), indexing="ij")
    plane_offsets = (np.stack([xx, yy], axis=-1) * steps[:2]) @ frame_axes[:, :2].T
    for z in range(n[2]):
        world = origin + frame_axes[:, 2] * steps[2] * z + plane_offsets
        d = world @ normal
        k = np.interp(d, dists, np.arange(nz_src, dtype=np.float64))
        outside = (d < dists[0] - 1e-6) | (d > dists[-1] + 1e-6)
        k_lo = np.floor(k).astype(int)
        k_hi = np.minimum(k_lo + 1, nz_src - 1)
        frac = (k - k_lo)[..., None]
        slice_origin = ipps[k_lo] * (1 - frac) + ipps[k_hi] * frac
        rel = world - slice_origin
        col_index = (rel @ row_cos) / dx
        row_index = (rel @ col_cos) / dy
        k = np.where(outside, -10.0, k)
        plane = map_coordinates(source, [k, row_index, col_index], order=1, mode="constant", cval=fill)
        values[z] = np.rint(plane) if values.dtype.kind in "iu" else plane
    geometry = {
        "spacing_zyx_mm": (spacing_z, float(dy), float(dx)),
        "origin_lps_mm": tuple(float(v) for v in origin),
        "direction_lps": frame_axes,
    }
    return values, geometry


