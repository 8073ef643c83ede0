"""One slice's prompts to one mask, the way the app does it: the box (for a box model grown by its
training margin, ClickParams.box_margin_share) is segmented under each candidate input window and the
window whose mask best fits the box as drawn is kept (input_window), its specks finer than a
reference pixel cleared on a fine slice (mask_specks), then the clicks are applied in that window
(click_strategy). The window, `annotator segment` and `annotator evaluate`'s `app` rows all call
this, so what the evaluation measures is what the user gets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from annotator.core.geometry import Window
from annotator.engine import click_strategy
from annotator.engine.api import EngineError
from annotator.engine.click_strategy import Click, ClickOutcome, ClickParams, PredictFn
from annotator.engine.input_window import choose_window
from annotator.engine.mask_specks import without_specks_finer_than_reference

# predict_in(window) -> PredictFn on the slice embedded under that window
PredictIn = Callable[[Window], PredictFn]
# image_in(window) -> the (H, W) uint8 slice as the encoder saw it under that window
ImageIn = Callable[[Window], np.ndarray]


@dataclass(frozen=True)
class SliceOutcome:
    """The mask of one object on one slice, and the input window it was made in."""

    outcome: ClickOutcome
    window: Window

    @property
    def mask(self) -> np.ndarray:
        return self.outcome.mask


def first_prompt(predict_in: PredictIn, prompt_kind: str, shape: tuple[int, int], candidates: Sequence[Window], *,
                 box_xyxy: np.ndarray | None = None, first_click: Click | None = None,
                 image_in: ImageIn | None = None, params: ClickParams | None = None) -> SliceOutcome:
    """The mask after the first prompt: a box (window chosen among `candidates`) or a lone click
    (in the first candidate, the default window)."""
    params = params or ClickParams()
    if box_xyxy is not None:
        box = np.asarray(box_xyxy, dtype=np.float64)
        share = params.box_margin_share if prompt_kind == "box" else 0.0
        prompt = click_strategy.grown_box(box, shape, share * max(shape))
        choice = choose_window(lambda w: predict_in(w)(box_xyxy=prompt, multimask=False), box, candidates)
        pred = choice.prediction
        mask = without_specks_finer_than_reference(pred.best_mask.astype(bool), (), params.refine.speck_side_px)
        outcome = ClickOutcome(mask, box, (), pred.low_res_logits[pred.best_index: pred.best_index + 1],
                               len(candidates))
        return SliceOutcome(outcome, choice.window)
    if first_click is None:
        raise EngineError("nothing to segment: give a box or a click")
    window = candidates[0]
    image = image_in(window) if image_in is not None else None
    outcome = click_strategy.start_from_click(predict_in(window), prompt_kind, first_click, shape, image, params)
    clicks = [(*c.rc(shape), c.positive) for c in outcome.clicks]
    outcome = replace(outcome, mask=without_specks_finer_than_reference(outcome.mask, clicks, params.refine.speck_side_px))
    return SliceOutcome(outcome, window)


def from_mask(mask: np.ndarray, window: Window) -> SliceOutcome:
    """A session that corrects a mask already there (the label's on this slice, from propagation or
    an earlier prompt) in the input window it was made in: clicks refine it instead of starting afresh."""
    mask = np.asarray(mask, dtype=bool)
    box = click_strategy.box_of(mask)
    return SliceOutcome(ClickOutcome(mask.copy(), box), window)


def add_click(predict_in: PredictIn, prompt_kind: str, current: SliceOutcome, click: Click,
              image_in: ImageIn | None = None, params: ClickParams | None = None) -> SliceOutcome:
    """One more click, in the window the first prompt chose."""
    params = params or ClickParams()
    window = current.window
    image = image_in(window) if image_in is not None else None
    if current.outcome.box_xyxy is None and not current.outcome.clicks and not current.mask.any():
        # correcting an empty slice (from_mask of nothing): the click is a first prompt
        return SliceOutcome(click_strategy.start_from_click(predict_in(window), prompt_kind, click, current.mask.shape,
                                                            image, params), window)
    outcome = click_strategy.add_click(predict_in(window), prompt_kind, current.outcome, click, image, params)
    return SliceOutcome(outcome, window)


def segment_slice(predict_in: PredictIn, prompt_kind: str, shape: tuple[int, int], candidates: Sequence[Window], *,
                  box_xyxy: np.ndarray | None = None, clicks: tuple[Click, ...] = (),
                  image_in: ImageIn | None = None, params: ClickParams | None = None,
                  base: SliceOutcome | None = None) -> SliceOutcome:
    """The mask for a box and/or clicks given in order (what the window shows after each prompt).
    `base` (from_mask): without a box, the clicks correct that mask."""
    if box_xyxy is None and not clicks:
        raise EngineError("nothing to segment: give a box or a click")
    if box_xyxy is None and base is not None:
        current, rest = base, clicks
    elif box_xyxy is not None:
        current = first_prompt(predict_in, prompt_kind, shape, candidates, box_xyxy=box_xyxy, params=params)
        rest = clicks
    else:
        current = first_prompt(predict_in, prompt_kind, shape, candidates, first_click=clicks[0],
                               image_in=image_in, params=params)
        rest = clicks[1:]
    for click in rest:
        current = add_click(predict_in, prompt_kind, current, click, image_in, params)
    return current
