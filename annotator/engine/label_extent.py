"""What a label already holds along an axis (its slices, their masks, its extent): the inputs a
re-propagation (engine.propagate) and its edit (engine.propagation_edit) read from the label map."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np

from annotator.core.geometry import slice_2d


def slices_present(mask_3d: np.ndarray, axis: int) -> np.ndarray:
    """(n,) bool: which slices along `axis` hold any set voxel of `mask_3d`."""
    return np.any(mask_3d, axis=tuple(a for a in range(3) if a != axis))


def labelled_slices(mask_3d: np.ndarray, axis: int) -> dict[int, np.ndarray]:
    """The (H, W) masks of `mask_3d` per slice along `axis`, for the slices that hold any of it
    (propagate(labelled=...))."""
    return {int(i): np.ascontiguousarray(slice_2d(mask_3d, axis, int(i)))
            for i in np.flatnonzero(slices_present(mask_3d, axis))}


def mask_extent(mask_3d: np.ndarray, axis: int) -> tuple[int, int] | None:
    """First and last slice along `axis` where `mask_3d` is set (None when it is empty)."""
    present = np.flatnonzero(slices_present(mask_3d, axis))
    return (int(present[0]), int(present[-1])) if present.size else None


def structure_extent(mask_3d: np.ndarray, axis: int, key_indices: Iterable[int],
                     new_keys: Mapping[int, bool] | None = None) -> tuple[int, int] | None:
    """The structure's current extent for `propagate(extent=...)`: where it is labelled along
    `axis`, as the last propagation left it. `new_keys`: the keys made since then and whether each
    slice held the structure before (core.keys.KeyMark.held_before); each counts as it was, so a
    correction past an end lies beyond the extent and reopens the run there, while a correction of
    the end slice keeps the end. None while every labelled slice is a key (nothing was propagated
    yet, so no run has decided where it ends: the first P from a single key must run outwards)."""
    present = slices_present(mask_3d, axis).copy()
    for index, held in (new_keys or {}).items():
        present[index] = held
    labelled = np.flatnonzero(present)
    if not set(labelled.tolist()) - set(key_indices):
        return None
    return int(labelled[0]), int(labelled[-1])


class LabelBefore(NamedTuple):
    """What a propagation needs to know of the label it re-draws (propagate's `extent`,
    `labelled` and `new_keys`), read once from the label before P."""

    extent: tuple[int, int] | None
    labelled: dict[int, np.ndarray]
    new_keys: frozenset[int]


def label_before(mask_3d: np.ndarray, axis: int, key_indices: Iterable[int],
                 new_keys: Mapping[int, bool]) -> LabelBefore:
    """The label's state for a (re-)propagation along `axis`, the same for the window and the
    evaluation: its extent as the last propagation left it (structure_extent), its masks per slice,
    and the keys made since (`new_keys`: whether each slice held the label before)."""
    return LabelBefore(structure_extent(mask_3d, axis, key_indices, new_keys), labelled_slices(mask_3d, axis),
                       frozenset(new_keys))
