"""How a click changes the mask, per model: the window's point tool and `annotator evaluate`'s `app`
variant both run this code (through engine.slice_segmentation), so what the evaluation measures
is what the user gets.

Point-trained models (SAM, MedSAM; prompt_kind "points") get the clicks as SAM points with the
previous low-res logits. Box-trained models (LiteMedSAM; prompt_kind "box") get worse masks from
points (measured on the shared CT: mean Dice 0.646 after the box, 0.514 after five clicks), so for
them the clicks refine the mask on the image itself (engine.click_refine: a random walker seeded
by every click, the mask's confident core and the background around it); each click stays on the
side the user put it on. The earlier strategy (re-prompting the model with a box grown to a
positive click or cut at a negative one) reached 0.750 on the shared CT's organs after five
clicks, the refinement 0.824 (BENCHMARKS.md). A lone first click on a box model tries a few
boxes around it; so does a positive click far from the mask (a piece the box missed), whose
piece is then added (0.832 on the CT's organs, colon 0.52 -> 0.62).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from annotator.engine.api import EngineError, MaskPrediction
from annotator.engine.click_refine import RefineParams
from annotator.engine.pixel_lengths import pixel_scale

# predict(box_xyxy=..., points_xy=..., point_labels=..., mask_input=...) -> MaskPrediction, on the
# slice's embedding (engine.predict bound to it, or an executor round trip).
PredictFn = Callable[..., MaskPrediction]


@dataclass(frozen=True)
class Click:
    """A click at pixel (x = column, y = row) of the slice; positive = "this belongs to it"."""

    x: float
    y: float
    positive: bool = True

    def rc(self, shape: tuple[int, int]) -> tuple[int, int]:
        row = int(np.clip(round(self.y), 0, shape[0] - 1))
        col = int(np.clip(round(self.x), 0, shape[1] - 1))
        return row, col


@dataclass(frozen=True)
class ClickParams:
    """Tuning of the box-model clicks (defaults measured with `annotator evaluate`)."""

    refine: RefineParams = RefineParams()  # the random-walker refinement of every click
    region_tolerance: float = 20.0     # uint8 grey levels: "same tissue as the clicked pixel"
    # Pixel lengths (*_px) are those of a slice of pixel_lengths.REFERENCE_SIDE_PX and grow with a
    # larger slice (pixel_lengths.pixel_scale).
    region_radius_px: float = 6.0      # a lone click's fallback region never reaches further
    region_radius_frac: float = 1.0    # ... nor further than sqrt(mask area) times this
    # Boxes tried around a lone click, half sizes as shares of the slice's longest side (6, 10,
    # 16 and 24 px on the 122-px shared CT slice).
    first_click_half_sizes: tuple[float, ...] = (0.05, 0.08, 0.13, 0.2)
    # A positive click further from the mask than this share of the slice's longest side (8 px on
    # the 122-px shared CT slice), and than new_part_min_px, points at a piece the box missed (a loop
    # of bowel, a second lobe): the model segments it from the two smaller boxes around the click,
    # as for a lone first click, and the piece holding the click is added. 0: off (the refinement
    # takes every click).
    new_part_share: float = 0.065
    new_part_min_px: float = 6.0
    # A box model (prompt_kind "box") is given a drawn box grown by this share of the slice's
    # longest side on every side: the mean margin of its training boxes, which were the tight box
    # grown by 0..5 pixels of the 256 frame a side (MedSAM-Lite, bbox_shift=5) or 0..20 of the 1024
    # frame (MedSAM, bbox_shift=20). A tight box, as a careful user or the evaluation draws it, is
    # tighter than anything such a model learned from: on the labelled CTs the first box's mean
    # Dice goes 0.695 -> 0.730 and 0.812 -> 0.886 (BENCHMARKS.md). The window is still chosen by
    # the mask's fit to the box as drawn. Point models (SAM) get the box as drawn: SAM's training
    # boxes were noised around the tight box, not grown. 0: the box as drawn for every model.
    box_margin_share: float = 2.5 / 256


@dataclass(frozen=True)
class ClickOutcome:
    """The current mask of one object on one slice and what produced it."""

    mask: np.ndarray                       # (H, W) bool, slice pixels
    box_xyxy: np.ndarray | None            # the box the mask was asked for: as drawn, or made around a click
    clicks: tuple[Click, ...] = ()
    low_res_logits: np.ndarray | None = field(default=None, repr=False)
    decoder_calls: int = 0
    last_action: str = ""                  # what the last click did (shown in the status bar, logged)


def _component_at(mask: np.ndarray, row: int, col: int) -> np.ndarray:
    """The 8-connected component of `mask` holding (row, col) (empty if that pixel is False)."""
    from scipy.ndimage import label

    if not mask[row, col]:
        return np.zeros_like(mask)
    labelled, _ = label(mask, structure=np.ones((3, 3), dtype=bool))
    return labelled == labelled[row, col]


def similar_region(image_hw: np.ndarray | None, row: int, col: int, within: np.ndarray | None,
                   params: ClickParams, object_area: int = 0, max_radius: float | None = None) -> np.ndarray:
    """Pixels connected to (row, col) with grey level within tolerance of it, inside a disk of
    region_radius_px, smaller for small objects (and inside `within` when given). Without an
    image: the disk itself."""
    if within is None and image_hw is None:
        raise ValueError("similar_region needs an image or a region to stay within")
    h, w = within.shape if within is not None else image_hw.shape[:2]  # type: ignore[union-attr]
    radius = params.region_radius_px * pixel_scale((h, w))
    if object_area > 0:
        radius = max(1.5, min(radius, params.region_radius_frac * float(np.sqrt(object_area))))
    if max_radius is not None:
        radius = max(1.0, min(radius, max_radius))
    rr, cc = np.ogrid[:h, :w]
    region = (rr - row) ** 2 + (cc - col) ** 2 <= radius ** 2
    if within is not None:
        region &= within
    if image_hw is not None:
        grey = image_hw if image_hw.ndim == 2 else image_hw[..., 0]
        grey = grey.astype(np.float32)
        region &= np.abs(grey - grey[row, col]) <= params.region_tolerance
    region[row, col] = True
    return _component_at(region, row, col)


def grown_box(box_xyxy: np.ndarray, shape: tuple[int, int], margin_px: float) -> np.ndarray:
    """The box (x0, y0, x1, y1) grown by `margin_px` on every side, kept on the (H, W) slice."""
    h, w = shape
    out = np.asarray(box_xyxy, dtype=np.float64) + np.array([-margin_px, -margin_px, margin_px, margin_px])
    return np.clip(out, [0, 0, 0, 0], [w - 1, h - 1, w - 1, h - 1])


def _respect_clicks(mask: np.ndarray, clicks: tuple[Click, ...]) -> np.ndarray:
    """Force every click's pixel to the side the user put it on (later clicks win)."""
    out = mask.copy()
    for click in clicks:
        row, col = click.rc(mask.shape)
        out[row, col] = click.positive
    return out


def box_of(mask: np.ndarray) -> np.ndarray | None:
    """The mask's tight box (x0, y0, x1, y1), None when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)


def start_from_box(predict: PredictFn, box_xyxy: np.ndarray) -> ClickOutcome:
    """The step every model starts with: one box."""
    pred = predict(box_xyxy=np.asarray(box_xyxy, dtype=np.float64), multimask=False)
    return ClickOutcome(pred.best_mask.astype(bool), np.asarray(box_xyxy, dtype=np.float64),
                        (), pred.low_res_logits[pred.best_index: pred.best_index + 1], 1)


def start_from_click(predict: PredictFn, prompt_kind: str, click: Click, shape: tuple[int, int],
                     image_hw: np.ndarray | None = None, params: ClickParams = ClickParams()) -> ClickOutcome:
    """A first click with no box. Point models take it as a point (multimask, best score). Box
    models get boxes of a few sizes around it; the one whose mask holds the click with the best
    predicted IoU wins (a click alone, as a point, gives LiteMedSAM a speck)."""
    row, col = click.rc(shape)
    if prompt_kind != "box":
        pred = predict(points_xy=np.array([[click.x, click.y]]), point_labels=np.array([int(click.positive)]),
                       multimask=True)
        best = pred.best_index
        return ClickOutcome(pred.masks[best].astype(bool), None, (click,),
                            pred.low_res_logits[best: best + 1], 1)
    if not click.positive:
        return ClickOutcome(np.zeros(shape, dtype=bool), None, (click,), None, 0)
    best_outcome, best_score, calls = None, -np.inf, 0
    for share in params.first_click_half_sizes:
        box = grown_box(np.array([col, row, col, row], dtype=np.float64), shape, share * max(shape))
        pred = predict(box_xyxy=box, multimask=False)
        calls += 1
        mask = pred.best_mask.astype(bool)
        score = float(pred.scores[pred.best_index])
        if mask[row, col] and score > best_score:
            best_score = score
            best_outcome = ClickOutcome(mask, box, (click,), pred.low_res_logits[:1], 0)
    if best_outcome is None:
        region = similar_region(image_hw, row, col, None, params) if image_hw is not None else \
            similar_region(None, row, col, np.ones(shape, dtype=bool), params)
        return ClickOutcome(region, None, (click,), None, calls)
    return replace(best_outcome, decoder_calls=calls)


def add_click(predict: PredictFn, prompt_kind: str, current: ClickOutcome, click: Click,
              image_hw: np.ndarray | None = None, params: ClickParams = ClickParams()) -> ClickOutcome:
    """The mask after one more click (see the module docstring for what each model does)."""
    clicks = current.clicks + (click,)
    if prompt_kind != "box":
        return _add_point(predict, current, clicks)
    if click.positive and params.new_part_share > 0 and current.mask.any() and \
            _distance_to(current.mask, click) > max(params.new_part_min_px * pixel_scale(current.mask.shape),
                                                    params.new_part_share * max(current.mask.shape)):
        added = _add_part(predict, current, clicks, click, image_hw, params)
        if added is not None:
            return added
    return _add_box_correction(current, clicks, image_hw, params)


def _distance_to(mask: np.ndarray, click: Click) -> float:
    from scipy.ndimage import distance_transform_edt

    row, col = click.rc(mask.shape)
    return float(distance_transform_edt(~mask)[row, col])


def _add_part(predict: PredictFn, current: ClickOutcome, clicks: tuple[Click, ...], click: Click,
              image_hw: np.ndarray | None, params: ClickParams) -> ClickOutcome | None:
    """The current mask plus the part the model finds around a positive click far from it (the
    piece of the model's best-scoring mask that holds the click); None when no box around the click
    gives a mask holding it."""
    part = start_from_click(predict, "box", click, current.mask.shape, image_hw,
                            replace(params, first_click_half_sizes=params.first_click_half_sizes[:2]))
    if part.box_xyxy is None:  # no model mask held the click
        return None
    row, col = click.rc(current.mask.shape)
    piece = _component_at(part.mask, row, col) & ~current.mask
    merged = _respect_clicks(current.mask | piece, clicks)
    box = box_of(merged)
    return ClickOutcome(merged, box, clicks, current.low_res_logits,
                        current.decoder_calls + part.decoder_calls, "new part")


def _add_point(predict: PredictFn, current: ClickOutcome, clicks: tuple[Click, ...]) -> ClickOutcome:
    pred = predict(
        box_xyxy=current.box_xyxy,
        points_xy=np.array([[c.x, c.y] for c in clicks], dtype=np.float64),
        point_labels=np.array([int(c.positive) for c in clicks], dtype=np.int64),
        mask_input=current.low_res_logits,
        multimask=False,
    )
    best = pred.best_index
    return ClickOutcome(pred.masks[best].astype(bool), current.box_xyxy, clicks,
                        pred.low_res_logits[best: best + 1], current.decoder_calls + 1)


def _add_box_correction(current: ClickOutcome, clicks: tuple[Click, ...], image_hw: np.ndarray | None,
                        params: ClickParams) -> ClickOutcome:
    from annotator.engine.click_refine import refine_with_clicks

    if image_hw is None:
        raise EngineError("a box model's clicks refine the mask on the slice image: pass image_hw")
    mask = current.mask
    grey = image_hw if image_hw.ndim == 2 else image_hw[..., 0]
    box = current.box_xyxy if current.box_xyxy is not None else box_of(mask)
    refined = refine_with_clicks(grey, mask, [(*c.rc(mask.shape), c.positive) for c in clicks], box, params.refine)
    return ClickOutcome(_respect_clicks(refined, clicks), box, clicks, current.low_res_logits,
                        current.decoder_calls, "refine")


def segment(predict: PredictFn, prompt_kind: str, shape: tuple[int, int], *, box_xyxy: np.ndarray | None = None,
            clicks: tuple[Click, ...] = (), image_hw: np.ndarray | None = None,
            params: ClickParams = ClickParams()) -> ClickOutcome:
    """The mask for a box and/or clicks given in order (what the point tool shows after each click)."""
    if box_xyxy is None and not clicks:
        raise EngineError("nothing to segment: give a box or a click")
    if box_xyxy is not None:
        outcome = start_from_box(predict, box_xyxy)
        rest = clicks
    else:
        outcome = start_from_click(predict, prompt_kind, clicks[0], shape, image_hw, params)
        rest = clicks[1:]
    for click in rest:
        outcome = add_click(predict, prompt_kind, outcome, click, image_hw, params)
    return outcome
