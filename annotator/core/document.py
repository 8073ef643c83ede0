"""AnnotationDocument: the evented, Qt-free root model that every view of the window observes.

Views bind to its psygnal signals and call its methods; they never hold authoritative state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from psygnal import Signal

from annotator.core.geometry import Window, default_window, in_plane_axes, slice_2d, slice_region
from annotator.core.history import History
from annotator.core.keys import KeyMark
from annotator.core.labels import LabelEdit, LabelMap, LabelTable, Region, bounding_region
from annotator.core.prompts import BaseMask, BoxPrompt, PointPrompt, PromptSet
from annotator.core.volume import Volume

SliceRef = tuple[int, int]  # (array axis, slice index)


@dataclass(frozen=True)
class Preview:
    """A proposed mask on one raw slice, not yet in the label map.

    masks:  (C, H, W) bool candidates at raw-slice size; `chosen` selects the one shown.
    scores: (C,) float, predicted quality of each candidate.
    """

    axis: int
    index: int
    masks: np.ndarray
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    chosen: int = 0
    low_res_logits: np.ndarray | None = None
    window: Window | None = None  # the model input window the masks were made in

    @property
    def mask(self) -> np.ndarray:
        return self.masks[self.chosen]

    @property
    def candidate_count(self) -> int:
        return int(self.masks.shape[0])


def _region_touches_slice(region: Region, axis: int, index: int) -> bool:
    sl = region[axis]
    return (sl.start or 0) <= index < (sl.stop if sl.stop is not None else index + 1)


class AnnotationDocument:
    """Volume + label map + history + what the user is looking at and has said about it.

    cursor_zyx is the linked crosshair: the view along array axis a shows slice cursor_zyx[a].
    """

    volume_changed = Signal()  # a new volume (and label map) replaced the old one
    labels_changed = Signal(object)  # region (z, y, x slices) of label voxels that changed
    table_changed = Signal()  # label table entries added/edited/removed
    history_changed = Signal()
    cursor_changed = Signal(object)  # new cursor (z, y, x) ints
    window_changed = Signal(object)  # Window
    active_label_changed = Signal(int)
    prompts_changed = Signal(int, int)  # axis, index
    preview_changed = Signal()
    change_preview_changed = Signal()  # a proposed whole-map change (clean-up) to show, or none
    display_changed = Signal()  # overlay opacity / outline mode
    status = Signal(str)  # short messages for the status bar

    def __init__(self, volume: Volume | None = None, labels: LabelMap | None = None) -> None:
        self.volume: Volume | None = None
        self.labels: LabelMap = LabelMap((1, 1, 1))
        self.history = History(self.labels)
        self.cursor_zyx: tuple[int, int, int] = (0, 0, 0)
        self.window: Window = Window(40, 400)
        self.active_label: int = 0
        self.overlay_opacity: float = 0.5
        self.outline_only: bool = False
        self.preview: Preview | None = None
        # int8 (z, y, x): +1 a voxel the proposed change adds to a label, -1 one it clears
        self.change_preview: np.ndarray | None = None
        self._prompts: dict[SliceRef, PromptSet] = {}
        self._stroke: tuple[int, int, np.ndarray, str] | None = None
        if volume is not None:
            self.set_volume(volume, labels)

    # ---- volume & labels ---------------------------------------------------------------------
    @property
    def has_volume(self) -> bool:
        return self.volume is not None

    def current_volume(self) -> Volume:
        """The open volume; ValueError when none is open (callers that may run without one check
        `has_volume` first)."""
        if self.volume is None:
            raise ValueError("no image is open")
        return self.volume

    def set_volume(self, volume: Volume, labels: LabelMap | None = None) -> None:
        """Show a new image; starts a fresh label map (or `labels`, which must match its grid)."""
        if labels is None:
            table = LabelTable()
            table.add("label 1")
            labels = LabelMap(volume.shape_zyx, table)
        elif labels.shape_zyx != volume.shape_zyx:
            raise ValueError(f"label map {labels.shape_zyx} does not match image {volume.shape_zyx}")
        self._disconnect_labels()
        self.volume = volume
        self.labels = labels
        self.history = History(labels)
        self._connect_labels()
        self._prompts.clear()
        self.preview = None
        self.change_preview = None
        self._stroke = None
        self.cursor_zyx = tuple(n // 2 for n in volume.shape_zyx)  # type: ignore[assignment]
        self.window = default_window(volume)
        ids = labels.table.ids()
        self.active_label = ids[0] if ids else 0
        self.volume_changed.emit()
        self.history_changed.emit()
        self.window_changed.emit(self.window)
        self.cursor_changed.emit(self.cursor_zyx)
        self.active_label_changed.emit(self.active_label)
        self.preview_changed.emit()

    def replace_labels(self, new_labels: LabelMap, description: str = "open labels") -> LabelEdit | None:
        """Load another label map onto this grid as one undoable edit; its names join the table."""
        if self.volume is None:
            raise ValueError("open an image before loading labels")
        if new_labels.shape_zyx != self.labels.shape_zyx:
            raise ValueError(f"label map {new_labels.shape_zyx} does not match image {self.labels.shape_zyx}")
        for label in new_labels.table:
            if label.id in self.labels.table:
                self.labels.table.update(label.id, name=label.name, color=label.color)
            else:
                self.labels.table.add(label.name, label.color, label_id=label.id)
        for value in new_labels.present_ids():
            if value not in self.labels.table:
                self.labels.table.add(label_id=value)
        full = tuple(slice(0, n) for n in self.labels.shape_zyx)
        edit = self.labels.apply(full, new_labels.array, description)  # type: ignore[arg-type]
        self.history.push(edit)
        if self.active_label not in self.labels.table and self.labels.table.ids():
            self.set_active_label(self.labels.table.ids()[0])
        return edit

    def _connect_labels(self) -> None:
        self.labels.changed.connect(self._on_labelmap_changed)
        self.labels.table.changed.connect(self._on_table_changed)
        self.history.changed.connect(self._on_history_changed)

    def _disconnect_labels(self) -> None:
        self.labels.changed.disconnect(self._on_labelmap_changed)
        self.labels.table.changed.disconnect(self._on_table_changed)
        self.history.changed.disconnect(self._on_history_changed)

    def _on_labelmap_changed(self, region: Region) -> None:
        self.labels_changed.emit(region)

    def _on_table_changed(self) -> None:
        self.table_changed.emit()

    def _on_history_changed(self) -> None:
        self.history_changed.emit()

    # ---- cursor / slices ---------------------------------------------------------------------
    def slice_index(self, axis: int) -> int:
        return int(self.cursor_zyx[axis])

    def slice_count(self, axis: int) -> int:
        return 0 if self.volume is None else int(self.volume.shape_zyx[axis])

    def set_cursor(self, index_zyx: tuple[int, int, int] | np.ndarray) -> None:
        if self.volume is None:
            return
        shape = self.volume.shape_zyx
        new = tuple(int(np.clip(round(float(v)), 0, n - 1)) for v, n in zip(index_zyx, shape, strict=True))
        if new != self.cursor_zyx:
            self.cursor_zyx = new  # type: ignore[assignment]
            self.cursor_changed.emit(new)

    def set_slice(self, axis: int, index: int) -> None:
        cursor = list(self.cursor_zyx)
        cursor[axis] = index
        self.set_cursor(tuple(cursor))  # type: ignore[arg-type]

    def step_slice(self, axis: int, delta: int) -> None:
        self.set_slice(axis, self.slice_index(axis) + int(delta))

    def image_slice(self, axis: int, index: int | None = None) -> np.ndarray:
        """Raw 2-D image slice (rows, cols per core.geometry.slice_2d)."""
        if self.volume is None:
            raise ValueError("no volume")
        return slice_2d(self.volume.array, axis, self.slice_index(axis) if index is None else index)

    def label_slice(self, axis: int, index: int | None = None) -> np.ndarray:
        return slice_2d(self.labels.array, axis, self.slice_index(axis) if index is None else index)

    # ---- window ------------------------------------------------------------------------------
    def set_window(self, window: Window) -> None:
        if window.width <= 0:
            raise ValueError(f"window width must be positive, got {window.width}")
        if window != self.window:
            self.window = window
            self.window_changed.emit(window)

    # ---- labels table ------------------------------------------------------------------------
    def set_active_label(self, label_id: int) -> None:
        if label_id and label_id not in self.labels.table:
            raise KeyError(f"label {label_id} is not in the label table")
        if label_id != self.active_label:
            self.active_label = int(label_id)
            self.active_label_changed.emit(self.active_label)

    def add_label(self, name: str | None = None) -> int:
        label = self.labels.table.add(name)
        self.set_active_label(label.id)
        return label.id

    def delete_label(self, label_id: int) -> LabelEdit | None:
        """Erase the label's voxels (one undoable edit) and drop it from the table."""
        mask = self.labels.array == label_id
        edit = None
        region = bounding_region(mask)
        if region is not None:
            new = self.labels.array[region].copy()
            new[new == label_id] = 0
            edit = self.labels.apply(region, new, f"delete {self.labels.table[label_id].name}")
            self.history.push(edit)
        self.labels.table.remove(label_id)
        self.history.keys.forget_label(label_id)
        if self.active_label == label_id:
            ids = self.labels.table.ids()
            self.active_label = ids[0] if ids else 0
            self.active_label_changed.emit(self.active_label)
        return edit

    def set_overlay(self, opacity: float | None = None, outline_only: bool | None = None) -> None:
        if opacity is not None:
            self.overlay_opacity = float(np.clip(opacity, 0.0, 1.0))
        if outline_only is not None:
            self.outline_only = bool(outline_only)
        self.display_changed.emit()

    def label_volume_ml(self, label_id: int, count: int | None = None) -> float:
        if self.volume is None:
            return 0.0
        if count is None:
            count = int(np.count_nonzero(self.labels.array == label_id))
        return count * float(np.prod(self.volume.spacing_zyx_mm)) / 1000.0

    # ---- prompts & preview -------------------------------------------------------------------
    def prompts(self, axis: int, index: int) -> PromptSet:
        return self._prompts.get((axis, index), PromptSet())

    def add_point(self, axis: int, index: int, point: PointPrompt) -> PromptSet:
        """A click on the slice. The first click on a slice where the active label already has a
        mask (propagated, or accepted before) starts correcting that mask: it becomes the prompts'
        base, and accepting the result replaces the label there (one undo step)."""
        prompts = self.prompts(axis, index)
        if not prompts and self.active_label and self.volume is not None:
            current = self.label_slice(axis, index) == self.active_label
            if current.any():
                prompts = PromptSet(base=BaseMask(self.active_label, current,
                                                  self.model_window_at(self.active_label, axis, index)))
        prompts = prompts.with_point(point)
        self._prompts[(axis, index)] = prompts
        self.prompts_changed.emit(axis, index)
        return prompts

    def set_box(self, axis: int, index: int, box: BoxPrompt | None) -> PromptSet:
        """A new box replaces the slice's prompts: clicks refine the box that preceded them."""
        prompts = PromptSet((), box)
        self._prompts[(axis, index)] = prompts
        self.prompts_changed.emit(axis, index)
        return prompts

    def correcting_label(self, axis: int, index: int) -> int:
        """The label whose mask on this slice the slice's clicks correct (add_point), 0 for none."""
        base = self.prompts(axis, index).base
        return base.label_id if base is not None else 0

    def clear_prompts(self, axis: int, index: int) -> None:
        if self._prompts.pop((axis, index), None) is not None:
            self.prompts_changed.emit(axis, index)

    def set_preview(self, preview: Preview | None) -> None:
        if preview is not None and self.volume is not None:
            expected = slice_2d(self.labels.array, preview.axis, preview.index).shape
            if preview.masks.ndim != 3 or preview.masks.shape[1:] != expected:
                raise ValueError(f"preview masks {preview.masks.shape} do not fit slice {expected}")
        self.preview = preview
        self.preview_changed.emit()

    def cycle_candidate(self, step: int = 1) -> None:
        if self.preview is None or self.preview.candidate_count < 2:
            return
        chosen = (self.preview.chosen + step) % self.preview.candidate_count
        self.set_preview(dataclasses.replace(self.preview, chosen=chosen))

    def accept_preview(self) -> LabelEdit | None:
        """Write the preview into the active label on its slice (one undo step); clears prompts.

        On a key slice (one the user decided before) a new box's mask is added to what is there, so
        a structure can be segmented piece by piece. On any other slice, what propagation put there
        is only a proposal: the accepted mask replaces it (a correction). Clicks that corrected the
        label's mask (add_point) replace it on any slice: the preview holds what they kept of it."""
        preview = self.preview
        if preview is None:
            return None
        if not self.active_label:
            raise ValueError("choose or add a label before accepting a mask")
        region = slice_region(self.labels.shape_zyx, preview.axis, preview.index)
        mask3 = np.expand_dims(preview.mask, preview.axis)
        name = self.labels.table[self.active_label].name
        corrects = self.correcting_label(preview.axis, preview.index) == self.active_label
        held = bool((self.label_slice(preview.axis, preview.index) == self.active_label).any())
        if preview.index in self.key_marks(self.active_label, preview.axis) and not corrects:
            edit = self.labels.paint(region, mask3, self.active_label, description=f"segment {name}")
        else:
            edit = self.labels.replace_label(region, mask3, self.active_label, description=f"segment {name}")
        window = preview.window.key() if preview.window is not None else None
        mark = self._key_mark(self.active_label, preview.axis, preview.index, held, window)
        self.history.push(_with_marks(edit, (mark,)) if edit is not None else self._marks_only((mark,), f"keep {name}"))
        self.clear_prompts(preview.axis, preview.index)
        self.set_preview(None)
        return edit

    def discard_preview(self) -> None:
        """Esc: forget the preview and the prompts that made it; the label map is untouched."""
        if self.preview is not None:
            self.clear_prompts(self.preview.axis, self.preview.index)
        self.set_preview(None)

    # ---- whole-map edits (clean-up, fill between slices) -------------------------------------
    def set_change_preview(self, new_array: np.ndarray | None) -> None:
        """Show what replacing the label array by `new_array` would change (None hides it)."""
        if new_array is None:
            self.change_preview = None
        else:
            new = np.asarray(new_array)
            if new.shape != self.labels.shape_zyx:
                raise ValueError(f"proposed labels {new.shape} do not match {self.labels.shape_zyx}")
            old = self.labels.array
            delta = np.zeros(old.shape, np.int8)
            delta[(new != old) & (new != 0)] = 1
            delta[(new != old) & (new == 0)] = -1
            self.change_preview = delta
        self.change_preview_changed.emit()

    def apply_labels(self, new_array: np.ndarray, description: str) -> LabelEdit | None:
        """Replace the label array by `new_array` as one undo step storing only the changed box.
        Locked labels are kept as they are. Clears any change preview."""
        new = np.asarray(new_array)
        if new.shape != self.labels.shape_zyx:
            raise ValueError(f"new labels {new.shape} do not match {self.labels.shape_zyx}")
        old = self.labels.array
        locked = [lab.id for lab in self.labels.table if lab.locked]
        if locked:
            keep = np.isin(old, locked) | np.isin(new, locked)
            new = np.where(keep, old, new)
        self.set_change_preview(None)
        region = bounding_region(new != old)
        if region is None:
            return None
        for value in np.unique(new[region]):
            if value and int(value) not in self.labels.table:
                self.labels.table.add(label_id=int(value))
        edit = self.labels.apply(region, new[region], description)
        self.history.push(edit)
        return edit

    # ---- manual edits ------------------------------------------------------------------------
    def paint_slice_mask(self, axis: int, index: int, mask_hw: np.ndarray, label_id: int,
                         description: str) -> LabelEdit | None:
        """Paint a (H, W) raw-slice mask with label_id (0 erases) as one undoable edit."""
        region = slice_region(self.labels.shape_zyx, axis, index)
        held = bool(label_id) and bool((self.label_slice(axis, index) == label_id).any())
        edit = self.labels.paint(region, np.expand_dims(mask_hw, axis), label_id, description=description)
        if edit is not None and label_id:
            edit = _with_marks(edit, (self._key_mark(label_id, axis, index, held),))
        self.history.push(edit)
        return edit

    def begin_stroke(self, axis: int, index: int, description: str) -> None:
        """Start a brush/eraser stroke: its dabs become one undo step at end_stroke."""
        self._stroke = (axis, index, self.label_slice(axis, index).copy(), description)

    def stroke_dab(self, center_rc: tuple[float, float], radius_px: float, erase: bool) -> None:
        """Paint (or erase) a disc on the stroke's raw slice; radius in raw pixels."""
        if self._stroke is None:
            return
        axis, index, _, _ = self._stroke
        r_axis, c_axis = in_plane_axes(axis)
        h, w = self.labels.shape_zyx[r_axis], self.labels.shape_zyx[c_axis]
        r0, c0 = center_rc
        rad = max(float(radius_px), 0.5)
        rows = slice(max(int(np.floor(r0 - rad)), 0), min(int(np.ceil(r0 + rad)) + 1, h))
        cols = slice(max(int(np.floor(c0 - rad)), 0), min(int(np.ceil(c0 + rad)) + 1, w))
        if rows.start >= rows.stop or cols.start >= cols.stop:
            return
        value = 0 if erase else self.active_label  # the eraser clears every unlocked label, as ITK-SNAP
        if not erase and not value:
            return
        rr, cc = np.mgrid[rows, cols]
        writable = (rr - r0) ** 2 + (cc - c0) ** 2 <= rad**2
        region_list = [slice(0, n) for n in self.labels.shape_zyx]
        region_list[axis] = slice(index, index + 1)
        region_list[r_axis], region_list[c_axis] = rows, cols
        region: Region = tuple(region_list)  # type: ignore[assignment]
        # slice_2d may return a copy (np.take); write through the 3-D region instead.
        current = self.labels.array[region].reshape(writable.shape)
        locked = [lab.id for lab in self.labels.table if lab.locked]
        if locked:
            writable &= ~np.isin(current, locked)
        writable &= current != value
        if not writable.any():
            return
        new = current.copy()
        new[writable] = value
        self.labels.array[region] = np.expand_dims(new, axis)
        self.labels.changed.emit(region)

    def end_stroke(self) -> LabelEdit | None:
        if self._stroke is None:
            return None
        axis, index, before_slice, description = self._stroke
        self._stroke = None
        after_slice = self.label_slice(axis, index)
        changed = before_slice != after_slice
        box = bounding_region(changed[None])
        if box is None:
            return None
        region = [slice(0, n) for n in self.labels.shape_zyx]
        region[axis] = slice(index, index + 1)
        r_axis, c_axis = in_plane_axes(axis)
        region[r_axis], region[c_axis] = box[1], box[2]
        before = np.expand_dims(before_slice[box[1], box[2]], axis).copy()
        after = np.expand_dims(after_slice[box[1], box[2]], axis).copy()
        # Every label the stroke changed on this slice is decided there now (a key).
        touched = sorted({int(v) for v in np.unique(np.concatenate([before[before != after], after[before != after]]))} - {0})
        marks = tuple(self._key_mark(label_id, axis, index, bool((before_slice == label_id).any()))
                      for label_id in touched)
        edit = LabelEdit(tuple(region), before, after, description, marks)  # type: ignore[arg-type]
        self.history.push(edit)
        return edit

    def key_marks(self, label_id: int, axis: int) -> dict[int, KeyMark]:
        """The key slices of a label along an axis (the slices propagation must not rewrite)."""
        return self.history.keys.of(label_id, axis)

    def keys_since_propagation(self, label_id: int, axis: int) -> dict[int, bool]:
        """The label's keys made since its last propagation along `axis`, and whether each slice
        held the label before (what a re-propagation's extent reads: structure_extent)."""
        return self.history.keys.made_since_propagation(label_id, axis)

    def model_window_at(self, label_id: int, axis: int, index: int) -> tuple[float, float] | None:
        """The model input window the label's mask on slice `index` was made in: its own key's, else
        the nearest key's that has one (propagation carries a key's window to its slices); None
        when no key of the label knows one (brushed or erased slices only)."""
        windowed = {i: m.window for i, m in self.key_marks(label_id, axis).items() if m.window is not None}
        if not windowed:
            return None
        return windowed[min(windowed, key=lambda i: (abs(i - index), i))]

    def _key_mark(self, label_id: int, axis: int, index: int, held: bool,
                  window: tuple[float, float] | None = None) -> KeyMark:
        """The mark of a slice the user decides now; `held`: whether it held the label before this
        edit. A key already made since the last propagation keeps what its slice held before it."""
        earlier = self.key_marks(label_id, axis).get(index)
        if earlier is not None and earlier.held_before is not None:
            held = earlier.held_before
        return KeyMark(label_id, axis, index, window, held)

    def apply_propagation(self, edit: LabelEdit | None, label_id: int, axis: int,
                          key_indices: Iterable[int]) -> LabelEdit | None:
        """Record a propagation's edit of `label_id` along `axis` (one undo step): the keys it ran
        from are no longer new (KeyMark.held_before), so the next re-propagation reads the
        structure's extent from what this one left. Undo makes them new again."""
        marks = self.key_marks(label_id, axis)
        settled = tuple(dataclasses.replace(marks[i], held_before=None) for i in sorted(set(key_indices))
                        if i in marks and marks[i].held_before is not None)
        if edit is not None:
            edit = _with_marks(edit, settled)
        elif settled:
            edit = self._marks_only(settled, "propagate (nothing changed)")
        self.history.push(edit)
        return edit

    def _marks_only(self, marks: tuple[KeyMark, ...], description: str) -> LabelEdit:
        """An edit that changes no voxel but sets key marks (the user accepted exactly what was
        there; a propagation changed nothing), so undo takes the marks back too."""
        region = slice_region(self.labels.shape_zyx, marks[0].axis, marks[0].index)
        cell: Region = (slice(region[0].start, region[0].start + 1), slice(region[1].start, region[1].start + 1),
                        slice(region[2].start, region[2].start + 1))
        same = self.labels.array[cell].copy()
        return LabelEdit(cell, same, same.copy(), description, marks)

    def undo(self) -> LabelEdit | None:
        return self.history.undo()

    def redo(self) -> LabelEdit | None:
        return self.history.redo()


def _with_marks(edit: LabelEdit, marks: tuple[KeyMark, ...]) -> LabelEdit:
    return dataclasses.replace(edit, key_marks=edit.key_marks + marks)
