"""The click strategy: box models get local corrections, point models get points; checked with
small fake models whose right answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.engine.api import MaskPrediction
from annotator.engine.click_strategy import (
    Click,
    ClickOutcome,
    add_click,
    segment,
    start_from_click,
)


def _prediction(mask: np.ndarray, score: float = 0.9) -> MaskPrediction:
    return MaskPrediction(mask[None].copy(), np.array([score], dtype=np.float32),
                          np.zeros((1, 256, 256), dtype=np.float32))


def _box_mask(shape, box):
    out = np.zeros(shape, dtype=bool)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    out[max(0, y0): y1 + 1, max(0, x0): x1 + 1] = True
    return out


class BoxModel:
    """Segments `truth` inside the box it is given (a box-trained model that never leaks), or
    fills the whole box when `fills_box` (a model that over-segments)."""

    def __init__(self, truth: np.ndarray, fills_box: bool = False) -> None:
        self.truth = truth
        self.fills_box = fills_box
        self.calls: list[dict] = []

    def __call__(self, **prompts) -> MaskPrediction:
        self.calls.append(prompts)
        inside = _box_mask(self.truth.shape, prompts["box_xyxy"])
        return _prediction(inside if self.fills_box else inside & self.truth)


def _dice(a, b):
    return 2 * np.count_nonzero(a & b) / (a.sum() + b.sum())


def test_positive_click_outside_grows_the_box_and_adds_the_missed_part():
    truth = np.zeros((40, 40), dtype=bool)
    truth[10:20, 5:30] = True
    model = BoxModel(truth)
    start = segment(model, "box", truth.shape, box_xyxy=np.array([5, 10, 17, 19]))  # box misses the right part
    assert _dice(start.mask, truth) < 0.7
    after = add_click(model, "box", start, Click(26, 15, True))
    assert after.last_action == "grow-box"
    assert after.mask[15, 26]
    assert _dice(after.mask, truth) > 0.95
    assert model.calls[-1]["box_xyxy"][2] >= 26  # the box was grown to take the click in


def test_negative_click_removes_the_wrong_part_and_keeps_the_rest():
    truth = np.zeros((40, 40), dtype=bool)
    truth[10:30, 10:20] = True
    model = BoxModel(truth, fills_box=True)
    start = segment(model, "box", truth.shape, box_xyxy=np.array([10, 10, 22, 29]))  # 3 columns too wide
    after = add_click(model, "box", start, Click(21, 20, False))
    assert not after.mask[20, 21]
    assert _dice(after.mask, truth) > _dice(start.mask, truth)
    assert after.mask[truth].all()  # nothing of the structure was removed


def test_region_fallback_uses_grey_levels_and_clicks_stay_satisfied():
    truth = np.zeros((30, 30), dtype=bool)
    truth[5:25, 5:25] = True
    image = np.full((30, 30), 40, dtype=np.uint8)
    image[truth] = 150
    start = ClickOutcome(np.zeros_like(truth), None)

    def blind(**prompts):  # a model that returns nothing: the click must still do something sensible
        return _prediction(np.zeros_like(truth), 0.1)

    after = add_click(blind, "box", start, Click(15, 15, True), image_hw=image)
    assert after.last_action == "add-region"
    assert after.mask[15, 15]
    assert after.mask.sum() > 20
    assert not (after.mask & ~truth).any()  # grey-level bound: stays on the bright structure
    after2 = add_click(blind, "box", after, Click(15, 15, False), image_hw=image)
    assert not after2.mask[15, 15]


def test_point_models_get_all_clicks_as_points_with_the_previous_logits():
    truth = np.zeros((20, 20), dtype=bool)
    truth[5:15, 5:15] = True
    calls = []

    def point_model(**prompts):
        calls.append(prompts)
        return MaskPrediction(truth[None].copy(), np.array([0.8]), np.full((1, 256, 256), 3.0, np.float32))

    out = segment(point_model, "points", truth.shape, box_xyxy=np.array([5, 5, 14, 14]),
                  clicks=(Click(7, 7, True), Click(1, 1, False)))
    assert len(calls) == 3
    last = calls[-1]
    np.testing.assert_array_equal(last["points_xy"], [[7, 7], [1, 1]])
    np.testing.assert_array_equal(last["point_labels"], [1, 0])
    assert last["mask_input"].shape == (1, 256, 256)
    assert float(last["mask_input"].max()) == 3.0
    assert out.clicks == (Click(7, 7, True), Click(1, 1, False))


def test_a_lone_click_on_a_box_model_tries_boxes_and_keeps_the_most_confident_mask_with_the_click():
    truth = np.zeros((60, 60), dtype=bool)
    truth[20:40, 20:40] = True

    def model(**prompts):
        box = prompts["box_xyxy"]
        mask = _box_mask(truth.shape, box) & truth
        size = box[2] - box[0]
        return _prediction(mask, score=1.0 - abs(size - 15.6) / 100)  # most confident for a 15.6-px box

    out = start_from_click(model, "box", Click(30, 30, True), truth.shape)
    assert out.mask[30, 30]
    # the +/- 0.13 * 60 px box won among the four sizes tried
    assert out.box_xyxy[2] - out.box_xyxy[0] == pytest.approx(15.6)
