"""The model input window chosen per box: which CT presets are tried (only where the soft-tissue
window would clip the box's tissue), MR candidates, the box-fit score, and the choice itself."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.core.geometry import CT_PRESETS, Window
from annotator.core.volume import Volume
from annotator.engine.api import MaskPrediction
from annotator.engine.input_window import (
    box_fit,
    candidate_windows,
    choose_window,
    default_model_window,
    slice_windows,
)

BOX = np.array([10.0, 10.0, 29.0, 29.0])


def _ct(slice_values: np.ndarray) -> Volume:
    return Volume(slice_values[None].astype(np.int16), (1.0, 1.0, 1.0), modality="CT")


def test_soft_tissue_alone_where_it_shows_everything_in_the_box():
    image = np.full((40, 40), 40, dtype=np.int16)
    image[15:25, 15:25] = 90
    assert candidate_windows(_ct(image), image, BOX) == [CT_PRESETS["soft tissue"]]
    assert candidate_windows(_ct(image), image, None) == [CT_PRESETS["soft tissue"]]


def test_lung_and_bone_presets_join_where_the_box_holds_air_or_bone():
    image = np.full((40, 40), 40, dtype=np.int16)
    image[12:28, 12:20] = -850   # lung
    image[12:28, 22:28] = 900    # bone
    windows = candidate_windows(_ct(image), image, BOX)
    assert windows == [CT_PRESETS["soft tissue"], CT_PRESETS["lung"], CT_PRESETS["bone"]]
    # A few clipped pixels (below CLIPPED_SHARE of the box) do not add a preset.
    sparse = np.full((40, 40), 40, dtype=np.int16)
    sparse[20, 20] = 900
    assert candidate_windows(_ct(sparse), sparse, BOX) == [CT_PRESETS["soft tissue"]]


def test_before_any_box_the_slice_is_embedded_in_the_presets_its_tissue_needs():
    body = np.full((100, 100), 40, dtype=np.int16)
    assert slice_windows(_ct(body), body) == [CT_PRESETS["soft tissue"]]
    chest = body.copy()
    chest[:, :20] = -1000          # air around the body
    chest[50:55, 50:53] = 700      # a rib: 0.15 % of the slice, a stray bright spot
    assert slice_windows(_ct(chest), chest) == [CT_PRESETS["soft tissue"], CT_PRESETS["lung"]]
    chest[50:55, 50:58] = 700      # bone over 0.4 % of the slice, as little as an abdomen holds
    assert slice_windows(_ct(chest), chest) == [CT_PRESETS["soft tissue"], CT_PRESETS["lung"], CT_PRESETS["bone"]]
    # MR: the per-box window depends on the box, so nothing beyond the default is embedded ahead.
    mr = Volume(np.random.default_rng(0).integers(0, 3000, (2, 40, 40)).astype(np.float32), (1.0, 1.0, 1.0),
                modality="MR")
    assert slice_windows(mr, mr.array[0]) == [default_model_window(mr)]


def test_mr_gets_the_volume_percentiles_and_the_box_percentiles():
    rng = np.random.default_rng(0)
    array = rng.integers(100, 600, size=(3, 40, 40)).astype(np.float32)
    array[:, :, 34:] = rng.integers(1500, 3000, size=(3, 40, 6))  # bright tissue far from the box
    volume = Volume(array, (1.0, 1.0, 1.0), modality="MR")
    windows = candidate_windows(volume, array[1], BOX)
    assert windows[0] == default_model_window(volume)
    assert windows[0].high > 2500
    assert len(windows) == 2
    assert 100 <= windows[1].low < windows[1].high <= 600  # the box's own range, not the volume's


def test_box_fit_is_the_iou_of_the_masks_extent_with_the_box():
    mask = np.zeros((40, 40), dtype=bool)
    mask[10:30, 10:30] = True
    assert box_fit(mask, BOX) == pytest.approx(1.0)
    half = np.zeros_like(mask)
    half[10:30, 10:20] = True
    assert box_fit(half, BOX) == pytest.approx(0.5)
    assert box_fit(np.zeros_like(mask), BOX) == 0.0


def test_choose_window_keeps_the_window_whose_mask_spans_the_box():
    spans = {CT_PRESETS["soft tissue"].key(): (10, 20), CT_PRESETS["lung"].key(): (10, 30),
             CT_PRESETS["bone"].key(): (0, 40)}
    seen = []

    def predict_in(window: Window) -> MaskPrediction:
        seen.append(window)
        lo, hi = spans[window.key()]
        mask = np.zeros((40, 40), dtype=bool)
        mask[lo:hi, lo:hi] = True
        return MaskPrediction(mask[None], np.array([0.99 if window == CT_PRESETS["bone"] else 0.5]),
                              np.zeros((1, 256, 256), np.float32))

    windows = [CT_PRESETS["soft tissue"], CT_PRESETS["lung"], CT_PRESETS["bone"]]
    choice = choose_window(predict_in, BOX, windows)
    assert choice.window == CT_PRESETS["lung"]  # the fit decides, not the model's own score
    assert seen == windows
    assert [fit for _, fit in choice.fits] == pytest.approx([0.25, 1.0, 0.25])
