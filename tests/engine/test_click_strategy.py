"""The click strategy: box models' clicks refine the mask on the image, point models get points;
checked with small fake models and images whose right answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.engine.api import EngineError, MaskPrediction
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


def _bright(truth: np.ndarray, inside: int = 170, outside: int = 60, seed: int = 0) -> np.ndarray:
    """A noisy slice image on which `truth` is the bright structure."""
    rng = np.random.default_rng(seed)
    image = np.where(truth, inside, outside) + rng.normal(0, 6, truth.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def test_positive_click_outside_adds_the_missed_part_the_image_shows():
    truth = np.zeros((40, 40), dtype=bool)
    truth[10:20, 5:23] = True
    model = BoxModel(truth)
    image = _bright(truth)
    start = segment(model, "box", truth.shape, box_xyxy=np.array([5, 10, 17, 19]))  # box misses the right part
    assert _dice(start.mask, truth) < 0.85
    after = add_click(model, "box", start, Click(21, 15, True), image_hw=image)
    assert after.last_action == "refine"
    assert after.mask[15, 21]
    assert _dice(after.mask, truth) > 0.95
    assert len(model.calls) == 1  # a box model's click refines on the image: no extra model call


def test_positive_click_far_from_the_mask_adds_the_piece_the_model_finds_there():
    """Two pieces of one structure (loops of bowel); the box caught one. A click on the other, far
    from the mask, has the model segment it from boxes around the click; the first piece stays."""
    truth = np.zeros((80, 80), dtype=bool)
    truth[10:22, 8:20] = True
    truth[53:61, 58:66] = True
    model = BoxModel(truth)
    start = segment(model, "box", truth.shape, box_xyxy=np.array([8, 10, 19, 21]))
    assert _dice(start.mask, truth) < 0.85
    after = add_click(model, "box", start, Click(62, 57, True), image_hw=_bright(truth))
    assert after.last_action == "new part"
    assert np.array_equal(after.mask[:30, :30], start.mask[:30, :30])
    assert _dice(after.mask, truth) > 0.85
    assert len(model.calls) == 3  # the box, then the two smaller boxes around the click
    # a click near the mask is the refinement's, as before (no model call)
    near = add_click(model, "box", start, Click(23, 15, True), image_hw=_bright(truth))
    assert near.last_action == "refine"
    assert len(model.calls) == 3


def test_a_far_click_where_the_model_finds_nothing_falls_back_to_the_refinement():
    truth = np.zeros((80, 80), dtype=bool)
    truth[10:22, 8:20] = True
    truth[50:64, 55:70] = True

    def finds_nothing_there(**prompts):
        x0 = prompts["box_xyxy"][0]
        return _prediction(truth & _box_mask(truth.shape, prompts["box_xyxy"]) if x0 < 30 else np.zeros_like(truth))

    start = segment(finds_nothing_there, "box", truth.shape, box_xyxy=np.array([8, 10, 19, 21]))
    after = add_click(finds_nothing_there, "box", start, Click(62, 57, True), image_hw=_bright(truth))
    assert after.last_action == "refine"
    assert after.mask[57, 62]


def test_negative_click_removes_the_wrong_part_and_keeps_the_rest():
    truth = np.zeros((40, 40), dtype=bool)
    truth[10:30, 10:20] = True
    model = BoxModel(truth, fills_box=True)
    image = _bright(truth)
    start = segment(model, "box", truth.shape, box_xyxy=np.array([10, 10, 23, 29]))  # 4 columns too wide
    after = add_click(model, "box", start, Click(22, 20, False), image_hw=image)
    assert not after.mask[20, 22]
    assert _dice(after.mask, truth) > _dice(start.mask, truth) + 0.05
    assert not after.mask[16:25, 20:24].any()  # the wrong columns go where the click points
    assert after.mask[truth].mean() > 0.97  # the structure itself stays


def test_every_click_stays_on_its_side_even_on_a_flat_image():
    truth = np.zeros((30, 30), dtype=bool)
    truth[5:25, 5:25] = True
    flat = np.full(truth.shape, 90, dtype=np.uint8)
    start = ClickOutcome(truth.copy(), np.array([5.0, 5.0, 24.0, 24.0]))
    clicks = (Click(15, 15, False), Click(2, 2, True), Click(14, 15, True))
    out = start
    for click in clicks:
        # a model that finds nothing: the far positive click (2, 2) asks it, then the refinement decides
        out = add_click(lambda **_: _prediction(np.zeros_like(truth)), "box", out, click, image_hw=flat)
    assert not out.mask[15, 15]
    assert out.mask[2, 2]
    assert out.mask[15, 14]


def test_a_box_model_click_without_the_slice_image_is_refused():
    truth = np.zeros((10, 10), dtype=bool)
    truth[2:8, 2:8] = True
    with pytest.raises(EngineError, match="image"):
        add_click(BoxModel(truth), "box", ClickOutcome(truth, None), Click(1, 1, True))


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


def test_clicks_correct_a_mask_already_there_in_the_window_it_was_made_in():
    """A propagated mask that leaked into a neighbour: clicks on that slice start from it (the
    window's clicks on a labelled slice, the evaluation's corrections), not from nothing."""
    from annotator.core.geometry import Window
    from annotator.engine import slice_segmentation

    truth = np.zeros((40, 40), dtype=bool)
    truth[10:30, 10:20] = True
    leaked = truth.copy()
    leaked[10:30, 20:26] = True
    model = BoxModel(truth)
    windows = []

    def predict_in(window):
        windows.append(window)
        return model

    window = Window(40, 400)
    start = slice_segmentation.from_mask(leaked, window)
    assert start.window == window
    assert np.array_equal(start.outcome.box_xyxy, [10, 10, 25, 29])
    after = slice_segmentation.segment_slice(predict_in, "box", truth.shape, [window], clicks=(Click(24, 20, False),),
                                             image_in=lambda w: _bright(truth), base=start)
    assert after.window == window
    assert not after.mask[20, 24]
    assert after.mask[truth].mean() > 0.97  # what was right stays
    assert _dice(after.mask, truth) > _dice(leaked, truth) + 0.05
    assert model.calls == []  # a refinement of what was there, no new box
    # Nothing there yet: the click is a first prompt (boxes tried around it).
    empty = slice_segmentation.from_mask(np.zeros_like(truth), window)
    first = slice_segmentation.add_click(predict_in, "box", empty, Click(15, 20, True), lambda w: _bright(truth))
    assert first.mask[20, 15]
    assert not (first.mask & ~truth).any()
    assert first.outcome.decoder_calls == 4
    assert len(model.calls) == 4


def test_a_drawn_box_reaches_the_model_with_its_training_margin_and_the_fit_judges_the_box_as_drawn():
    """LiteMedSAM learned from boxes 0..5 pixels of its 256 frame looser than tight: a drawn box is
    grown by the mean of that (2.5 / 256 of the slice's longest side) before a box model sees it,
    kept on the slice; the window is still chosen by how well the mask fills the box as drawn."""
    from annotator.core.geometry import Window
    from annotator.engine import slice_segmentation
    from annotator.engine.click_strategy import ClickParams, grown_box

    shape = (200, 256)
    drawn = np.array([100.0, 100.0, 139.0, 139.0])
    assert grown_box(drawn, shape, 2.5) == pytest.approx([97.5, 97.5, 141.5, 141.5])
    assert grown_box(np.array([1.0, 0.0, 255.0, 199.0]), shape, 2.5) == pytest.approx([0, 0, 255, 199])
    tight, loose = Window(40, 400), Window(-600, 1500)
    calls: list[tuple[Window, np.ndarray]] = []

    def predict_in(window):
        def predict(**prompts):
            calls.append((window, prompts["box_xyxy"]))
            mask = np.zeros(shape, dtype=bool)
            if window == tight:
                mask[100:140, 100:140] = True   # exactly the structure the box was drawn around
            else:
                mask[98:142, 98:142] = True     # the grown box's extent: a worse fit to the box as drawn
            return _prediction(mask)
        return predict

    out = slice_segmentation.first_prompt(predict_in, "box", shape, [loose, tight], box_xyxy=drawn)
    assert [w for w, _ in calls] == [loose, tight]
    for _, box in calls:
        assert box == pytest.approx([97.5, 97.5, 141.5, 141.5])
    assert out.window == tight
    assert out.outcome.box_xyxy == pytest.approx(drawn)  # the user's box: clicks refine within it
    calls.clear()
    slice_segmentation.first_prompt(predict_in, "box", shape, [tight], box_xyxy=drawn,
                                    params=ClickParams(box_margin_share=0.0))
    assert calls[0][1] == pytest.approx(drawn)
    # SAM's training boxes were noised around the tight box, not grown: a point model gets it as drawn.
    calls.clear()
    slice_segmentation.first_prompt(predict_in, "points", shape, [tight], box_xyxy=drawn)
    assert calls[0][1] == pytest.approx(drawn)


def test_the_first_box_mask_on_a_fine_slice_has_no_specks_finer_than_a_reference_pixel():
    """The model's mask thresholded on a fine, noisy slice comes with pinholes (the labelled CT
    resampled to 0.75 mm with 20 HU of noise: 0.75 holes per first mask, the truth 0.05): the box's
    mask loses those finer than a pixel of the 128-pixel reference, and keeps everything larger."""
    from dataclasses import replace

    from annotator.core.geometry import Window
    from annotator.engine import slice_segmentation
    from annotator.engine.click_strategy import ClickParams

    def model_mask(side: int) -> np.ndarray:
        mask = np.zeros((side, side), dtype=bool)
        mask[100:300, 100:300] = True
        mask[150, 150] = mask[200:202, 220] = False    # pinholes
        mask[240:250, 240:250] = False                  # a hole of 100 px: detail, not a speck
        return mask

    def predict_in(mask):
        return lambda window: (lambda **prompts: _prediction(mask))

    window = Window(40, 400)
    drawn = np.array([100.0, 100.0, 299.0, 299.0])
    fine = model_mask(512)
    out = slice_segmentation.first_prompt(predict_in(fine), "box", fine.shape, [window], box_xyxy=drawn).mask
    assert out[150, 150]
    assert out[200:202, 220].all()
    assert not out[240:250, 240:250].any()
    assert np.count_nonzero(out ^ fine) == 3
    off = replace(ClickParams(), refine=replace(ClickParams().refine, speck_side_px=0.0))
    assert np.array_equal(slice_segmentation.first_prompt(predict_in(fine), "box", fine.shape, [window],
                                                          box_xyxy=drawn, params=off).mask, fine)
    coarse = np.zeros((128, 128), dtype=bool)
    coarse[20:100, 20:100] = True
    coarse[50, 50] = False
    out = slice_segmentation.first_prompt(predict_in(coarse), "box", coarse.shape, [window],
                                          box_xyxy=np.array([20.0, 20.0, 99.0, 99.0])).mask
    assert np.array_equal(out, coarse)                  # a pixel of the reference can be anatomy
