"""3-D propagation: stopping at structure ends, leaks cut at the reach of a slice, keys (never
rewritten; an empty key ends the structure; runs from both sides blended), one undoable edit,
cancel leaving the labels as they were, a neighbour the model takes and a run reopened past an end
onto a neighbour (synthetic), and on the shared CT: liver/kidneys from one box, each slice embedded
at most once."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from support import lite_medsam as support

from annotator.core.geometry import Window
from annotator.core.history import History
from annotator.core.labels import LabelMap, LabelTable
from annotator.engine.api import MaskPrediction
from annotator.engine.propagate import (
    Key,
    PropagationCancelled,
    PropagationParams,
    propagate,
)
from annotator.engine.propagation_edit import propagation_edit

W = Window(40, 400)


class TubeModel:
    """A fake SlicePredictor: slices FIRST..LAST hold a bright disk; the "model" returns the disk
    inside the box, and past the ends a dim blob of about the same size (what a real box model does
    when there is nothing left: it segments whatever is in the box)."""

    FIRST, LAST, N = 5, 15, 20

    def __init__(self, blob: np.ndarray | None = None) -> None:
        self.predicted: list[int] = []
        self.prefetched: list[tuple[int, int, int]] = []
        rr, cc = np.ogrid[:40, :40]
        self.disk = (rr - 20) ** 2 + (cc - 20) ** 2 <= 36
        self.blob = self.disk if blob is None else blob

    def raw(self, index: int) -> np.ndarray:
        img = np.full((40, 40), -100.0)
        if self.FIRST <= index <= self.LAST:
            img[self.disk] = 60.0
        return img

    def predict(self, index: int, window: Window, *, box_xyxy) -> MaskPrediction:
        self.predicted.append(index)
        return MaskPrediction(self.blob[None].copy(), np.array([0.9], np.float32), np.zeros((1, 256, 256), np.float32))

    def prefetch(self, index: int, step: int, count: int, window: Window) -> None:
        self.prefetched.append((index, step, count))


def key(model: TubeModel, index: int, empty: bool = False) -> Key:
    return Key(index, np.zeros_like(model.disk) if empty else model.disk.copy(), W)


class HalfSureTube(TubeModel):
    """Past the tube's ends the "model" segments a blob that looks like the tube (same grey level, so
    the intensity rule cannot tell) but estimates its IoU at 0.52, as LiteMedSAM does for whatever
    a box holds where the structure has ended."""

    def raw(self, index: int) -> np.ndarray:
        img = np.full((40, 40), -100.0)
        img[self.disk] = 60.0
        return img

    def predict(self, index: int, window: Window, *, box_xyxy) -> MaskPrediction:
        pred = super().predict(index, window, box_xyxy=box_xyxy)
        score = 0.9 if self.FIRST <= index <= self.LAST else 0.52
        return MaskPrediction(pred.masks, np.array([score], np.float32), pred.low_res_logits)


@pytest.mark.parametrize(("model_class", "reason"), [(TubeModel, "intensity"), (HalfSureTube, "confidence 0.52")])
def test_stops_where_the_structure_ends_in_both_directions(model_class, reason):
    model = model_class()
    result = propagate(model, key(model, 10), TubeModel.N)
    assert sorted(result.masks) == list(range(TubeModel.FIRST, TubeModel.LAST + 1))
    assert reason in result.stops["+"]
    assert reason in result.stops["-"]
    assert model.prefetched
    assert all(step in (1, -1) for _, step, _ in model.prefetched)


def test_a_shape_that_barely_changes_is_embedded_every_other_slice_and_ends_where_it_did():
    plain_model, skip_model = TubeModel(), TubeModel()
    plain = propagate(plain_model, key(plain_model, 10), TubeModel.N)
    skipped = propagate(skip_model, key(skip_model, 10), TubeModel.N, params=PropagationParams(skip_iou=0.8))
    assert sorted(skipped.masks) == sorted(plain.masks) == list(range(TubeModel.FIRST, TubeModel.LAST + 1))
    for index, mask in skipped.masks.items():
        assert np.array_equal(mask, skip_model.disk), index  # the interpolated slices too
    # The run's cost: each (slice, window) the model was asked about, once.
    assert plain.embedded == {(i, W.key()) for i in range(TubeModel.FIRST - 1, TubeModel.LAST + 2) if i != 10}
    # 11, 13, 9, 7 interpolated; near each end a failed two-slice try (17, 3) costs an embedding the
    # slice-by-slice run never needs.
    assert {i for i, _ in skipped.embedded} == {3, 4, 5, 6, 8, 12, 14, 15, 16, 17}
    assert len(skipped.embedded) < len(plain.embedded)
    assert {2, -2} <= {step for _, step, _ in skip_model.prefetched}  # every other slice embedded ahead
    # A shape that changes more than skip_iou allows is segmented slice by slice: every try two
    # slices on is refused (their embeddings serve the next step, but for the tries past the ends).
    strict_model = TubeModel()
    strict = propagate(strict_model, key(strict_model, 10), TubeModel.N, params=PropagationParams(skip_iou=1.01))
    assert strict.embedded == plain.embedded | {(3, W.key()), (17, W.key())}
    assert set(strict_model.predicted) - {3, 17} == set(plain_model.predicted)
    assert {i: m.tolist() for i, m in strict.masks.items()} == {i: m.tolist() for i, m in plain.masks.items()}


def test_direction_and_range_limits():
    model = TubeModel()
    up = propagate(model, key(model, 10), TubeModel.N, direction="up")
    assert sorted(up.masks) == list(range(10, TubeModel.LAST + 1))
    ranged = propagate(TubeModel(), key(model, 10), TubeModel.N, index_range=(8, 12))
    assert sorted(ranged.masks) == list(range(8, 13))
    assert ranged.stops == {"+": "volume edge", "-": "volume edge"}


def test_a_leak_is_cut_at_the_reach_of_the_previous_slice():
    """A model that returns a blob twice the structure's size: each slice may grow by at most the
    in-plane reach of one slice spacing (2 px here), so the leak never runs on."""
    rr, cc = np.ogrid[:40, :40]
    model = TubeModel(blob=(rr - 20) ** 2 + (cc - 20) ** 2 <= 144)
    result = propagate(model, key(model, 10), TubeModel.N, direction="up", slice_spacing_px=2.0,
                       params=PropagationParams(max_intensity_z=1e9))
    areas = [int(result.masks[i].sum()) for i in range(10, 14)]
    assert all(b > a for a, b in zip(areas, areas[1:], strict=False))  # it grows ...
    grown = result.masks[11] & ~model.disk
    from scipy.ndimage import distance_transform_edt

    assert distance_transform_edt(~model.disk)[grown].max() <= 2.0  # ... by at most the reach per slice


def test_between_two_keys_both_are_used_and_an_empty_key_ends_the_structure():
    model = TubeModel()
    shifted = np.roll(model.disk, 4, axis=1)
    keys = [key(model, 8), Key(12, shifted, W), key(model, 14, empty=True)]
    result = propagate(model, keys, TubeModel.N, params=PropagationParams(max_intensity_z=1e9))
    assert result.keys == {8, 12, 14}
    assert not result.masks[14].any()
    assert 13 in result.masks  # carried up from 12 towards the empty key ...
    assert all(i not in result.masks for i in range(15, TubeModel.N))  # ... and never past it
    np.testing.assert_array_equal(result.masks[12], shifted)  # keys are kept as given
    # Slices 9..11 blend the two keys' runs: nearer key 8 -> more like the disk at 9, the shift at 11.
    centre_col = [float(np.nonzero(result.masks[i])[1].mean()) for i in (9, 10, 11)]
    assert centre_col[0] < centre_col[1] < centre_col[2]
    assert "8..12" in result.stops


class BlurredKeyTube(TubeModel):
    """Slice 13 is blurred (partial volume): inside the disk its values spread from the background's
    to the structure's, as where a correction box caught a vessel's edge."""

    def raw(self, index: int) -> np.ndarray:
        img = super().raw(index)
        if index == 13:
            img[self.disk] = np.linspace(-100.0, 60.0, int(self.disk.sum()))
        return img


def test_a_blurred_correction_key_does_not_lose_what_the_structure_looks_like():
    """A run from a key whose voxels are half background learns a wide, wrong intensity from it alone
    and follows the background through the volume; learning from every key's voxels, it still
    stops where the tube ends."""
    model = BlurredKeyTube()
    keys = [key(model, 10), key(model, 13)]
    pooled = propagate(model, keys, TubeModel.N, direction="up")
    assert max(pooled.masks) == TubeModel.LAST
    assert "intensity" in pooled.stops["+"]
    own = propagate(model, keys, TubeModel.N, direction="up", params=PropagationParams(intensity_from="own"))
    assert max(own.masks) == TubeModel.N - 1  # the old rule: it never stops
    with pytest.raises(ValueError, match="intensity_from"):
        propagate(model, keys, TubeModel.N, params=PropagationParams(intensity_from="x"))


def test_a_correction_inside_the_structure_does_not_move_its_ends():
    """Re-propagating after a correction inside what is labelled refines it, but the outward runs stop
    where the structure ends now; a key beyond an end is how the user moves that end."""
    model = TubeModel()
    loose = PropagationParams(max_intensity_z=1e9)  # nothing else would stop these runs
    inside = propagate(model, [key(model, 9), key(model, 12)], TubeModel.N, params=loose, extent=(7, 14))
    assert min(inside.masks) == 7
    assert max(inside.masks) == 14
    assert "current end (slice 14)" in inside.stops["+"]
    assert "current end (slice 7)" in inside.stops["-"]
    on_end = propagate(model, [key(model, 9), key(model, 14)], TubeModel.N, params=loose, extent=(7, 14))
    assert max(on_end.masks) == 14  # a key on the end corrects it, the end stays
    assert min(on_end.masks) == 7
    past = propagate(model, [key(model, 9), key(model, 15)], TubeModel.N, params=loose, extent=(7, 14))
    assert max(past.masks) == TubeModel.N - 1  # a key past the end moves it: the run goes on
    below = propagate(model, [key(model, 6), key(model, 12)], TubeModel.N, params=loose, extent=(7, 14))
    assert min(below.masks) == 0
    assert max(below.masks) == 14
    reopened = propagate(model, [key(model, 9), key(model, 14)], TubeModel.N, extent=(7, 14),
                         params=PropagationParams(max_intensity_z=1e9, key_on_end_reopens=True))
    assert max(reopened.masks) == TubeModel.N - 1  # the earlier rule
    free = propagate(model, [key(model, 9), key(model, 12)], TubeModel.N, params=loose)
    assert (min(free.masks), max(free.masks)) == (0, TubeModel.N - 1)


def test_a_structure_has_ends_once_something_was_propagated():
    """The extent a re-propagation keeps is what an earlier run labelled; while every labelled slice
    is a key (the first P, keys painted by hand) there are no ends yet and the runs go outwards."""
    from annotator.engine.label_extent import label_before, structure_extent

    mask = np.zeros((20, 8, 8), dtype=bool)
    mask[10, 2:5, 2:5] = True
    assert structure_extent(mask, 0, [10]) is None
    mask[14, 2:5, 2:5] = True
    assert structure_extent(mask, 0, [10, 14]) is None
    mask[11:14, 2:5, 2:5] = True  # propagated between them
    assert structure_extent(mask, 0, [10, 14]) == (10, 14)
    assert structure_extent(np.zeros_like(mask), 0, []) is None
    # Keys made since that propagation count as their slice was: a correction past the end lies
    # beyond the extent (it reopens the run there), one of the end slice or an emptied end keeps it.
    corrected = mask.copy()
    corrected[16, 2:5, 2:5] = True
    assert structure_extent(corrected, 0, [10, 14, 16]) == (10, 16)
    assert structure_extent(corrected, 0, [10, 14, 16], {16: False}) == (10, 14)
    emptied = mask.copy()
    emptied[14] = False
    assert structure_extent(emptied, 0, [10, 14]) == (10, 13)
    assert structure_extent(emptied, 0, [10, 14], {14: True}) == (10, 14)
    corrected[14] = False
    assert structure_extent(corrected, 0, [10, 14, 16], {14: True, 16: False}) == (10, 14)
    before = label_before(corrected, 0, [10, 14, 16], {14: True, 16: False})
    assert before.extent == (10, 14)
    assert sorted(before.labelled) == [10, 11, 12, 13, 16]
    assert before.new_keys == {14, 16}
    model = TubeModel()
    only_key = np.zeros((TubeModel.N, 40, 40), dtype=bool)
    only_key[10] = model.disk
    first = propagate(model, key(model, 10), TubeModel.N, params=PropagationParams(max_intensity_z=1e9),
                      extent=structure_extent(only_key, 0, [10]))
    assert (min(first.masks), max(first.masks)) == (0, TubeModel.N - 1)  # the first P runs outwards


def test_keys_close_together_are_filled_by_shape_interpolation():
    """Between keys at most two slices apart the shape is interpolated (measured better than running
    the model there); a wider gap is run from both keys."""
    model = TubeModel()
    close = propagate(model, [key(model, 8), key(model, 11)], TubeModel.N, direction="up",
                      index_range=(8, 11))
    assert close.stops["8..11"] == "interpolated"
    assert not set(model.predicted) & {9, 10}
    assert close.masks[9].any()
    assert close.masks[10].any()
    wide = TubeModel()
    far = propagate(wide, [key(wide, 7), key(wide, 11)], TubeModel.N, index_range=(7, 11))
    assert far.stops["7..11"].startswith("up:")
    assert {8, 9, 10} <= set(wide.predicted)


class DriftModel:
    """A fake SlicePredictor that drifts: whatever it is prompted with, it returns the disk 2 px to
    the right of the box's centre, so a run moves the mask 2 px a slice, away from where it began."""

    def __init__(self) -> None:
        rr, cc = np.ogrid[:40, :80]
        self.grid = rr, cc
        self.disk = self.disk_at(20)

    def disk_at(self, col: float) -> np.ndarray:
        rr, cc = self.grid
        return (rr - 20) ** 2 + (cc - col) ** 2 <= 36

    def raw(self, index: int) -> np.ndarray:
        return np.zeros((40, 80))

    def predict(self, index: int, window: Window, *, box_xyxy) -> MaskPrediction:
        centre = (box_xyxy[0] + box_xyxy[2]) / 2
        return MaskPrediction(self.disk_at(round(centre) + 2)[None], np.array([0.9], np.float32),
                              np.zeros((1, 256, 256), np.float32))

    def prefetch(self, index: int, step: int, count: int, window: Window) -> None:
        pass


def test_where_the_runs_from_two_keys_disagree_the_keys_shape_is_interpolated():
    """The run up from key 5 and the run down from key 15 drift apart near their keys (each has
    drifted from its own key, in the same direction); there the model is not to be trusted and the
    slices take the keys' interpolated shape. Mid-way both runs agree and their blend is kept."""
    model = DriftModel()
    keys = [Key(5, model.disk, W), Key(15, model.disk, W)]
    kwargs = {"index_range": (5, 15), "slice_spacing_px": 3.0}
    checked = propagate(model, keys, 20, params=PropagationParams(gap_agree_iou=0.5), **kwargs)
    blended = propagate(model, keys, 20, params=PropagationParams(gap_agree_iou=0.0), **kwargs)
    for index in (6, 7, 13, 14):  # runs 8+ px apart: no overlap
        np.testing.assert_array_equal(checked.masks[index], model.disk)
        assert not np.array_equal(blended.masks[index], model.disk)
    for index in (10,):  # both runs drifted 10 px: they agree, the blend stays
        np.testing.assert_array_equal(checked.masks[index], blended.masks[index])
        assert np.array_equal(checked.masks[index], model.disk_at(30))


def _disk_at(row: float, col: float) -> np.ndarray:
    rr, cc = np.ogrid[:40, :80]
    return (rr - row) ** 2 + (cc - col) ** 2 <= 25


def test_between_keys_that_do_not_overlap_a_run_that_met_the_other_is_kept_where_they_disagree():
    """A vessel crossing the slice (2 px a slice, 40 px between the keys): the keys do not overlap,
    so their shape interpolation is a guess that empties mid-way. Each run drifts off far from its
    own key but both agree on slices 8..12; below them the run up from the lower key is right (it
    met the other there), above them the run down from the upper key."""
    from annotator.engine.propagation_gaps import gap_masks, interpolate_gap

    truth = {i: _disk_at(20, 10 + 2 * i) for i in range(21)}
    lower, upper = Key(0, truth[0], W), Key(20, truth[20], W)
    up = {i: truth[i] if i <= 12 else _disk_at(8, 10 + 2 * i) for i in range(1, 20)}
    down = {i: truth[i] if i >= 8 else _disk_at(32, 10 + 2 * i) for i in range(1, 20)}
    out = gap_masks(lower, upper, up, down, (1.0, 1.0), agree_iou=0.5, fill_unreached_gap=True)
    for index in range(1, 20):
        np.testing.assert_array_equal(out[index], truth[index], err_msg=str(index))
    shape = interpolate_gap(lower, upper, (1.0, 1.0))
    assert not shape[10].any()  # what the keys' interpolation would have put there
    # Without a slice where the runs agree, nothing confirms either run: the keys' shape is taken.
    lost = {i: _disk_at(8, 10 + 2 * i) for i in range(1, 20)}
    out = gap_masks(lower, upper, lost, down | {i: _disk_at(32, 10 + 2 * i) for i in range(8, 13)}, (1.0, 1.0),
                    agree_iou=0.5, fill_unreached_gap=True)
    for index in (3, 10, 17):
        np.testing.assert_array_equal(out[index], shape[index], err_msg=str(index))


class MovingDisk:
    """A fake SlicePredictor: a bright disk crossing the slice 3 px a slice; the "model" returns the
    part of it inside the box, as a box model does with a structure half out of its box."""

    N = 20

    def __init__(self) -> None:
        self.grid = np.ogrid[:40, :80]

    def disk(self, index: int) -> np.ndarray:
        rr, cc = self.grid
        return (rr - 20) ** 2 + (cc - (10 + 3 * index)) ** 2 <= 25

    def raw(self, index: int) -> np.ndarray:
        img = np.full((40, 80), -100.0)
        img[self.disk(index)] = 60.0
        return img

    def predict(self, index: int, window: Window, *, box_xyxy) -> MaskPrediction:
        rr, cc = self.grid
        x0, y0, x1, y1 = box_xyxy
        inside = (cc >= x0) & (cc <= x1) & (rr >= y0) & (rr <= y1)
        return MaskPrediction((self.disk(index) & inside)[None], np.array([0.9], np.float32),
                              np.zeros((1, 256, 256), np.float32))

    def prefetch(self, index: int, step: int, count: int, window: Window) -> None:
        pass


def test_a_structure_moving_across_the_slice_is_followed_by_boxes_moved_with_it():
    from annotator.evaluate.protocol import dice

    model = MovingDisk()
    followed = propagate(model, Key(2, model.disk(2), W), MovingDisk.N, direction="up", slice_spacing_px=4.0)
    assert sorted(followed.masks) == list(range(2, MovingDisk.N))
    assert min(dice(followed.masks[i], model.disk(i)) for i in range(3, MovingDisk.N)) >= 0.85
    # Boxes around where it was: the mask trails the disk, shrinks slice by slice and is lost.
    trailing = propagate(model, Key(2, model.disk(2), W), MovingDisk.N, direction="up", slice_spacing_px=4.0,
                         params=PropagationParams(motion_slices=0))
    last = max(trailing.masks)
    assert last < MovingDisk.N - 1 or dice(trailing.masks[last], model.disk(last)) < 0.5


def test_drift_per_slice_is_steady_motion_only():
    from annotator.engine.propagation_motion import drift_per_slice, shifted, steady_drift

    model = MovingDisk()
    masks = [model.disk(i) for i in (4, 5, 6, 7)]
    assert drift_per_slice(masks, 0.5) == (0, 3)
    wobble = [model.disk(4), model.disk(5), model.disk(4), model.disk(5)]
    assert drift_per_slice(wobble, 0.5) == (0, 0)
    np.testing.assert_array_equal(shifted(model.disk(4), (0, 3)), model.disk(5))
    assert steady_drift(masks, 0.5, 3.0, reach_px=2.0) == (0, 0)  # faster than a slice's reach
    two = [m | model.disk(0) for m in masks]  # a second piece: a centre between them tells nothing
    assert steady_drift(two, 0.5, 3.0, reach_px=4.0) == (0, 0)
    assert steady_drift(masks, 0.5, 3.0, reach_px=4.0) == (0, 3)


class TwoVessels:
    """A fake SlicePredictor with two bright disks side by side (the ascending and descending aorta
    at the arch): the left one on slices 5..15, the right one on 5..12. A box holding one disk's
    centre gets that disk; a box over both gets them joined by a bar, as a box model asked for one
    object over two does."""

    N = 20

    def __init__(self) -> None:
        rr, cc = np.ogrid[:40, :64]
        self.left = (rr - 20) ** 2 + (cc - 14) ** 2 <= 25
        self.right = (rr - 20) ** 2 + (cc - 50) ** 2 <= 25
        self.bar = (abs(rr - 20) <= 2) & (cc >= 14) & (cc <= 50)
        self.predicted = 0

    def disks(self, index: int) -> list[tuple[np.ndarray, int]]:
        return [(disk, col) for disk, col, last in ((self.left, 14, 15), (self.right, 50, 12)) if 5 <= index <= last]

    def raw(self, index: int) -> np.ndarray:
        img = np.full((40, 64), -100.0)
        for disk, _ in self.disks(index):
            img[disk] = 60.0
        return img

    def predict(self, index: int, window: Window, *, box_xyxy) -> MaskPrediction:
        self.predicted += 1
        inside = [disk for disk, col in self.disks(index) if box_xyxy[0] <= col <= box_xyxy[2]]
        mask = np.logical_or.reduce(inside) if inside else np.zeros((40, 64), bool)
        if len(inside) == 2:
            mask = mask | self.bar
        return MaskPrediction(mask[None], np.array([0.9], np.float32), np.zeros((1, 256, 256), np.float32))

    def prefetch(self, index: int, step: int, count: int, window: Window) -> None:
        pass


def test_a_structure_in_two_pieces_is_followed_piece_by_piece_and_ends_where_its_last_piece_does():
    model = TwoVessels()
    result = propagate(model, Key(10, model.left | model.right, W), TwoVessels.N)
    assert sorted(result.masks) == list(range(5, 16))
    for index in range(5, 13):
        np.testing.assert_array_equal(result.masks[index], model.left | model.right, err_msg=str(index))
    for index in (13, 14, 15):  # the right piece ended; the left one goes on alone
        np.testing.assert_array_equal(result.masks[index], model.left, err_msg=str(index))
    assert "empty" in result.stops["+"]
    assert "empty" in result.stops["-"]
    # With one box over both pieces the bar between them creeps in, a slice's reach at a time.
    whole_model = TwoVessels()
    whole = propagate(whole_model, Key(10, model.left | model.right, W), TwoVessels.N,
                      params=PropagationParams(min_piece_side_256=0))
    assert (whole.masks[12] & model.bar & ~model.left & ~model.right).any()
    assert whole_model.predicted < model.predicted  # what the pieces cost: a box each


class BranchAppears(TwoVessels):
    """The left disk on every slice; a larger right disk from slice 8 up (a branch that appears)."""

    def __init__(self) -> None:
        super().__init__()
        rr, cc = np.ogrid[:40, :64]
        self.right = (rr - 20) ** 2 + (cc - 50) ** 2 <= 49

    def disks(self, index: int) -> list[tuple[np.ndarray, int]]:
        return [(self.left, 14)] + ([(self.right, 50)] if index >= 8 else [])


def test_between_keys_a_piece_that_appears_is_kept_from_the_run_that_has_it():
    """Key 5 holds the left piece, key 15 both. The run up from 5 cannot find the right piece (no box
    of it holds it); the run down from 15 follows it to where it begins. They disagree there (IoU
    0.34), but not by a drift: one holds the other and a piece apart, so that run is kept, not the
    keys' shape interpolation (which would grow the right piece only near key 15)."""
    model = BranchAppears()
    keys = [Key(5, model.left.copy(), W), Key(15, model.left | model.right, W)]
    result = propagate(model, keys, TwoVessels.N, index_range=(5, 15))
    for index in range(8, 15):
        np.testing.assert_array_equal(result.masks[index], model.left | model.right, err_msg=str(index))
    for index in (6, 7):
        np.testing.assert_array_equal(result.masks[index], model.left, err_msg=str(index))


def test_a_run_with_a_piece_more_is_told_from_a_leak():
    from annotator.engine.propagation_gaps import run_with_a_piece_more

    model = BranchAppears()
    both = model.left | model.right
    assert run_with_a_piece_more(model.left, both) is both
    assert run_with_a_piece_more(both, model.left) is both
    leak = model.left | (model.bar & (np.arange(64) < 30))  # grown from the piece, attached to it
    assert run_with_a_piece_more(model.left, leak) is None
    assert run_with_a_piece_more(model.left, model.right) is None  # two different places


def test_pieces_to_follow_need_a_minimum_size_and_take_the_crumbs_nearest_to_them():
    from annotator.engine.propagation_pieces import pieces_to_follow

    mask = np.zeros((30, 60), bool)
    mask[10:20, 5:15] = True   # 100 px
    mask[10:20, 40:50] = True  # 100 px
    mask[14, 18] = True        # a crumb nearer the left piece
    pieces = pieces_to_follow(mask, 8.0)
    assert len(pieces) == 2
    np.testing.assert_array_equal(pieces[0] | pieces[1], mask)
    assert pieces[0][14, 18]
    assert not pieces[1][14, 18]
    assert pieces_to_follow(mask, 11.0) == []  # neither piece is 11 x 11: one box over the whole
    assert pieces_to_follow(mask[:, :30], 8.0) == []  # one large piece


def test_interpolation_between_keys_needs_no_model():
    model = TubeModel()
    keys = [key(model, 5), Key(9, np.roll(model.disk, 8, axis=1), W)]
    result = propagate(model, keys, TubeModel.N, direction="up",
                       params=PropagationParams(between_keys="interpolate", max_intensity_z=1e9))
    assert result.stops["5..9"] == "interpolated"
    assert [i for i in model.predicted if 5 < i < 9] == []
    centre_col = [float(np.nonzero(result.masks[i])[1].mean()) for i in (6, 7, 8)]
    assert centre_col == pytest.approx([22.0, 24.0, 26.0], abs=0.6)


def _label_map():
    table = LabelTable()
    table.add("organ", label_id=4)
    table.add("other", label_id=9)
    labels = LabelMap((TubeModel.N, 40, 40), table)
    labels.array[:, 0:3, 0:3] = 9  # another label's voxels must survive
    labels.array[10, 18:22, 18:22] = 4  # the accepted key-slice mask
    return labels


def test_result_lands_as_one_undo_step_never_rewrites_a_key_and_undo_restores_exactly():
    model = TubeModel()
    labels = _label_map()
    before = labels.array.copy()
    history = History(labels)
    result = propagate(model, key(model, 10), TubeModel.N)
    history.push(propagation_edit(labels, result, 0, 4))
    assert history.descriptions() == ["propagate"]
    others = [i for i in range(TubeModel.FIRST, TubeModel.LAST + 1) if i != 10]
    assert (labels.array[others][:, model.disk] == 4).all()
    np.testing.assert_array_equal(labels.array[10], before[10])  # the key slice is the user's
    assert (labels.array[:, 0:3, 0:3] == 9).all()
    history.undo()
    np.testing.assert_array_equal(labels.array, before)


def test_a_shorter_rerun_removes_the_earlier_runs_tail_and_keeps_far_pieces():
    model = TubeModel()
    labels = _label_map()
    labels.array[0, 30:33, 30:33] = 4  # a separate piece far away: not this run's business
    first = propagate(model, key(model, 10), TubeModel.N)
    propagation_edit(labels, first, 0, 4)
    assert (labels.array[15] == 4).any()
    shorter = propagate(model, [key(model, 10), key(model, 12, empty=True)], TubeModel.N, direction="down")
    labels.array[12][labels.array[12] == 4] = 0  # the user erased slice 12 (the empty key)
    propagation_edit(labels, shorter, 0, 4)
    assert not (labels.array[13:] == 4).any()  # the tail beyond the new end is gone
    assert (labels.array[0, 30:33, 30:33] == 4).all()


class UnsureTube(TubeModel):
    """The tube, but the model is unsure (IoU estimate 0.3) on the slices in `unsure`: a run stops there."""

    def __init__(self, unsure: set[int]) -> None:
        super().__init__()
        self.unsure = unsure

    def predict(self, index: int, window: Window, *, box_xyxy) -> MaskPrediction:
        pred = super().predict(index, window, box_xyxy=box_xyxy)
        if index in self.unsure:
            return MaskPrediction(pred.masks, np.array([0.3], np.float32), pred.low_res_logits)
        return pred


def test_a_rerun_that_stops_early_keeps_the_tail_that_continues_it_and_clears_one_that_does_not():
    """Slices 5..15 were labelled by an earlier run; a correction on slice 12 is re-propagated and
    the run down stops at 9 (the model is unsure there). The label's slices 5..8 continue the run's
    last mask (slice 9 ... 10): a correction inside the structure does not move its end, so they stay.
    Had the earlier run labelled something else there (a neighbour it drifted into), they go."""
    model = UnsureTube({9})
    for tail, kept in ((model.disk, True), (np.roll(model.disk, 15, axis=1), False)):
        labels = _label_map()
        labels.array[5:16][:, model.disk] = 4
        labels.array[5:10][:, model.disk] = 0
        labels.array[5:10][:, tail] = 4
        result = propagate(model, key(model, 12), TubeModel.N, extent=(5, 15))
        assert min(i for i, m in result.masks.items() if m.any()) == 10
        propagation_edit(labels, result, 0, 4, keep_tail_iou=0.5)
        assert (labels.array[5:10][:, tail] == 4).all() == kept
        assert (labels.array[5:10] == 4).any() == kept
        assert (labels.array[10:16][:, model.disk] == 4).all()
    # keep_tail_iou > 1: any earlier tail goes (a run decides where the structure ends)
    labels = _label_map()
    labels.array[5:16][:, model.disk] = 4
    propagation_edit(labels, propagate(model, key(model, 12), TubeModel.N, extent=(5, 15)), 0, 4, keep_tail_iou=2.0)
    assert not (labels.array[5:10] == 4).any()


def _labelled(masks: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    return {i: m.copy() for i, m in masks.items()}


def test_a_re_propagation_stops_where_it_joins_the_labelled_mask_and_the_label_keeps_the_rest():
    """Slices 5..15 were labelled by an earlier run, wrongly on 5..8 (shifted: it had drifted).
    A correction on 7 re-propagates: up, slice 8 still differs, slice 9 agrees with the label
    (IoU >= join_iou), so the run stops there and the label keeps 9..15 as it was, never asking
    the model about them; down, it re-draws 5..6, to the structure's current end. With
    join_iou 0 the run re-draws every slice to the end, as before the rule."""
    model = TubeModel()
    shifted = np.roll(model.disk, 5, axis=1)
    before = {i: (shifted if i <= 8 else model.disk) for i in range(TubeModel.FIRST, TubeModel.LAST + 1)}
    correction = key(model, 7)
    result = propagate(model, correction, TubeModel.N, extent=(5, 15), labelled=_labelled(before))
    assert result.stops["+"] == "joined the labelled mask at slice 9"
    assert sorted(result.masks) == [5, 6, 7, 8]
    assert set(range(9, TubeModel.N)) <= result.kept
    assert 7 not in result.kept
    assert set(model.predicted) == {5, 6, 8, 9}
    labels = _label_map()
    for i, m in before.items():
        labels.array[i][m] = 4
    marker = labels.array[12].copy()
    labels.array[12][0, 39] = 4  # a voxel the user painted there: a kept slice keeps it
    propagation_edit(labels, result, 0, 4)
    for i in (5, 6, 8):
        np.testing.assert_array_equal(labels.array[i] == 4, model.disk)  # re-drawn from the correction
    assert labels.array[12][0, 39] == 4
    assert (labels.array[12][model.disk] == marker[model.disk]).all()
    assert (labels.array[9:16][:, model.disk] == 4).all()
    # With two slices per step (skip_iou) the run joins the label on the far slice of a step too.
    skipping = propagate(TubeModel(), correction, TubeModel.N, extent=(5, 15), labelled=_labelled(before),
                         params=PropagationParams(skip_iou=0.8))
    assert skipping.stops["+"].startswith("joined the labelled mask at slice")
    assert max(skipping.masks) < min(i for i in skipping.kept if i > 7)
    assert not set(skipping.masks) & skipping.kept
    everywhere = TubeModel()
    full = propagate(everywhere, correction, TubeModel.N, extent=(5, 15), labelled=_labelled(before),
                     params=PropagationParams(join_iou=0.0))
    assert sorted(full.masks) == list(range(5, 16))
    assert not full.kept
    assert set(range(9, 16)) <= set(everywhere.predicted)


def test_between_two_keys_the_runs_go_on_to_the_other_key_even_where_they_join_the_label():
    """Keys on 5 and 15; the label between is wrong on 6..8 and right on 9..14. Between keys both
    runs go on to the other key and are blended as on a first run (stopping them where they joined
    the label scored lower), so every slice between is re-drawn and none is kept."""
    model = TubeModel()
    shifted = np.roll(model.disk, 5, axis=1)
    before = {i: (shifted if i <= 8 else model.disk) for i in range(6, 15)}
    result = propagate(model, [key(model, 5), key(model, 15)], TubeModel.N, extent=(5, 15),
                       labelled=_labelled(before))
    assert result.stops["5..15"] == "up: volume edge; down: volume edge"
    assert not result.kept & set(range(5, 16))
    for i in range(6, 15):
        np.testing.assert_array_equal(result.masks[i], model.disk)


class NarrowingTube(TubeModel):
    """A tube that narrows from slice 9 on: a disk of radius 6 on 5..8, of radius 3 on 9..15. A run
    up from 5 stops at 9 (the area falls to a quarter); one down from 15 goes on (each slice may
    grow only within reach of the one before)."""

    def __init__(self) -> None:
        super().__init__()
        rr, cc = np.ogrid[:40, :40]
        self.narrow = (rr - 20) ** 2 + (cc - 20) ** 2 <= 9

    def shape(self, index: int) -> np.ndarray:
        return self.disk if index <= 8 else self.narrow

    def raw(self, index: int) -> np.ndarray:
        img = np.full((40, 40), -100.0)
        if self.FIRST <= index <= self.LAST:
            img[self.shape(index)] = 60.0
        return img

    def predict(self, index: int, window: Window, *, box_xyxy) -> MaskPrediction:
        self.predicted.append(index)
        return MaskPrediction(self.shape(index)[None].copy(), np.array([0.9], np.float32),
                              np.zeros((1, 256, 256), np.float32))


def test_between_two_keys_slices_only_an_older_keys_run_reached_keep_the_label():
    """A correction on 5 under an older key on 15: the run up from 5 stops at 9, the run down from
    15 reaches 9..14 alone. It drew them in the last propagation too, with the other run beside
    it; alone it says nothing new, so the label keeps its masks there. From a key made since the
    last propagation (or with gap_keeps_label off) the lone run's masks are taken, as before."""
    model = NarrowingTube()
    keys = [Key(5, model.disk.copy(), W), Key(15, model.narrow.copy(), W)]
    earlier = np.roll(model.narrow, 2, axis=1)  # what the last propagation left on 9..14
    before = {i: earlier for i in range(9, 15)}
    result = propagate(model, keys, TubeModel.N, extent=(5, 15), labelled=_labelled(before), new_keys={5})
    assert result.stops["5..15"].startswith("up: area fell to 0.26 of the previous slice at slice 9")
    for i in range(9, 15):
        np.testing.assert_array_equal(result.masks[i], earlier)
    for new_keys, params in (({5, 15}, PropagationParams()), ({5}, PropagationParams(gap_keeps_label=False))):
        redrawn = propagate(NarrowingTube(), keys, TubeModel.N, extent=(5, 15), labelled=_labelled(before),
                            new_keys=new_keys, params=params)
        for i in range(9, 15):
            np.testing.assert_array_equal(redrawn.masks[i], model.narrow)


def test_between_two_keys_slices_no_run_reached_are_interpolated():
    """Keys on 5 and 15 hold the structure; the model is unsure on 8..12, so the runs from both keys
    stop before meeting. The structure is present at both keys: the slices between take the shape
    interpolation of the nearest masks instead of being left empty."""
    model = UnsureTube({8, 9, 10, 11, 12})
    keys = [key(model, 5), key(model, 15)]
    filled = propagate(model, keys, TubeModel.N, params=PropagationParams(fill_unreached_gap=True))
    plain = propagate(model, keys, TubeModel.N, params=PropagationParams(fill_unreached_gap=False))
    assert all(i not in plain.masks for i in range(8, 13))
    for index in range(6, 15):
        np.testing.assert_array_equal(filled.masks[index], model.disk)
    # an empty key says the structure ends: nothing is filled towards it
    ended = propagate(model, [key(model, 5), key(model, 15, empty=True)], TubeModel.N,
                      params=PropagationParams(fill_unreached_gap=True))
    assert all(i not in ended.masks for i in range(8, 15))


class LungBase:
    """A fake SlicePredictor for a structure that curves around its neighbour (a lung base over the
    liver dome): on slices 5..15 a crescent of air (-850) over a dome of soft tissue (50), on fat
    (-100). On 10..15 the dome is small and the "model" returns the crescent; on 5..9 the dome
    rises into the crescent's inner part, and the model returns the dome with the crescent
    (mostly dome: it took the neighbour the box holds)."""

    N = 20

    def __init__(self) -> None:
        rr, cc = np.ogrid[:40, :40]
        r2 = (rr - 24) ** 2 + (cc - 20) ** 2
        self.top = (r2 <= 144) & (rr <= 24)
        self.crescent = self.top & (r2 > 64)         # slices 10..15
        self.thin_crescent = self.top & (r2 > 100)   # slices 5..9
        self.dome = (r2 <= 64) & (rr <= 24)

    def structure(self, index: int) -> np.ndarray:
        return self.crescent if index >= 10 else self.thin_crescent

    def raw(self, index: int) -> np.ndarray:
        img = np.full((40, 40), -100.0)
        if 5 <= index <= 15:
            img[self.top] = 50.0
            img[self.structure(index)] = -850.0
        return img

    def predict(self, index: int, window: Window, *, box_xyxy) -> MaskPrediction:
        mask = self.crescent if index >= 10 else self.top
        return MaskPrediction(mask[None].copy(), np.array([0.9], np.float32), np.zeros((1, 256, 256), np.float32))

    def prefetch(self, index: int, step: int, count: int, window: Window) -> None:
        pass


class FadingEnd(LungBase):
    """Below slice 10 the structure fades: most of the model's mask (the crescent) turns 170 units
    brighter (4.5 robust sd here: partial volume where a structure ends), only a band along its
    top keeps the structure's grey level. Not another tissue entirely."""

    def raw(self, index: int) -> np.ndarray:
        img = np.full((40, 40), -100.0)
        img[self.dome] = 50.0
        img[self.crescent] = -850.0 if index >= 10 else -680.0
        if index < 10:
            img[self.crescent & (np.arange(40)[:, None] <= 16)] = -850.0
        return img

    def predict(self, index: int, window: Window, *, box_xyxy) -> MaskPrediction:
        return MaskPrediction(self.crescent[None].copy(), np.array([0.9], np.float32), np.zeros((1, 256, 256), np.float32))


def test_where_the_model_takes_the_neighbour_the_structures_own_tissue_carries_the_run_on():
    """Where the model's mask is of another tissue entirely, the run takes the structure's own
    tissue next to the previous slice and goes on to the structure's end; with the rule off it
    stops where the model first took the dome."""
    model = LungBase()
    start = Key(12, model.crescent.copy(), Window(-600, 1500))
    result = propagate(model, start, LungBase.N)
    assert sorted(i for i, m in result.masks.items() if m.any()) == list(range(5, 16))
    assert "slice 4" in result.stops["-"]  # no crescent there: nothing of its tissue to carry on
    first = result.masks[9]  # the model took the dome here: the slice is the crescent's tissue
    assert np.count_nonzero(first & model.thin_crescent) >= 0.9 * max(first.sum(), model.thin_crescent.sum())
    for index in range(5, 10):
        assert np.count_nonzero(result.masks[index] & model.thin_crescent) >= 0.9 * model.thin_crescent.sum()
    off = propagate(model, start, LungBase.N, params=PropagationParams(neighbour_taken_z=0))
    assert min(off.masks) == 10
    assert "intensity" in off.stops["-"]
    assert "slice 9" in off.stops["-"]


def test_a_mask_a_few_sd_off_is_the_structure_ending_and_the_run_stops():
    """The model's mask a few robust sd from the structure (partial volume where a vessel ends in
    soft tissue) is not another tissue: the run stops there, though tissue like the structure's
    lies next to the previous slice; only a threshold that low would carry it on."""
    model = FadingEnd()
    start = Key(12, model.crescent.copy(), Window(-600, 1500))
    result = propagate(model, start, LungBase.N, direction="down")
    assert min(result.masks) == 10
    assert "intensity" in result.stops["-"]
    carried = propagate(model, start, LungBase.N, direction="down", params=PropagationParams(neighbour_taken_z=1.0))
    assert min(carried.masks) < 10


class LoopOnTheEnd:
    """A fake SlicePredictor for a run reopened past a structure's end into a neighbour of the same
    tissue: a tube on slices 5..15; a bowel loop of the same grey level lies beside it on 12..15 and
    over the tube's place on 16..19 (1 px off it, so every shape and intensity rule passes there).
    Asked about 16..19 the "model" returns the loop; asked about 12..15 with a box centred right of
    the tube's centre, it takes the loop beside the tube (what a box model does with the loop's box)."""

    N = 20

    def __init__(self) -> None:
        rr, cc = np.ogrid[:40, :40]
        self.tube = (rr - 20) ** 2 + (cc - 18) ** 2 <= 36
        self.loop_beside = (rr - 20) ** 2 + (cc - 31) ** 2 <= 25
        self.loop_over = (rr - 20) ** 2 + (cc - 19) ** 2 <= 36

    def raw(self, index: int) -> np.ndarray:
        img = np.full((40, 40), -100.0)
        if 5 <= index <= 15:
            img[self.tube] = 60.0
        if 12 <= index <= 15:
            img[self.loop_beside] = 60.0
        if index >= 16:
            img[self.loop_over] = 60.0
        return img

    def predict(self, index: int, window: Window, *, box_xyxy) -> MaskPrediction:
        centre_x = (float(box_xyxy[0]) + float(box_xyxy[2])) / 2.0
        if index >= 16:
            mask = self.loop_over
        elif 12 <= index <= 15 and centre_x > 18.5:
            mask = self.loop_beside
        else:
            mask = self.tube
        return MaskPrediction(mask[None].copy(), np.array([0.9], np.float32), np.zeros((1, 256, 256), np.float32))

    def prefetch(self, index: int, step: int, count: int, window: Window) -> None:
        pass


def test_a_run_reopened_past_the_structures_end_stops_where_its_mask_does_not_lead_back():
    """A key past the structure's current end reopens it; that run goes on only while the model,
    asked backwards from the new slice's mask, finds the previous slice's mask again. Where it finds
    the neighbour instead (a loop of the same tissue over the tube's end), the run stops there; the
    first run from a box, which has no end to reopen, and a reopened run that leads back go on."""
    model = LoopOnTheEnd()
    keys = [Key(10, model.tube.copy(), W), Key(15, model.tube.copy(), W)]
    reopened = propagate(model, keys, LoopOnTheEnd.N, extent=(5, 13))
    assert max(i for i, m in reopened.masks.items() if m.any()) == 15
    assert "lead back" in reopened.stops["+"]
    assert "slice 16" in reopened.stops["+"]
    off = propagate(model, keys, LoopOnTheEnd.N, extent=(5, 13), params=PropagationParams(reopen_back_iou=0.0))
    assert max(off.masks) == LoopOnTheEnd.N - 1  # without the rule it runs through the loop
    first = propagate(model, Key(15, model.tube.copy(), W), LoopOnTheEnd.N)
    assert max(first.masks) == LoopOnTheEnd.N - 1  # a first run is not held to it
    tube = TubeModel()  # past its end the model returns the same disk: it leads back
    past = propagate(tube, [key(tube, 9), key(tube, 15)], TubeModel.N, extent=(7, 14),
                     params=PropagationParams(max_intensity_z=1e9))
    assert max(past.masks) == TubeModel.N - 1


def test_cancel_leaves_the_label_map_untouched():
    model = TubeModel()
    labels = _label_map()
    before = labels.array.copy()
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done == 3:
            cancel.set()

    result = propagate(model, key(model, 10), TubeModel.N, progress=progress, cancel=cancel)
    assert result.cancelled
    with pytest.raises(PropagationCancelled):
        propagation_edit(labels, result, 0, 4)
    np.testing.assert_array_equal(labels.array, before)


# ---- the shared CT ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ct_executor():
    """Executor over a fresh cache and an engine that counts its encoder calls per slice."""
    from annotator.engine.embedding_cache import EmbeddingCache
    from annotator.engine.executor import EngineExecutor
    from annotator.engine.service import EmbeddingService

    volume, labels = support.shared_case()
    engine = support.CountingEngine(support.torch_engine())
    executor = EngineExecutor(EmbeddingService(engine, EmbeddingCache(disk_dir=None)))
    yield volume, labels, engine, executor
    executor.shutdown()


def _key_view_and_mask(volume, labels, executor, label):
    from annotator.core.geometry import Window
    from annotator.engine.executor import PredictRequest, SliceRef

    index = support.largest_slice(labels.array, label)
    view = SliceRef(volume, 0, index, Window.from_bounds(-160.0, 240.0))
    box = support.tight_box(labels.array[index] == label)
    result = executor.predict(PredictRequest(view, box_xyxy=box, multimask=False)).result(timeout=300)
    assert result.ok, result.error
    return view, result.prediction.best_mask


def _z_range(mask3d):
    hits = np.flatnonzero(mask3d.any(axis=(1, 2)))
    return int(hits[0]), int(hits[-1])


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize(("label", "min_dice"), [(support.LIVER, 0.90), (support.KIDNEY_RIGHT, None),
                                                 (support.KIDNEY_LEFT, None)])
def test_from_one_box_to_the_organ_ends(ct_executor, label, min_dice):
    from annotator.engine.propagate import propagate_label

    volume, truth_labels, engine, executor = ct_executor
    view, key_mask = _key_view_and_mask(volume, truth_labels, executor, label)
    table = LabelTable()
    table.add("organ", label_id=label)
    labels = LabelMap(volume.shape_zyx, table)
    history = History(labels)
    edit, result = propagate_label(executor, view, labels, label, key_mask=key_mask)
    history.push(edit)
    assert len(history.descriptions()) == 1  # the whole run is one undo step
    predicted, truth = labels.array == label, truth_labels.array == label
    first, last = _z_range(predicted)
    true_first, true_last = _z_range(truth)
    assert abs(first - true_first) <= 2, result.stops
    assert abs(last - true_last) <= 2, result.stops
    if min_dice is not None:
        assert support.dice(predicted, truth) >= min_dice
    # Every slice the runs needed was embedded at most once (this test's runs share the cache).
    assert engine.embeds
    assert max(engine.embeds.values()) == 1
    history.undo()
    assert not labels.array.any()


@pytest.mark.realdata
@pytest.mark.slow
def test_cancel_on_the_ct_restores_the_label_map_exactly(ct_executor):
    from annotator.engine.propagate import propagate_label

    volume, truth_labels, _, executor = ct_executor
    view, key_mask = _key_view_and_mask(volume, truth_labels, executor, support.SPLEEN)
    labels = LabelMap(volume.shape_zyx, LabelTable.from_json({"1": "spleen", "5": "liver"}),
                      array=truth_labels.array.copy().astype(np.uint16) * np.isin(truth_labels.array, [1, 5]))
    before = labels.array.copy()
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done >= 2:
            cancel.set()

    with pytest.raises(PropagationCancelled):
        propagate_label(executor, view, labels, support.SPLEEN, key_mask=key_mask, progress=progress,
                        cancel=cancel, params=PropagationParams())
    np.testing.assert_array_equal(labels.array, before)


class NoisyFineTube:
    """A fake SlicePredictor on SIDE-pixel slices with scanner-like noise: slices FIRST..LAST hold
    the structure (60 HU), the slices past its ends a neighbour 45 HU brighter in the same place;
    the "model" returns the disk on every slice, as a box model segments whatever its box holds."""

    FIRST, LAST, N, NOISE_SD = 5, 15, 20, 25.0

    def __init__(self, side: int) -> None:
        rr, cc = np.ogrid[:side, :side]
        c, r = side // 2, side // 6
        self.disk = (rr - c) ** 2 + (cc - c) ** 2 <= r * r
        self.side = side

    def raw(self, index: int) -> np.ndarray:
        noise = np.random.default_rng(index).normal(0.0, self.NOISE_SD, (self.side, self.side))
        img = np.full((self.side, self.side), -100.0) + noise
        img[self.disk] += 160.0 if self.FIRST <= index <= self.LAST else 205.0
        return img

    def predict(self, index: int, window: Window, *, box_xyxy) -> MaskPrediction:
        return MaskPrediction(self.disk[None].copy(), np.array([0.9], np.float32), np.zeros((1, 256, 256), np.float32))

    def prefetch(self, index: int, step: int, count: int, window: Window) -> None:
        pass


def test_on_a_fine_noisy_matrix_the_intensity_rule_learns_the_structure_not_the_pixel_noise():
    """45 HU is 1.8 sd of the pixel noise but 4.5 of the structure seen per reference pixel (and of
    the rule's floor, 10 HU in this window): on a 512-pixel slice the run stops at the structure's
    ends. On a 128-pixel slice (the reference) each pixel is a reference pixel and the noise is the
    spread, as before: the run goes on to the volume's edges."""
    from annotator.engine.propagation_step import structure_values

    fine = NoisyFineTube(512)
    values = structure_values(fine.raw(10), fine.disk)
    assert np.std(values) < 0.4 * NoisyFineTube.NOISE_SD
    result = propagate(fine, Key(10, fine.disk.copy(), W), NoisyFineTube.N)
    assert sorted(result.masks) == list(range(NoisyFineTube.FIRST, NoisyFineTube.LAST + 1))
    assert "intensity" in result.stops["+"]
    assert "intensity" in result.stops["-"]

    coarse = NoisyFineTube(128)
    assert np.array_equal(structure_values(coarse.raw(10), coarse.disk), coarse.raw(10)[coarse.disk])
    result = propagate(coarse, Key(10, coarse.disk.copy(), W), NoisyFineTube.N)
    assert sorted(result.masks) == list(range(NoisyFineTube.N))


class BranchIntoTrunk:
    """A fake SlicePredictor for a small vessel (a disk of radius 3) on slices 5..12 that runs into a
    larger vessel of the same contrast: asked about slice 13 on, the "model" returns the trunk, a
    disk one pixel wider each slice (within every shape and intensity rule, and it leads back)."""

    N = 20

    def __init__(self) -> None:
        self.rr, self.cc = np.ogrid[:40, :40]
        self.vessel = self.disk(3)

    def disk(self, radius: int) -> np.ndarray:
        return (self.rr - 20) ** 2 + (self.cc - 20) ** 2 <= radius ** 2

    def shape(self, index: int) -> np.ndarray:
        return self.vessel if index <= 12 else self.disk(3 + index - 12)

    def raw(self, index: int) -> np.ndarray:
        img = np.full((40, 40), -100.0)
        img[self.shape(index)] = 60.0
        return img

    def predict(self, index: int, window: Window, *, box_xyxy) -> MaskPrediction:
        return MaskPrediction(self.shape(index)[None].copy(), np.array([0.9], np.float32),
                              np.zeros((1, 256, 256), np.float32))

    def prefetch(self, index: int, step: int, count: int, window: Window) -> None:
        pass


def test_a_reopened_run_stops_where_it_grows_past_twice_the_structures_largest_slice():
    """A correction on 12, past where the vessel's run stopped (10), reopens it; from 13 on the model
    follows the trunk it runs into, growing each slice. Past the structure's judged end it should
    taper, so the run stops once its mask exceeds twice the largest slice the structure has (keys
    and label): slice 14 (81 px against 2 x 29). Without the rule, or on a first run from a box
    (nothing was judged to end yet), it follows the trunk to the volume's edge."""
    model = BranchIntoTrunk()
    keys = [Key(8, model.vessel.copy(), W), Key(12, model.vessel.copy(), W)]
    label = {i: model.vessel.copy() for i in range(5, 11)}
    reopened = propagate(model, keys, BranchIntoTrunk.N, extent=(5, 10), labelled=label, new_keys={12})
    assert reopened.stops["+"] == "grew past 2x the structure's largest slice at slice 14"
    assert max(i for i, m in reopened.masks.items() if m.any()) == 13
    off = propagate(model, keys, BranchIntoTrunk.N, extent=(5, 10), labelled=label, new_keys={12},
                    params=PropagationParams(reopen_max_growth=0.0))
    assert max(off.masks) == BranchIntoTrunk.N - 1
    first = propagate(model, Key(12, model.vessel.copy(), W), BranchIntoTrunk.N)
    assert max(first.masks) == BranchIntoTrunk.N - 1
