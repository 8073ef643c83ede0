"""One step of 3-D propagation (engine.propagate): the mask on the next slice from the previous
slice's, the rules that say whether it still is the structure, and the structure's own tissue where
the model took a neighbour. Qt-free.

From the previous slice's mask `prev` to the next slice (each rule measured with `annotator
evaluate --propagate` on the labelled CT and CTA; see BENCHMARKS.md):
- The box is `prev`'s bounding box widened by a few pixels of the model's 256-pixel input frame
  (LiteMedSAM was trained on boxes with a few pixels of slack); a small and a larger margin are
  tried and the mask that agrees best with `prev` (IoU) is kept. A fixed share of the size (the
  earlier rule) let large organs grow slice after slice.
- Only the parts touching `prev` are kept, and only within `growth_slope` slice spacings of it:
  a surface cannot move much further in-plane than the slices are apart, so a leak into a
  neighbour is cut where it starts instead of being carried on.
- Where `prev` is in separate pieces (each at least `min_piece_side_256` pixels square in the
  model's frame), each piece also gets its own box and the slice takes the union of the pieces'
  masks that pass every stop rule: LiteMedSAM segments one object per box, and one box over the
  ascending and descending aorta merged them into a leak or dropped one. The step over the whole
  mask still decides where the run stops. (CTA 3-D from one box 0.496 -> 0.531, true lumen 0.68 ->
  0.86; NoC85/90 CT 3.94 / 5.00 -> 3.81 / 4.88, CTA 7.00 / 7.00 -> 5.80 / 6.40.)
- Where the mask's centre moved steadily the same way over the last slices (one piece each), the
  boxes moved by that drift are tried too and candidates are judged against the moved mask: a
  box around where the structure was let it slip out, the mask trailing and shrinking (CT 3-D
  from one box 0.634 -> 0.643, stops within 3 slices 84 -> 88 %; CTA from one box the same).
- Stop when the mask is empty, shrinks below `min_area_ratio` of `prev`, mostly leaves `prev`,
  the model's own IoU estimate is low, or its median intensity (raw image units, so the input
  window does not matter) leaves the structure's running intensity by more than `max_intensity_z`
  robust standard deviations (of the structure per reference pixel on a larger matrix, not of each
  pixel's noise: structure_values). The running value follows slow change (contrast fading along a
  vessel); comparing with the key slice alone stopped vessels after a few centimetres.
- Unless the model's mask is of another tissue entirely (`neighbour_taken_z`, twice that many
  sds): the box held a neighbour and the model took it (a lung base's box holds the liver dome it
  curves around; a box model cannot be asked for a crescent). Then the slice takes the
  structure's own tissue next to the previous mask, if that passes the shape rules; where no such
  tissue is left, the run stops there as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from annotator.core.geometry import Window
from annotator.engine.click_strategy import grown_box
from annotator.engine.pixel_lengths import pixel_scale
from annotator.engine.propagation_gaps import mask_iou
from annotator.engine.propagation_motion import shifted
from annotator.engine.propagation_pieces import parts_touching

if TYPE_CHECKING:
    from annotator.engine.propagate import PropagationParams, SlicePredictor

MODEL_FRAME = 256.0  # box margins are given in pixels of the model's input frame


def _box_of(mask: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)


def next_boxes(previous_mask: np.ndarray, params: PropagationParams) -> list[np.ndarray]:
    """The previous mask's box widened by each candidate margin (model-frame pixels), clipped."""
    box = _box_of(previous_mask)
    h, w = previous_mask.shape
    scale = max(h, w) / MODEL_FRAME
    return [grown_box(box, (h, w), max(1.0, margin * scale)) for margin in params.box_margins_256]


def _keep_overlapping(mask: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """The connected parts of `mask` that touch the previous slice's mask (drops far islands); all
    of `mask` when none does."""
    touching = parts_touching(mask, previous)
    return touching if touching.any() else mask


def within_reach(previous: np.ndarray, reach_px: float) -> np.ndarray:
    """Pixels at most `reach_px` from the previous mask (how far a surface may move in one slice)."""
    from scipy.ndimage import distance_transform_edt

    return distance_transform_edt(~previous) <= reach_px


def structure_values(raw_hw: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The structure's grey levels under `mask` as the intensity rule learns them: on a slice larger
    than pixel_lengths' reference, each pixel averaged over the part of the reference pixel around
    it that lies in the mask (its neighbours outside are another tissue). The rule compares a
    slice's median with them in units of their spread, and a median is as steady on a fine matrix
    as on a coarse one while each pixel's noise is not: learnt pixel by pixel on a noisy 488-pixel
    copy of the shared CT, the spread was the noise and the gallbladder's run went 15 slices past
    its end (BENCHMARKS.md, twenty-first stop)."""
    from scipy.ndimage import uniform_filter

    size = int(round(pixel_scale(mask.shape)))
    if size <= 1:
        return np.asarray(raw_hw)[mask]
    inside = np.asarray(mask, dtype=np.float64)
    total = uniform_filter(np.asarray(raw_hw, dtype=np.float64) * inside, size=size)
    return total[mask] / np.maximum(uniform_filter(inside, size=size)[mask], 1e-12)


class IntensityModel:
    """Running robust intensity of the structure (raw image units)."""

    def __init__(self, values: np.ndarray, window: Window, params: PropagationParams) -> None:
        values = np.asarray(values, dtype=np.float64)
        self.value = float(np.median(values))
        mad = float(np.median(np.abs(values - self.value)))
        self.sd = max(1.4826 * mad, params.intensity_min_sd_frac * float(window.width), 1e-6)
        self.adapt = params.intensity_adapt

    def drift(self, raw_hw: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
        median = float(np.median(raw_hw[mask]))
        return abs(median - self.value) / self.sd, median

    def follow(self, median: float) -> None:
        self.value = (1.0 - self.adapt) * self.value + self.adapt * median


def _candidates(predictor: SlicePredictor, index: int, window: Window, boxes: list[np.ndarray], near: np.ndarray,
                reach_px: float) -> list[tuple[np.ndarray, float]]:
    """The model's mask on slice `index` for each box, cut to the parts touching `near` and within
    `reach_px` of it, with the model's score."""
    reach = within_reach(near, reach_px)
    out = []
    for box in boxes:
        pred = predictor.predict(index, window, box_xyxy=box)
        out.append((_keep_overlapping(pred.best_mask.astype(bool), near) & reach, float(pred.scores[pred.best_index])))
    return out


def predict_step(predictor: SlicePredictor, index: int, window: Window, previous: np.ndarray,
                 params: PropagationParams, reach_px: float,
                 drift: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, float]:
    """The mask on slice `index` from the previous slice's mask, and the model's score for it;
    `drift`: the structure's motion per slice (propagation_motion), whose boxes are tried too."""
    expected, boxes = previous, next_boxes(previous, params)
    moved = shifted(previous, drift) if drift != (0, 0) else None
    if moved is not None and moved.any():
        expected, boxes = moved, boxes + next_boxes(moved, params)
    if not boxes:
        raise ValueError("params.box_margins_256 is empty")
    # the first of equally agreeing candidates, as before
    return max(_candidates(predictor, index, window, boxes, previous, reach_px), key=lambda c: mask_iou(c[0], expected))


def leads_back(predictor: SlicePredictor, back_index: int, window: Window, mask: np.ndarray, previous: np.ndarray,
               params: PropagationParams, reach_px: float) -> float:
    """How well `mask` leads back to the slice it came from: the best IoU with `previous` of the masks
    the model gives on slice `back_index` for `mask`'s own boxes (the parts touching `mask`, within
    reach). A mask that slid onto a neighbour of the same tissue passes every rule of one slice, but
    asked backwards the model finds the neighbour, not the structure."""
    back = _candidates(predictor, back_index, window, next_boxes(mask, params), mask, reach_px)
    return max((mask_iou(m, previous) for m, _ in back), default=0.0)


def check_slice(mask: np.ndarray, previous: np.ndarray, score: float, params: PropagationParams) -> str | None:
    """None if `mask` may continue the structure by shape and score, else the reason to stop."""
    area = int(mask.sum())
    if area < params.min_pixels:
        return "empty"
    prev_area = max(1, int(previous.sum()))
    if area < params.min_area_ratio * prev_area:
        return f"area fell to {area / prev_area:.2f} of the previous slice"
    overlap = float(np.count_nonzero(mask & previous)) / area
    if overlap < params.min_overlap:
        return f"only {overlap:.2f} overlaps the previous slice"
    if score < params.min_score:
        return f"model confidence {score:.2f}"
    return None


def own_tissue(raw: np.ndarray, previous: np.ndarray, intensity: IntensityModel, drift: float, reach_px: float,
               params: PropagationParams) -> tuple[np.ndarray, float] | None:
    """For a model mask of another tissue entirely (`drift` of at least neighbour_taken_z robust
    sd): the pixels of the structure's intensity (3x3 median within max_intensity_z sd of the
    running value) within reach of `previous` and touching it, if that passes the shape rules and
    is no larger than `previous`, with its median intensity; else None (the run stops)."""
    from scipy.ndimage import median_filter

    if params.neighbour_taken_z <= 0 or drift < params.neighbour_taken_z:
        return None
    smooth = median_filter(np.asarray(raw, dtype=np.float64), size=3)
    like = np.abs(smooth - intensity.value) <= params.max_intensity_z * intensity.sd
    own = parts_touching(like & within_reach(previous, reach_px), previous)
    if own.sum() > previous.sum() or check_slice(own, previous, 1.0, params) is not None:
        return None  # the model's score does not apply to a mask it did not make
    own_drift, median = intensity.drift(raw, own)
    return None if own_drift > params.max_intensity_z else (own, median)
