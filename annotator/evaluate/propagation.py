"""`annotator evaluate --propagate`: per organ, the app's first prompt (a box, input window chosen) on
its largest slice, 3-D propagation through the volume, then the corrective loop a clinician runs:
up to K times, the slice with the largest error is corrected (erased where the structure is absent,
else a box, or a box per piece, and clicks; the first box's slice with clicks) and becomes a key,
and propagation runs again between the keys. Scored by 3-D Dice after each step; the same
engine.propagate code the window runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from annotator.core.geometry import Window, slice_region
from annotator.core.labels import LabelMap
from annotator.engine import slice_segmentation
from annotator.engine.api import MaskPrediction
from annotator.engine.click_strategy import Click
from annotator.engine.label_extent import label_before, mask_extent
from annotator.engine.propagate import Key, PropagationParams, propagate_volume
from annotator.engine.propagation_edit import propagation_edit
from annotator.evaluate import protocol

if TYPE_CHECKING:
    from annotator.evaluate.runner import EngineMeter


class MeterSlices:
    """SlicePredictor over the evaluation's slice images (each embedded at most once)."""

    def __init__(self, meter: EngineMeter) -> None:
        self.meter = meter

    def predict(self, index: int, window: Window, *, box_xyxy: np.ndarray) -> MaskPrediction:
        return self.meter.predict_in(index)(window)(box_xyxy=box_xyxy, multimask=False)

    def raw(self, index: int) -> np.ndarray:
        return self.meter.raw(index)

    def prefetch(self, index: int, step: int, count: int, window: Window) -> None:
        return None  # the evaluation runs on one thread; embeddings are made when first needed


def _z_range(mask_3d: np.ndarray, axis: int) -> list[int] | None:
    extent = mask_extent(mask_3d, axis)
    return None if extent is None else list(extent)


def _stop_errors(predicted: np.ndarray, truth_3d: np.ndarray, axis: int) -> dict[str, int | None]:
    """Slices between where the prediction ends and where the label ends, per direction."""
    got, want = _z_range(predicted, axis), _z_range(truth_3d, axis)
    if got is None or want is None:
        return {"+": None, "-": None}
    return {"+": abs(got[1] - want[1]), "-": abs(got[0] - want[0])}


def _slice_errors(predicted: np.ndarray, truth_3d: np.ndarray, axis: int) -> np.ndarray:
    other = tuple(a for a in range(3) if a != axis)
    return np.count_nonzero(predicted ^ truth_3d, axis=other)


# A propagated mask this good is corrected with clicks; a worse one (or none) is redrawn with a box.
CLICK_CORRECTION_MIN_DICE = 0.5
# One correction: the prompts a user spends on one slice before pressing P again, stopping early
# once the slice looks right.
CORRECTION_MAX_PROMPTS = 4
CORRECTION_GOOD_DICE = 0.9


def correction_key(meter: EngineMeter, truth_3d: np.ndarray, axis: int, index: int, keys: dict[int, Key],
                   prompt_kind: str, current: np.ndarray, boxed: bool = False) -> tuple[Key | None, dict]:
    """The simulated user's correction of slice `index`, which then becomes a key:
    - the structure is absent there: the slice is emptied (an empty key, "it ends before here");
    - else, with the app's prompts on that slice: a tight box when the propagated mask there is
      missing or mostly wrong (Dice < 0.5), a box per piece where the structure lies in separate
      pieces there (boxes_per_piece: one box around them all takes what lies between), then the
      protocol's corrective clicks through the app's click strategy, until the slice reaches
      Dice 0.9 or 4 prompts were spent. The user keeps the best mask seen, the propagated one
      included: nobody accepts a mask worse than what was there (a box redrawn on a mostly right
      slice often is: kidney slices 0.82 -> 0.71).
    `boxed`: the user drew a box on this slice before (the first prompt): they click there, as the
    window lets them (clicks on a labelled slice correct its mask), rather than draw the same box.
    When nothing the user saw holds any of the structure (best Dice 0), they accept nothing: an
    empty slice would claim the structure is absent there, a wrong mask would be a wrong key.
    Returns the key (None then) and what was done ({"action", "prompts", "key_dice_2d"})."""
    from annotator.evaluate.runner import app_first_prompt

    truth = protocol.plane_slice(truth_3d, axis, index)
    nearest = min(keys.values(), key=lambda k: abs(k.index - index))
    if not truth.any():
        return Key(index, np.zeros(truth.shape, dtype=bool), nearest.window), \
            {"action": "erase", "prompts": 1, "key_dice_2d": 1.0}
    prompts = 0
    best = (protocol.dice(current, truth), current, nearest.window)
    if not boxed and best[0] < CLICK_CORRECTION_MIN_DICE:
        pieces = protocol.pieces_to_box(truth, CORRECTION_MAX_PROMPTS)
        if len(pieces) > 1:
            state, prompts, action = boxes_per_piece(meter, index, pieces, prompt_kind), len(pieces), "boxes"
        else:
            state = app_first_prompt(meter, index, protocol.tight_box_xyxy(truth).astype(np.float64), prompt_kind)
            prompts, action = 1, "box"
    else:
        state, action = slice_segmentation.from_mask(current, nearest.window), "clicks"
    while True:
        score = protocol.dice(state.mask, truth)
        if score > best[0]:
            best = (score, state.mask, state.window)
        click = protocol.next_click(state.mask, truth)
        if score >= CORRECTION_GOOD_DICE or prompts >= CORRECTION_MAX_PROMPTS or click is None:
            break
        x, y, positive = click
        state = slice_segmentation.add_click(meter.predict_in(index), prompt_kind, state, Click(x, y, positive),
                                             meter.image_in(index))
        prompts += 1
    if best[0] <= 0.0:
        return None, {"action": "abandoned", "prompts": prompts, "key_dice_2d": 0.0}
    return Key(index, np.asarray(best[1], dtype=bool), best[2]), \
        {"action": action, "prompts": prompts, "key_dice_2d": best[0]}


def boxes_per_piece(meter: EngineMeter, index: int, pieces: list[np.ndarray],
                    prompt_kind: str) -> slice_segmentation.SliceOutcome:
    """The mask of a structure in separate pieces on slice `index`, boxed piece by piece (one box
    around them all takes what lies between): each box's mask is added to what is there, as a box
    on a key slice does in the window (Document.accept_preview), and the clicks after it correct
    the label's mask in the window the last box chose."""
    from annotator.evaluate.runner import app_first_prompt

    if not pieces:
        raise ValueError("no piece to box")
    boxed = [app_first_prompt(meter, index, protocol.tight_box_xyxy(piece).astype(np.float64), prompt_kind)
             for piece in pieces]
    union = np.logical_or.reduce([b.mask.astype(bool) for b in boxed])
    return slice_segmentation.from_mask(union, boxed[-1].window)


def _where_to_erase(predicted: np.ndarray, truth_3d: np.ndarray, axis: int, index: int,
                    keys: dict[int, Key]) -> int:
    """A run past the structure's end is corrected where it should have stopped: the worst slice
    beyond the labelled range moves to the first predicted slice past that end (a user scrolls to
    where the structure ends and erases there, not somewhere in the middle of the overrun)."""
    labelled = _z_range(truth_3d, axis)
    if labelled is None or labelled[0] <= index <= labelled[1]:
        return index
    other = tuple(a for a in range(3) if a != axis)
    present = np.asarray(predicted.any(axis=other))
    step = 1 if index > labelled[1] else -1
    start = labelled[1] + 1 if step > 0 else labelled[0] - 1
    for candidate in range(start, index + step, step):
        if present[candidate] and candidate not in keys:
            return candidate
    return index


def slice_to_correct(predicted: np.ndarray, truth_3d: np.ndarray, axis: int, keys: dict[int, Key],
                     open_keys: set[int], given_up: set[int] | None = None) -> int | None:
    """The slice the simulated user corrects next: the one with the most wrong voxels, leaving out
    keys except `open_keys` (the first box's slice, until it was corrected once) and slices where a
    correction was `given_up`, moved to where an overrun begins (_where_to_erase); None when
    nothing is wrong there."""
    errors = _slice_errors(predicted, truth_3d, axis)
    errors[[i for i in keys if i not in open_keys]] = -1
    errors[sorted(given_up or ())] = -1
    index = int(np.argmax(errors))
    if errors[index] <= 0:
        return None
    return _where_to_erase(predicted, truth_3d, axis, index, keys)


def evaluate_propagation(meter: EngineMeter, labels_zyx: np.ndarray, item: protocol.Item, axis: int,
                         params: PropagationParams | None = None, corrections: int = 5) -> dict:
    """3-D Dice of propagating the app's first box mask of `item`, and after each correction."""
    from annotator.evaluate.runner import app_first_prompt

    params = params or PropagationParams()
    prompt_kind = getattr(meter.engine, "prompt_kind", "points")
    truth_3d = labels_zyx == item.label
    truth = protocol.plane_slice(truth_3d, axis, item.slice_index)
    first = app_first_prompt(meter, item.slice_index, protocol.tight_box_xyxy(truth).astype(np.float64), prompt_kind)
    keys = {item.slice_index: Key(item.slice_index, first.mask.astype(bool), first.window)}
    entry: dict = {"key_slice": item.slice_index, "key_dice_2d": protocol.dice(first.mask, truth),
                   "window": list(first.window.key()), "z_range_label": _z_range(truth_3d, axis)}
    slices = MeterSlices(meter)
    embedded: list[int] = []  # per run: the (slice, window) embeddings it needed, as if the cache were empty

    # The prediction lives in a label map, as in the window: each key is accepted onto its slice
    # when it is made, then P writes the run with the window's own propagation_edit (what it
    # replaces and keeps).
    labels = LabelMap(truth_3d.shape)

    new_keys: dict[int, bool] = {}  # keys since the last P: did their slice hold the label (KeyMark.held_before)

    def accept(key: Key) -> None:
        keys[key.index] = key
        region = slice_region(truth_3d.shape, axis, key.index)
        new_keys.setdefault(key.index, bool((labels.array[region] == 1).any()))
        labels.replace_label(region, key.mask.reshape(labels.array[region].shape), 1)

    accept(keys[item.slice_index])

    def run() -> tuple[np.ndarray, dict]:
        if not any(k.mask.any() for k in keys.values()):
            embedded.append(0)
            return labels.array == 1, {"+": "empty key", "-": "empty key"}
        # as in the window: the label's extent as the last P left it, its masks and the new keys
        before = label_before(labels.array == 1, axis, keys, new_keys)
        result = propagate_volume(slices, meter.volume, axis, list(keys.values()), params=params,
                                  **before._asdict())
        embedded.append(len(result.embedded))
        propagation_edit(labels, result, axis, 1, keep_tail_iou=params.keep_tail_iou)
        new_keys.clear()
        return labels.array == 1, result.stops

    predicted, stops = run()
    entry.update(dice_3d=protocol.dice(predicted, truth_3d), z_range_predicted=_z_range(predicted, axis),
                 voxels_label=int(truth_3d.sum()), voxels_predicted=int(predicted.sum()), stops=stops,
                 stop_error_slices=_stop_errors(predicted, truth_3d, axis))
    dices = [entry["dice_3d"]]
    corrected: list[dict] = []
    # The first box's slice may be corrected once, like any other: the user sees it is wrong and
    # clicks there. A slice the user corrected says what they want.
    boxed = {item.slice_index}
    given_up: set[int] = set()
    for _ in range(corrections):
        index = slice_to_correct(predicted, truth_3d, axis, keys, boxed, given_up)
        if index is None:
            dices.append(dices[-1])
            continue
        current = protocol.plane_slice(predicted, axis, index)
        key, done = correction_key(meter, truth_3d, axis, index, keys, prompt_kind, current, boxed=index in boxed)
        boxed.discard(index)
        if key is None:  # the correction was spent, nothing changed
            given_up.add(index)
            dices.append(dices[-1])
            corrected.append({"slice": index, **done, "dice_3d": dices[-1]})
            continue
        accept(key)
        predicted, stops = run()
        dices.append(protocol.dice(predicted, truth_3d))
        corrected.append({"slice": index, **done, "dice_3d": dices[-1]})
    entry["corrections"] = dices
    entry["slices_embedded"] = embedded  # the first propagation, then each re-propagation
    entry["corrected_slices"] = corrected
    entry["final_stops"] = stops
    return entry
