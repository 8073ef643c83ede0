"""AnnotationDocument: evented state, undoable edits, prompts and previews, all without Qt."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.core.document import AnnotationDocument, Preview
from annotator.core.geometry import Window
from annotator.core.labels import LabelMap, LabelTable
from annotator.core.prompts import BoxPrompt, PointPrompt
from annotator.core.volume import Volume


def _doc(shape=(6, 20, 30)) -> AnnotationDocument:
    vol = Volume(np.arange(np.prod(shape), dtype=np.int16).reshape(shape) - 1000, (2.0, 1.0, 1.0), modality="CT")
    return AnnotationDocument(vol)


def test_set_volume_centres_cursor_and_emits():
    doc = AnnotationDocument()
    seen = []
    doc.volume_changed.connect(lambda: seen.append("volume"))
    doc.cursor_changed.connect(lambda c: seen.append(c))
    vol = Volume(np.zeros((6, 20, 30), np.int16) - 1000, (2.0, 1.0, 1.0), modality="CT")
    doc.set_volume(vol)
    assert doc.cursor_zyx == (3, 10, 15)
    assert seen[0] == "volume"
    assert (3, 10, 15) in seen
    assert doc.active_label == 1
    assert doc.window == Window(40, 400)


def test_cursor_is_clamped_and_step_emits_once():
    doc = _doc()
    events = []
    doc.cursor_changed.connect(events.append)
    doc.step_slice(0, 100)
    assert doc.slice_index(0) == 5
    doc.step_slice(0, 1)  # already at the end: no event
    assert events == [(5, 10, 15)]
    doc.set_slice(2, -4)
    assert doc.slice_index(2) == 0


def test_accept_preview_is_one_undo_step_and_clears_prompts():
    doc = _doc()
    doc.set_box(0, 2, BoxPrompt(3, 4, 10, 12))
    mask = np.zeros((2, 20, 30), bool)
    mask[0, 4:13, 3:11] = True
    mask[1, 5:8, 5:8] = True
    doc.set_preview(Preview(0, 2, mask, np.array([0.9, 0.5])))
    before = doc.labels.array.copy()
    doc.cycle_candidate()
    assert doc.preview.chosen == 1
    doc.cycle_candidate()
    edit = doc.accept_preview()
    assert edit is not None
    assert edit.changed_voxels == mask[0].sum()
    assert np.array_equal(doc.labels.array[2] == 1, mask[0])
    assert not doc.prompts(0, 2)
    assert doc.preview is None
    doc.undo()
    assert np.array_equal(doc.labels.array, before)
    doc.redo()
    assert np.array_equal(doc.labels.array[2] == 1, mask[0])


def test_discard_preview_leaves_labels_untouched():
    doc = _doc()
    doc.add_point(1, 10, PointPrompt(5, 2, True))
    doc.set_preview(Preview(1, 10, np.ones((1, 6, 30), bool)))
    before = doc.labels.array.copy()
    doc.discard_preview()
    assert np.array_equal(doc.labels.array, before)
    assert not doc.prompts(1, 10)
    assert not doc.history.can_undo


def test_preview_of_wrong_shape_is_refused():
    doc = _doc()
    with pytest.raises(ValueError, match="do not fit"):
        doc.set_preview(Preview(0, 1, np.ones((1, 5, 5), bool)))


def test_brush_stroke_is_one_undo_step_and_eraser_respects_locks():
    doc = _doc()
    doc.begin_stroke(0, 3, "brush")
    doc.stroke_dab((10, 10), 2, erase=False)
    doc.stroke_dab((10, 14), 2, erase=False)
    edit = doc.end_stroke()
    painted = doc.labels.array[3] == 1
    assert painted[10, 10]
    assert painted[10, 14]
    assert not painted[10, 20]
    assert edit.changed_voxels == painted.sum()
    assert len(doc.history.descriptions()) == 1
    # Lock label 1 then erase: nothing changes.
    doc.labels.table.update(1, locked=True)
    doc.begin_stroke(0, 3, "erase")
    doc.stroke_dab((10, 10), 3, erase=True)
    assert doc.end_stroke() is None
    doc.labels.table.update(1, locked=False)
    doc.begin_stroke(0, 3, "erase")
    doc.stroke_dab((10, 10), 1, erase=True)
    doc.end_stroke()
    assert doc.labels.array[3, 10, 10] == 0
    assert doc.labels.array[3, 10, 14] == 1
    doc.undo()
    assert np.array_equal(doc.labels.array[3] == 1, painted)
    doc.undo()
    assert not doc.labels.array.any()


def test_stroke_on_sagittal_axis_writes_the_right_voxels():
    doc = _doc()
    doc.begin_stroke(2, 7, "brush")
    doc.stroke_dab((1, 15), 0.5, erase=False)  # raw row = z 1, col = y 15
    doc.end_stroke()
    assert list(zip(*np.nonzero(doc.labels.array), strict=True)) == [(1, 15, 7)]


def test_replace_labels_is_undoable_and_merges_names():
    doc = _doc()
    arr = np.zeros((6, 20, 30), np.uint16)
    arr[1, 2, 3] = 5
    table = LabelTable()
    table.add("liver", label_id=5)
    doc.replace_labels(LabelMap((6, 20, 30), table, arr))
    assert doc.labels.table[5].name == "liver"
    assert doc.labels.array[1, 2, 3] == 5
    doc.undo()
    assert not doc.labels.array.any()


def test_delete_label_erases_its_voxels_undoably():
    doc = _doc()
    doc.paint_slice_mask(0, 0, np.ones((20, 30), bool), 1, "paint")
    other = doc.add_label("spleen")
    assert doc.active_label == other
    doc.delete_label(1)
    assert 1 not in doc.labels.table
    assert not doc.labels.array.any()
    doc.undo()
    assert doc.labels.array[0].all()


def test_volume_ml_uses_spacing():
    doc = _doc()
    doc.paint_slice_mask(0, 0, np.ones((20, 30), bool), 1, "paint")
    assert doc.label_volume_ml(1) == pytest.approx(600 * 2.0 / 1000)


def test_accepted_masks_brush_and_erase_make_key_slices_that_undo_with_their_edit():
    doc = _doc()
    label = doc.active_label
    mask = np.zeros((20, 30), dtype=bool)
    mask[5:10, 5:12] = True
    doc.set_preview(Preview(0, 2, mask[None], window=Window(-600, 1500)))
    doc.accept_preview()
    assert set(doc.key_marks(label, 0)) == {2}
    assert doc.key_marks(label, 0)[2].window == Window(-600, 1500).key()
    assert doc.key_marks(label, 1) == {}  # keys belong to one axis
    # A brush stroke on slice 4 makes it a key (no window: it was drawn, not segmented).
    doc.begin_stroke(0, 4, "brush")
    doc.stroke_dab((10, 10), 3, erase=False)
    doc.end_stroke()
    assert set(doc.key_marks(label, 0)) == {2, 4}
    assert doc.key_marks(label, 0)[4].window is None
    # Erasing everything of the label on slice 4 keeps it a key: "absent here".
    doc.begin_stroke(0, 4, "eraser")
    doc.stroke_dab((10, 10), 6, erase=True)
    doc.end_stroke()
    assert not (doc.labels.array[4] == label).any()
    assert 4 in doc.key_marks(label, 0)
    # Undo takes the keys back with their edits; redo restores them.
    doc.undo()
    doc.undo()
    assert set(doc.key_marks(label, 0)) == {2}
    doc.undo()
    assert doc.key_marks(label, 0) == {}
    doc.redo()
    assert set(doc.key_marks(label, 0)) == {2}
    # Accepting exactly what is already there still marks the slice (an edit with no voxel change).
    doc.set_preview(Preview(0, 2, mask[None]))
    doc.accept_preview()
    assert doc.history.descriptions()[-1].startswith("keep")
    assert doc.key_marks(label, 0)[2].window is None


def test_a_stroke_marks_every_label_it_changed():
    doc = _doc()
    first = doc.active_label
    doc.labels.array[3, 0:10, 0:10] = first
    second = doc.add_label("other")
    doc.labels.array[3, 10:20, 0:10] = second
    doc.begin_stroke(0, 3, "eraser")
    doc.stroke_dab((10, 5), 3, erase=True)
    doc.end_stroke()
    assert 3 in doc.key_marks(first, 0)
    assert 3 in doc.key_marks(second, 0)
    doc.delete_label(second)
    assert doc.key_marks(second, 0) == {}


def test_accepting_on_a_propagated_slice_replaces_it_and_on_a_key_slice_adds_to_it():
    doc = _doc()
    label = doc.active_label
    doc.labels.array[3, 0:5, 0:5] = label  # what propagation proposed on slice 3 (not a key)
    piece = np.zeros((20, 30), dtype=bool)
    piece[10:15, 10:15] = True
    doc.set_preview(Preview(0, 3, piece[None]))
    doc.accept_preview()
    np.testing.assert_array_equal(doc.labels.array[3] == label, piece)  # the proposal is replaced
    other = np.zeros_like(piece)
    other[10:15, 20:25] = True
    doc.set_preview(Preview(0, 3, other[None]))
    doc.accept_preview()
    np.testing.assert_array_equal(doc.labels.array[3] == label, piece | other)  # a key grows piece by piece


def test_apply_labels_is_one_undo_step_over_the_changed_box_and_keeps_locked_labels():
    vol = Volume(np.zeros((6, 10, 10), np.int16), (1.0, 1.0, 1.0))
    doc = AnnotationDocument(vol)
    doc.labels.table.add("b", label_id=2)
    doc.labels.array[1, 1, 1] = 1
    doc.labels.array[4, 8, 8] = 2
    doc.labels.table.update(2, locked=True)
    new = doc.labels.array.copy()
    new[2, 3:5, 3:5] = 1
    new[1, 1, 1] = 0
    new[4, 8, 8] = 0  # locked: must survive
    doc.set_change_preview(new)
    assert int((doc.change_preview == 1).sum()) == 4
    assert int((doc.change_preview == -1).sum()) == 2
    edit = doc.apply_labels(new, "clean-up")
    assert doc.change_preview is None
    assert edit is not None
    assert edit.before.shape == (2, 4, 4)
    assert doc.labels.array[4, 8, 8] == 2
    assert doc.labels.array[1, 1, 1] == 0
    assert doc.history.descriptions()[-1] == "clean-up"
    doc.undo()
    assert doc.labels.array[1, 1, 1] == 1
    assert not doc.labels.array[2].any()
    assert doc.apply_labels(doc.labels.array.copy(), "nothing") is None


def test_clicks_on_a_labelled_slice_correct_its_mask_and_accepting_replaces_it():
    doc = _doc()
    label = doc.active_label
    window = Window(-600, 1500)
    key = np.zeros((20, 30), dtype=bool)
    key[5:10, 5:12] = True
    doc.set_preview(Preview(0, 2, key[None], window=window))
    doc.accept_preview()
    doc.labels.array[3, 4:11, 4:14] = label  # what propagation put on slice 3 (not a key)
    prompts = doc.add_point(0, 3, PointPrompt(12, 6, False))
    assert prompts.base is not None
    assert prompts.base.label_id == label
    np.testing.assert_array_equal(prompts.base.mask, doc.labels.array[3] == label)
    assert prompts.base.window == window.key()  # the nearest key's window: the one propagation used
    assert doc.add_point(0, 3, PointPrompt(5, 5)).base is prompts.base  # later clicks keep it
    assert doc.set_box(0, 3, BoxPrompt(1, 1, 5, 5)).base is None  # a box starts afresh
    assert doc.add_point(0, 5, PointPrompt(1, 1)).base is None  # nothing of the label there
    # On a key slice, the corrected mask replaces the key's (a box's mask would be added instead).
    doc.add_point(0, 2, PointPrompt(11, 7, False))
    trimmed = key.copy()
    trimmed[:, 10:12] = False
    doc.set_preview(Preview(0, 2, trimmed[None], window=window))
    doc.accept_preview()
    np.testing.assert_array_equal(doc.labels.array[2] == label, trimmed)
    assert doc.prompts(0, 2).base is None
    doc.undo()
    np.testing.assert_array_equal(doc.labels.array[2] == label, key)


def test_the_model_window_of_a_slice_is_its_keys_else_the_nearest_keys():
    doc = _doc()
    label = doc.active_label
    mask = np.zeros((20, 30), dtype=bool)
    mask[5:10, 5:12] = True
    assert doc.model_window_at(label, 0, 3) is None
    for index, window in ((1, Window(40, 400)), (5, Window(-600, 1500))):
        doc.set_preview(Preview(0, index, mask[None], window=window))
        doc.accept_preview()
    doc.begin_stroke(0, 2, "brush")  # a brushed key knows no window
    doc.stroke_dab((10, 10), 2, erase=False)
    doc.end_stroke()
    assert doc.model_window_at(label, 0, 1) == Window(40, 400).key()
    assert doc.model_window_at(label, 0, 2) == Window(40, 400).key()
    assert doc.model_window_at(label, 0, 3) == Window(40, 400).key()  # a tie goes to the lower key
    assert doc.model_window_at(label, 0, 4) == Window(-600, 1500).key()
    assert doc.model_window_at(label, 1, 4) is None  # keys belong to one axis


def test_a_key_remembers_what_its_slice_held_until_a_propagation_runs_over_it():
    """A re-propagation reads the structure's extent as the last propagation left it, so a key
    made since then remembers whether its slice held the label before (KeyMark.held_before); the
    propagation's own undo step settles the keys it ran from, and undo makes them new again."""
    doc = _doc()
    label = doc.active_label
    doc.labels.array[1:4, 5:10, 5:10] = label  # what a propagation left on slices 1..3
    mask = np.zeros((20, 30), dtype=bool)
    mask[5:10, 5:12] = True
    doc.set_preview(Preview(0, 3, mask[None]))
    doc.accept_preview()  # a correction of the end slice
    doc.set_preview(Preview(0, 4, mask[None]))
    doc.accept_preview()  # a correction past the end
    assert doc.keys_since_propagation(label, 0) == {3: True, 4: False}
    doc.set_preview(Preview(0, 4, np.roll(mask, 2, axis=1)[None]))
    doc.accept_preview()  # corrected again before P: its slice still counts as it was before both
    assert doc.keys_since_propagation(label, 0)[4] is False
    doc.paint_slice_mask(0, 0, mask, label, "brush")
    doc.begin_stroke(0, 2, "eraser")
    doc.stroke_dab((7, 7), 4, erase=True)
    doc.end_stroke()
    assert doc.keys_since_propagation(label, 0) == {0: False, 2: True, 3: True, 4: False}
    settled = doc.labels.array.copy()
    settled[5, 5:10, 5:10] = label
    from annotator.core.geometry import slice_region

    region = slice_region(doc.labels.shape_zyx, 0, 5)
    edit = doc.labels.apply(region, settled[region], "propagate")
    doc.apply_propagation(edit, label, 0, [0, 2, 3])  # 4 was made while it ran: still new
    assert doc.keys_since_propagation(label, 0) == {4: False}
    assert set(doc.key_marks(label, 0)) == {0, 2, 3, 4}
    doc.undo()
    assert doc.keys_since_propagation(label, 0) == {0: False, 2: True, 3: True, 4: False}
    assert not (doc.labels.array[5] == label).any()
    doc.redo()
    doc.apply_propagation(None, label, 0, [4])  # nothing changed: still one undo step for the keys
    assert doc.keys_since_propagation(label, 0) == {}
    assert doc.history.descriptions()[-1] == "propagate (nothing changed)"
    assert np.array_equal(doc.labels.array, settled)
