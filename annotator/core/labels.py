"""LabelMap (uint16 voxels on a Volume's grid) and LabelTable (id, name, colour): the single source of truth."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from psygnal import Signal

from annotator.core.keys import KeyMark

# Distinct, legible colours for the first labels (ITK-SNAP-like); later ids cycle through hues.
_DEFAULT_COLOURS = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
]

MAX_LABEL = int(np.iinfo(np.uint16).max)


def default_colour(label_id: int) -> tuple[int, int, int]:
    return _DEFAULT_COLOURS[(label_id - 1) % len(_DEFAULT_COLOURS)]


@dataclass(frozen=True)
class Label:
    """One entry of the label table. id 0 is background and never listed."""

    id: int
    name: str
    color: tuple[int, int, int]
    visible: bool = True
    locked: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.id <= MAX_LABEL:
            raise ValueError(f"label id must be 1..{MAX_LABEL}, got {self.id}")
        if len(self.color) != 3 or not all(0 <= int(c) <= 255 for c in self.color):
            raise ValueError(f"label colour must be three 0..255 ints, got {self.color}")


@dataclass
class LabelTable:
    """Ordered table of labels, keyed by id. Emits `changed` when an entry is added/edited/removed."""

    labels: dict[int, Label] = field(default_factory=dict)
    changed = Signal()

    def __iter__(self) -> Iterator[Label]:
        return iter(sorted(self.labels.values(), key=lambda lab: lab.id))

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, label_id: object) -> bool:
        return label_id in self.labels

    def __getitem__(self, label_id: int) -> Label:
        return self.labels[label_id]

    def ids(self) -> list[int]:
        return sorted(self.labels)

    def next_free_id(self) -> int:
        return max(self.labels, default=0) + 1

    def add(self, name: str | None = None, color: tuple[int, int, int] | None = None,
            label_id: int | None = None) -> Label:
        label_id = self.next_free_id() if label_id is None else int(label_id)
        if label_id in self.labels:
            raise ValueError(f"label id {label_id} already exists ({self.labels[label_id].name!r})")
        r, g, b = color or default_colour(label_id)
        label = Label(label_id, name or f"label {label_id}", (int(r), int(g), int(b)))
        self.labels[label_id] = label
        self.changed.emit()
        return label

    def update(self, label_id: int, **changes: Any) -> Label:
        label = replace(self.labels[label_id], **changes)
        self.labels[label_id] = label
        self.changed.emit()
        return label

    def remove(self, label_id: int) -> Label:
        label = self.labels.pop(label_id)
        self.changed.emit()
        return label

    def by_name(self, name: str) -> Label | None:
        return next((lab for lab in self.labels.values() if lab.name == name), None)

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {"id": lab.id, "name": lab.name, "color": list(lab.color), "visible": lab.visible, "locked": lab.locked}
            for lab in self
        ]

    @classmethod
    def from_json(cls, data: list[dict[str, Any]] | dict[str, Any]) -> LabelTable:
        """Accepts our own list form, or a {"1": "liver", ...} / {"liver": 1} name map."""
        table = cls()
        if isinstance(data, dict):
            for k, v in data.items():
                label_id, name = (int(k), str(v)) if str(k).isdigit() else (int(v), str(k))
                if label_id == 0:
                    continue
                table.labels[label_id] = Label(label_id, name, default_colour(label_id))
            return table
        for item in data:
            label_id = int(item["id"])
            if label_id == 0:
                continue
            table.labels[label_id] = Label(
                label_id, str(item.get("name", f"label {label_id}")),
                tuple(item.get("color") or default_colour(label_id)),
                bool(item.get("visible", True)), bool(item.get("locked", False)),
            )
        return table

    @classmethod
    def for_values(cls, values: np.ndarray | list[int]) -> LabelTable:
        """A table naming every nonzero value present (used when a label file comes without names)."""
        table = cls()
        for v in sorted({int(v) for v in np.asarray(values).ravel() if int(v) != 0}):
            table.labels[v] = Label(v, f"label {v}", default_colour(v))
        return table


Region = tuple[slice, slice, slice]


@dataclass(frozen=True)
class LabelEdit:
    """A change to a LabelMap: the voxels of `region` before and after. Undo = write `before` back.
    `key_marks`: the slices this edit made keys (core.keys), set and unset with it by History."""

    region: Region
    before: np.ndarray
    after: np.ndarray
    description: str = "edit"
    key_marks: tuple[KeyMark, ...] = ()

    @property
    def changed_voxels(self) -> int:
        return int(np.count_nonzero(self.before != self.after))


class LabelMap:
    """uint16 (z, y, x) label voxels on a Volume's grid, plus the LabelTable naming them.

    Every mutation goes through `apply`, which returns a LabelEdit (for the undo history) and
    emits `changed(region)` so views repaint only what changed.
    """

    changed = Signal(object)  # region: Region

    def __init__(self, shape_zyx: tuple[int, int, int], table: LabelTable | None = None,
                 array: np.ndarray | None = None) -> None:
        if array is None:
            array = np.zeros(shape_zyx, dtype=np.uint16)
        if array.shape != tuple(shape_zyx):
            raise ValueError(f"label array shape {array.shape} does not match grid {tuple(shape_zyx)}")
        if array.dtype != np.uint16:
            if array.size and (array.min() < 0 or array.max() > MAX_LABEL):
                raise ValueError(f"label values must be within 0..{MAX_LABEL}")
            array = array.astype(np.uint16)
        self.array = array
        self.table = table if table is not None else LabelTable.for_values(np.unique(array))

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        z, y, x = self.array.shape
        return int(z), int(y), int(x)

    def present_ids(self) -> list[int]:
        return [int(v) for v in np.unique(self.array) if v != 0]

    def voxel_counts(self) -> dict[int, int]:
        counts = np.bincount(self.array.ravel())
        return {i: int(c) for i, c in enumerate(counts) if i and c}

    def apply(self, region: Region, new_values: np.ndarray, description: str = "edit") -> LabelEdit | None:
        """Write `new_values` into `region`; returns the edit, or None when nothing changed."""
        before = self.array[region].copy()
        after = np.asarray(new_values, dtype=np.uint16)
        if after.shape != before.shape:
            raise ValueError(f"edit of shape {after.shape} does not fit region of shape {before.shape}")
        if np.array_equal(before, after):
            return None
        self.array[region] = after
        self.changed.emit(region)
        return LabelEdit(region, before, after.copy(), description)

    def paint(self, region: Region, mask: np.ndarray, label_id: int, *,
              overwrite: bool = True, description: str = "paint") -> LabelEdit | None:
        """Set voxels where `mask` is True to `label_id` (0 erases). Locked labels are never changed.

        overwrite=False only paints background voxels.
        """
        mask = np.asarray(mask, dtype=bool)
        if label_id and label_id not in self.table:
            raise KeyError(f"label {label_id} is not in the label table")
        current = self.array[region]
        if mask.shape != current.shape:
            mask = mask.reshape(current.shape)
        writable = mask.copy()
        locked = [lab.id for lab in self.table if lab.locked and lab.id != label_id]
        if locked:
            writable &= ~np.isin(current, locked)
        if not overwrite:
            writable &= current == 0
        new = current.copy()
        new[writable] = label_id
        return self.apply(region, new, description)

    def replace_label(self, region: Region, mask: np.ndarray, label_id: int,
                      description: str = "replace") -> LabelEdit | None:
        """Make `label_id` exactly `mask` within region: voxels of label_id outside mask become 0."""
        mask = np.asarray(mask, dtype=bool)
        current = self.array[region]
        new = current.copy()
        new[(current == label_id) & ~mask] = 0
        locked = [lab.id for lab in self.table if lab.locked and lab.id != label_id]
        writable = mask & ~np.isin(current, locked) if locked else mask
        new[writable] = label_id
        return self.apply(region, new, description)

    def revert(self, edit: LabelEdit) -> None:
        self.array[edit.region] = edit.before
        self.changed.emit(edit.region)

    def reapply(self, edit: LabelEdit) -> None:
        self.array[edit.region] = edit.after
        self.changed.emit(edit.region)


def bounding_region(mask: np.ndarray, offset: Region | None = None) -> Region | None:
    """Tight region around the True voxels of a 3-D mask (None if empty), shifted by `offset`."""
    if not mask.any():
        return None
    out = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        start = 0 if offset is None else offset[axis].start or 0
        out.append(slice(start + int(hits[0]), start + int(hits[-1]) + 1))
    return tuple(out)  # type: ignore[return-value]
