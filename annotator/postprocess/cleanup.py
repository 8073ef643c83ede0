"""Mask clean-up in physical units: fill holes, drop islands below a volume, keep the largest part, smooth.

Every operation works on one binary mask in 3-D or slice by slice (`per_slice_axis`), with
sizes in mm³ (mm² per slice) and smoothing in mm, so the same setting means the same thing on a
0.5 mm and a 5 mm scan. `clean_label_map` applies them label by label and reports the change.
Built on scipy.ndimage (no SimpleITK here: postprocess stays in the pure ring).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from annotator.postprocess.operations import CleanupOperation

Spacing = Sequence[float]


def _structure(ndim: int, connectivity: int | None) -> np.ndarray:
    from scipy import ndimage

    # Default: full connectivity (8 in 2-D, 26 in 3-D), the same notion of "one piece" the COCO
    # exporter uses for its per-component annotations.
    return ndimage.generate_binary_structure(ndim, ndim if connectivity is None else connectivity)


def _per_slice(mask: np.ndarray, axis: int | None, func: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply `func` to the whole mask (axis None) or to every 2-D slice along `axis`."""
    mask = np.asarray(mask, dtype=bool)
    if axis is None:
        return func(mask)
    moved = np.moveaxis(mask, axis, 0)
    out = np.empty_like(moved)
    for i in range(moved.shape[0]):
        out[i] = func(moved[i]) if moved[i].any() else moved[i]
    return np.moveaxis(out, 0, axis)


def _in_plane_spacing(spacing_zyx_mm: Spacing, axis: int | None) -> tuple[float, ...]:
    spacing = tuple(float(s) for s in spacing_zyx_mm)
    return spacing if axis is None else tuple(s for a, s in enumerate(spacing) if a != axis)


def fill_holes(mask: np.ndarray, *, per_slice_axis: int | None = None) -> np.ndarray:
    """`mask` with every enclosed background region filled (in 3-D, or per slice)."""
    from scipy import ndimage

    return _per_slice(mask, per_slice_axis, lambda m: ndimage.binary_fill_holes(m))


def remove_small_islands(mask: np.ndarray, min_size_mm3: float, spacing_zyx_mm: Spacing, *,
                         per_slice_axis: int | None = None, connectivity: int | None = None) -> np.ndarray:
    """`mask` without the connected pieces smaller than `min_size_mm3`.

    A piece is kept when its size is >= the threshold: an island of N voxels of volume v survives
    min_size N*v and is removed at (N+1)*v. Per slice the size is the area in mm² (pixels x pixel area).
    """
    from scipy import ndimage

    unit = float(np.prod(_in_plane_spacing(spacing_zyx_mm, per_slice_axis)))
    # Compare in voxel counts with a tolerance so N*v given in mm³ keeps an N-voxel island
    # despite floating-point rounding.
    min_voxels = float(min_size_mm3) / unit - 1e-6

    def one(m: np.ndarray) -> np.ndarray:
        components, count = ndimage.label(m, structure=_structure(m.ndim, connectivity))
        if count == 0:
            return m
        sizes = np.bincount(components.ravel())
        keep = sizes >= min_voxels
        keep[0] = False
        return keep[components]

    return _per_slice(mask, per_slice_axis, one)


def keep_largest_component(mask: np.ndarray, *, per_slice_axis: int | None = None,
                           connectivity: int | None = None) -> np.ndarray:
    """Only the largest connected piece of `mask` (ties: the first found)."""
    from scipy import ndimage

    def one(m: np.ndarray) -> np.ndarray:
        components, count = ndimage.label(m, structure=_structure(m.ndim, connectivity))
        if count <= 1:
            return m
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        return components == int(np.argmax(sizes))

    return _per_slice(mask, per_slice_axis, one)


def smooth(mask: np.ndarray, sigma_mm: float, spacing_zyx_mm: Spacing, *,
           per_slice_axis: int | None = None) -> np.ndarray:
    """Gaussian smoothing of the mask's surface: blur with sigma in mm (per axis in voxels
    sigma_mm / spacing), then keep voxels above one half."""
    from scipy import ndimage

    if sigma_mm <= 0:
        return np.asarray(mask, dtype=bool)
    sigma_vox = [sigma_mm / s for s in _in_plane_spacing(spacing_zyx_mm, per_slice_axis)]

    def one(m: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(m.astype(np.float32), sigma=sigma_vox, mode="constant") > 0.5

    return _per_slice(mask, per_slice_axis, one)


@dataclass(frozen=True)
class CleanupOptions:
    """Which clean-up steps to run, with their values. The steps are the plugin registry's
    (postprocess.operations; they run in its order: fill holes, islands, largest, smooth, then any a
    plugin adds). `steps` names any of them by id; the four builtins may also be given by field."""

    fill_holes: bool = False
    min_size_mm3: float = 0.0
    largest: bool = False
    smooth_mm: float = 0.0
    per_slice_axis: int | None = None
    connectivity: int | None = None
    steps: tuple[tuple[str, float], ...] = ()

    def values(self) -> dict[str, float]:
        """Operation id -> value (1.0 for an on/off step) of every step asked for."""
        out = {str(k): float(v) for k, v in self.steps}
        for key, value in (("fill-holes", float(self.fill_holes)), ("remove-islands", self.min_size_mm3),
                           ("largest", float(self.largest)), ("smooth", self.smooth_mm)):
            if value > 0:
                out.setdefault(key, float(value))
        return out

    def is_noop(self) -> bool:
        return not self.values()


def clean_mask(mask: np.ndarray, spacing_zyx_mm: Spacing, options: CleanupOptions,
               operations: Sequence[CleanupOperation] | None = None) -> np.ndarray:
    """`mask` after the steps `options` asks for, run in the order of `operations` (default: the
    builtins; the window and `annotator clean` pass the registry's)."""
    from annotator.postprocess.operations import BUILTIN_OPERATIONS

    values = options.values()
    operations = BUILTIN_OPERATIONS if operations is None else operations
    unknown = sorted(set(values) - {op.id for op in operations})
    if unknown:
        raise ValueError(f"unknown clean-up step(s) {', '.join(unknown)}; known: "
                         f"{', '.join(op.id for op in operations)}")
    out = np.asarray(mask, dtype=bool)
    for op in operations:
        if op.id in values:
            out = np.asarray(op.run(out, values[op.id], spacing_zyx_mm, options.per_slice_axis,
                                    options.connectivity), dtype=bool)
    return out


@dataclass(frozen=True)
class LabelChange:
    """Voxels one label gained and lost in a clean-up."""

    label_id: int
    added: int
    removed: int
    before: int
    after: int


def clean_label_map(array: np.ndarray, spacing_zyx_mm: Spacing, options: CleanupOptions,
                    label_ids: Sequence[int] | None = None,
                    operations: Sequence[CleanupOperation] | None = None) -> tuple[np.ndarray, list[LabelChange]]:
    """(cleaned copy of the label array, per-label changes). Labels are cleaned one by one;
    a label only grows into background, never over another label."""
    source = np.asarray(array)
    out = source.copy()
    ids = sorted(int(v) for v in np.unique(source) if v != 0) if label_ids is None else list(label_ids)
    for label_id in ids:
        before = source == label_id
        after = clean_mask(before, spacing_zyx_mm, options, operations)
        grow = after & ~before & (out == 0)
        shrink = before & ~after
        out[shrink & (out == label_id)] = 0
        out[grow] = label_id
    changes = []
    for label_id in ids:
        was, now = source == label_id, out == label_id
        changes.append(LabelChange(label_id, added=int(np.count_nonzero(now & ~was)),
                                   removed=int(np.count_nonzero(was & ~now)),
                                   before=int(np.count_nonzero(was)), after=int(np.count_nonzero(now))))
    return out, changes
