"""3-D propagation: from one accepted mask on a key slice, segment the neighbouring slices one after
another (each prompted by the previous slice's mask), stop on its own where the structure ends, and
land the whole result as one undoable LabelEdit. Qt-free; runs on any thread.

Why not LiteMedSAM's own scheme (next box = previous mask's box + 3 px in model space, stop below 5 %
of the key area): the model returns a non-empty mask for almost any box, so that scheme runs past
organ ends, and its masks shrink slice after slice (a box drawn tight around an under-segmented mask
gives a smaller mask still). Here the next box is the previous one widened in proportion to its
size, and a slice is accepted only if it still looks like the same structure:
- not empty, and at least `min_area_ratio` of the previous slice's area (organ ends shrink fast),
- most of it overlaps the previous slice's mask (`min_overlap`): no jump to a neighbour,
- its mean grey level stays within `max_intensity_z` standard deviations of the key slice's mask
  (leaving an organ means segmenting other tissue),
- the model's own IoU estimate is at least `min_score`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from annotator.core.geometry import slice_region
from annotator.core.labels import LabelEdit, LabelMap, bounding_region
from annotator.engine.api import MaskPrediction

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]  # (slices done, slices at most)


class SlicePredictor(Protocol):
    """What propagation needs from an engine, per slice of one volume along one axis."""

    def predict(self, index: int, *, box_xyxy: np.ndarray, mask_input: np.ndarray | None = None) -> MaskPrediction:
        """Single-mask prediction on slice `index` (its embedding computed at most once, ever)."""
        ...

    def image(self, index: int) -> np.ndarray:
        """The (H, W) uint8 windowed slice the encoder saw (for the grey-level check)."""
        ...

    def prefetch(self, index: int, step: int, count: int) -> None:
        """Start embedding slices index, index + step, ... (count of them) in the background."""
        ...


@dataclass(frozen=True)
class PropagationParams:
    """Defaults measured on the shared abdominal CT with `annotator evaluate --propagate`."""

    box_margin_frac: float = 0.15    # widen the previous mask's box by this share of its size per side
    box_margin_min_px: float = 3.0   # ... and by at least this many pixels
    min_area_ratio: float = 0.35     # stop when a slice keeps less than this of the previous area
    max_area_ratio: float = 2.5      # stop when it more than this: it leaked into a neighbour
    min_overlap: float = 0.5         # share of the new mask inside the previous one
    max_intensity_z: float = 2.5     # grey-level drift from the key mask, in its standard deviations
    min_score: float = 0.5           # the model's IoU estimate
    min_pixels: int = 4              # a mask smaller than this counts as empty
    use_mask_input: bool = False     # feed the previous logits (LiteMedSAM was not trained on them)
    prefetch: int = 2                # slices embedded ahead of the current one


@dataclass
class PropagationResult:
    """Masks per slice index (the key slice included), why each direction stopped, and whether the
    run was cancelled (then nothing may be written)."""

    masks: dict[int, np.ndarray] = field(default_factory=dict)
    stops: dict[str, str] = field(default_factory=dict)
    cancelled: bool = False

    @property
    def slice_range(self) -> tuple[int, int] | None:
        if not self.masks:
            return None
        return min(self.masks), max(self.masks)


class PropagationCancelled(Exception):  # noqa: N818 - an outcome, like KeyboardInterrupt
    """Raised by propagate_into_labels when the cancel event was set; the label map is untouched."""


def _box_of(mask: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)


def next_box(previous_mask: np.ndarray, params: PropagationParams) -> np.ndarray:
    """The previous mask's box widened on every side (clipped to the slice)."""
    box = _box_of(previous_mask)
    h, w = previous_mask.shape
    mx = max(params.box_margin_min_px, params.box_margin_frac * (box[2] - box[0] + 1))
    my = max(params.box_margin_min_px, params.box_margin_frac * (box[3] - box[1] + 1))
    out = box + np.array([-mx, -my, mx, my])
    return np.clip(out, [0, 0, 0, 0], [w - 1, h - 1, w - 1, h - 1])


def _keep_overlapping(mask: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """The connected parts of `mask` that touch the previous slice's mask (drops far islands)."""
    from scipy.ndimage import label

    labelled, count = label(mask, structure=np.ones((3, 3), dtype=bool))
    if count <= 1:
        return mask
    touching = np.unique(labelled[mask & previous])
    touching = touching[touching > 0]
    if touching.size == 0:
        return mask
    return np.isin(labelled, touching)


def check_slice(mask: np.ndarray, previous: np.ndarray, score: float, grey: np.ndarray | None,
                key_stats: tuple[float, float] | None, params: PropagationParams) -> str | None:
    """None if `mask` continues the structure, else the reason to stop there."""
    area = int(mask.sum())
    if area < params.min_pixels:
        return "empty"
    prev_area = max(1, int(previous.sum()))
    if area < params.min_area_ratio * prev_area:
        return f"area fell to {area / prev_area:.2f} of the previous slice"
    if area > params.max_area_ratio * prev_area:
        return f"area grew to {area / prev_area:.2f} of the previous slice"
    overlap = float(np.count_nonzero(mask & previous)) / area
    if overlap < params.min_overlap:
        return f"only {overlap:.2f} overlaps the previous slice"
    if score < params.min_score:
        return f"model confidence {score:.2f}"
    if grey is not None and key_stats is not None:
        mean, std = key_stats
        drift = abs(float(grey[mask].mean()) - mean) / max(std, 4.0)
        if drift > params.max_intensity_z:
            return f"grey level drifted {drift:.1f} sd from the key slice"
    return None


def propagate(predictor: SlicePredictor, key_index: int, key_mask: np.ndarray, n_slices: int, *,
              direction: str = "both", index_range: tuple[int, int] | None = None,
              params: PropagationParams = PropagationParams(), key_logits: np.ndarray | None = None,
              progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> PropagationResult:
    """Masks slice by slice from `key_mask` on `key_index` (see the module docstring).

    direction: "both", "up" (+1) or "down" (-1); index_range: inclusive (first, last) slice limits.
    A set `cancel` event stops the run at the next slice and marks the result cancelled.
    """
    key_mask = np.asarray(key_mask, dtype=bool)
    if not key_mask.any():
        raise ValueError("the key slice's mask is empty: nothing to propagate")
    if direction not in ("both", "up", "down"):
        raise ValueError(f"direction must be 'both', 'up' or 'down', got {direction!r}")
    first, last = (0, n_slices - 1) if index_range is None else (max(0, index_range[0]), min(n_slices - 1, index_range[1]))
    if not first <= key_index <= last:
        raise ValueError(f"key slice {key_index} is outside the range {first}..{last}")
    steps = {"both": (1, -1), "up": (1,), "down": (-1,)}[direction]
    total = sum((last - key_index) if s > 0 else (key_index - first) for s in steps)
    result = PropagationResult(masks={key_index: key_mask.copy()})
    key_grey = predictor.image(key_index)
    key_values = key_grey[key_mask].astype(np.float64) if key_grey is not None else None
    key_stats = (float(key_values.mean()), float(key_values.std())) if key_values is not None else None
    done = 0
    for step in steps:
        previous, logits = key_mask, key_logits
        end = last if step > 0 else first
        index = key_index
        reason = "volume edge" if index == end else ""
        while index != end:
            if cancel is not None and cancel.is_set():
                result.cancelled = True
                result.stops[_name(step)] = "cancelled"
                return result
            index += step
            if params.prefetch > 0:
                remaining = abs(end - index)
                predictor.prefetch(index + step, step, min(params.prefetch, remaining))
            pred = predictor.predict(index, box_xyxy=next_box(previous, params),
                                     mask_input=logits if params.use_mask_input else None)
            best = pred.best_index
            mask = _keep_overlapping(pred.masks[best].astype(bool), previous)
            reason = check_slice(mask, previous, float(pred.scores[best]), predictor.image(index), key_stats, params)
            done += 1
            if progress is not None:
                progress(done, total)
            if reason is not None:
                reason = f"{reason} at slice {index}"
                break
            result.masks[index] = mask
            previous, logits = mask, pred.low_res_logits[best: best + 1]
            reason = "volume edge" if index == end else ""
        result.stops[_name(step)] = reason or "volume edge"
    if progress is not None:
        progress(total, total)
    return result


def _name(step: int) -> str:
    return "+" if step > 0 else "-"


def result_volume_mask(result: PropagationResult, shape_zyx: tuple[int, int, int], axis: int) -> np.ndarray:
    """The propagated masks as one (z, y, x) bool volume."""
    out = np.zeros(shape_zyx, dtype=bool)
    for index, mask in result.masks.items():
        out[slice_region(shape_zyx, axis, index)] = mask.reshape(out[slice_region(shape_zyx, axis, index)].shape)
    return out


def propagation_edit(labels: LabelMap, result: PropagationResult, axis: int, label_id: int, *,
                     overwrite: bool = False, description: str = "propagate") -> LabelEdit | None:
    """Write the propagated masks into `labels` as ONE edit (one undo step). Voxels of other labels
    are kept unless `overwrite`; locked labels never change. Refuses a cancelled result."""
    if result.cancelled:
        raise PropagationCancelled("propagation was cancelled; the label map was not changed")
    if not result.masks:
        return None
    volume_mask = result_volume_mask(result, labels.shape_zyx, axis)
    # Only the box around the new voxels and the label's old voxels on those slices: the edit
    # (and its undo entry) stays small, and re-running propagation replaces, not adds to, the label.
    lo, hi = result.slice_range
    on_slices = np.zeros_like(volume_mask)
    span = [slice(None)] * 3
    span[axis] = slice(lo, hi + 1)
    on_slices[tuple(span)] = labels.array[tuple(span)] == label_id
    region = bounding_region(volume_mask | on_slices)
    if region is None:
        return None
    return labels.replace_label(region, volume_mask[region], label_id, description=description) if overwrite \
        else _paint_keep_others(labels, region, volume_mask[region], label_id, description)


def _paint_keep_others(labels: LabelMap, region, mask: np.ndarray, label_id: int, description: str) -> LabelEdit | None:
    """label_id becomes exactly `mask` within region, except voxels that belong to another label."""
    current = labels.array[region]
    keep_other = (current != 0) & (current != label_id)
    return labels.replace_label(region, mask & ~keep_other, label_id, description=description)


class ExecutorSlices:
    """SlicePredictor through the EngineExecutor: every embedding goes through its EmbeddingService
    (memory + disk cache, so a slice is embedded at most once, ever) on the one engine thread, and
    prefetch queues the next slices there at low priority while this thread waits on predictions."""

    def __init__(self, executor, view) -> None:
        self.executor = executor
        self.view = view  # executor.SliceRef of the key slice: volume, axis, window

    def predict(self, index: int, *, box_xyxy: np.ndarray, mask_input: np.ndarray | None = None) -> MaskPrediction:
        from annotator.engine.api import EngineError
        from annotator.engine.executor import PredictRequest

        request = PredictRequest(self.view.at(index), box_xyxy=np.asarray(box_xyxy, dtype=np.float64),
                                 mask_input=mask_input, multimask=False)
        result = self.executor.predict(request).result()
        if not result.ok or result.prediction is None:
            raise EngineError(f"prediction on slice {index} failed: {result.error or result.status}")
        return result.prediction

    def image(self, index: int) -> np.ndarray:
        from annotator.engine.slices import slice_rgb_u8

        return slice_rgb_u8(self.view.volume, self.view.axis, index, self.view.window)[..., 0]

    def prefetch(self, index: int, step: int, count: int) -> None:
        if count <= 0:
            return
        n = int(self.view.volume.array.shape[self.view.axis])
        if 0 <= index < n:
            # Queued as index, index+1, index-1, ...: the slices behind are cached already (free).
            self.executor.prefetch(self.view.at(index), radius=count)


def propagate_label(executor, view, labels: LabelMap, label_id: int, *, key_mask: np.ndarray | None = None,
                    direction: str = "both", index_range: tuple[int, int] | None = None,
                    params: PropagationParams = PropagationParams(), overwrite: bool = False,
                    progress: ProgressFn | None = None, cancel: threading.Event | None = None,
                    ) -> tuple[LabelEdit | None, PropagationResult]:
    """Propagate `label_id` from the key slice `view` (its mask: `key_mask`, or the label's voxels on
    that slice) and write the result into `labels` as one LabelEdit (push it onto the History).

    Raises PropagationCancelled, with `labels` untouched, when `cancel` is set during the run.
    """
    from annotator.core.geometry import slice_2d

    if key_mask is None:
        key_mask = slice_2d(labels.array, view.axis, view.index) == label_id
    if not np.any(key_mask):
        raise ValueError(f"label {label_id} has no voxels on slice {view.index} to propagate from")
    n = int(view.volume.array.shape[view.axis])
    try:
        result = propagate(ExecutorSlices(executor, view), int(view.index), key_mask, n, direction=direction,
                           index_range=index_range, params=params, progress=progress, cancel=cancel)
    finally:
        executor.cancel_prefetch()
    if result.cancelled:
        raise PropagationCancelled("propagation was cancelled; the label map was not changed")
    edit = propagation_edit(labels, result, view.axis, label_id, overwrite=overwrite,
                            description=f"propagate label {label_id} over slices "
                                        f"{result.slice_range[0]}-{result.slice_range[1]}")
    log.info("propagated label %d over slices %s (stops: %s)", label_id, result.slice_range, result.stops)
    return edit, result
