"""3-D propagation: stopping at structure ends, one undoable edit, cancel leaving the labels as they
were (synthetic), and on the shared CT: liver/kidneys from one box, each slice embedded at most once."""

from __future__ import annotations

import threading

import lite_medsam_support as support
import numpy as np
import pytest

from annotator.core.history import History
from annotator.core.labels import LabelMap, LabelTable
from annotator.engine.api import MaskPrediction
from annotator.engine.propagate import (
    PropagationCancelled,
    PropagationParams,
    propagate,
    propagation_edit,
)


class TubeModel:
    """A fake SlicePredictor: slices FIRST..LAST hold a bright disk; the "model" returns the disk
    inside the box, and past the ends a dim blob of about the same size (what a real box model does
    when there is nothing left: it segments whatever is in the box)."""

    FIRST, LAST, N = 5, 15, 20

    def __init__(self) -> None:
        self.predicted: list[int] = []
        self.prefetched: list[tuple[int, int, int]] = []
        rr, cc = np.ogrid[:40, :40]
        self.disk = (rr - 20) ** 2 + (cc - 20) ** 2 <= 36

    def image(self, index: int) -> np.ndarray:
        img = np.full((40, 40), 30, dtype=np.uint8)
        if self.FIRST <= index <= self.LAST:
            img[self.disk] = 160
        return img

    def predict(self, index: int, *, box_xyxy, mask_input=None) -> MaskPrediction:
        self.predicted.append(index)
        mask = self.disk.copy()  # inside the organ: the disk; past its ends: the same place, other tissue
        return MaskPrediction(mask[None], np.array([0.9], np.float32), np.zeros((1, 256, 256), np.float32))

    def prefetch(self, index: int, step: int, count: int) -> None:
        self.prefetched.append((index, step, count))


def test_stops_where_the_structure_ends_in_both_directions():
    model = TubeModel()
    result = propagate(model, 10, model.disk, TubeModel.N)
    assert sorted(result.masks) == list(range(TubeModel.FIRST, TubeModel.LAST + 1))
    assert "grey level" in result.stops["+"]
    assert "grey level" in result.stops["-"]
    assert model.prefetched
    assert all(step in (1, -1) for _, step, _ in model.prefetched)


def test_direction_and_range_limits():
    model = TubeModel()
    up = propagate(model, 10, model.disk, TubeModel.N, direction="up")
    assert sorted(up.masks) == list(range(10, TubeModel.LAST + 1))
    ranged = propagate(TubeModel(), 10, model.disk, TubeModel.N, index_range=(8, 12))
    assert sorted(ranged.masks) == list(range(8, 13))
    assert ranged.stops == {"+": "volume edge", "-": "volume edge"}


def _label_map():
    table = LabelTable()
    table.add("organ", label_id=4)
    table.add("other", label_id=9)
    labels = LabelMap((TubeModel.N, 40, 40), table)
    labels.array[:, 0:3, 0:3] = 9  # another label's voxels must survive
    labels.array[10, 18:22, 18:22] = 4  # the accepted key-slice mask
    return labels


def test_result_lands_as_one_undo_step_and_undo_restores_exactly():
    model = TubeModel()
    labels = _label_map()
    before = labels.array.copy()
    history = History(labels)
    result = propagate(model, 10, model.disk, TubeModel.N)
    history.push(propagation_edit(labels, result, 0, 4))
    assert history.descriptions() == ["propagate"]
    assert (labels.array[TubeModel.FIRST: TubeModel.LAST + 1][:, model.disk] == 4).all()
    assert (labels.array[:, 0:3, 0:3] == 9).all()
    history.undo()
    np.testing.assert_array_equal(labels.array, before)


def test_cancel_leaves_the_label_map_untouched():
    model = TubeModel()
    labels = _label_map()
    before = labels.array.copy()
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done == 3:
            cancel.set()

    result = propagate(model, 10, model.disk, TubeModel.N, progress=progress, cancel=cancel)
    assert result.cancelled
    with pytest.raises(PropagationCancelled):
        propagation_edit(labels, result, 0, 4)
    np.testing.assert_array_equal(labels.array, before)


# ---- the shared CT ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ct_executor():
    """Executor over a fresh cache and an engine that counts its encoder calls per slice."""
    from annotator.engine.cache import EmbeddingCache
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
