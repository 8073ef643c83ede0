"""A propagation result written into the label map as ONE undoable LabelEdit: the slices it reached
(and the stale tail of an earlier, longer run, unless that tail continues the new run where it
stopped) are replaced, key slices never, other labels' voxels kept unless asked, locked labels
never changed."""

from __future__ import annotations

import numpy as np

from annotator.core.geometry import slice_2d, slice_region
from annotator.core.labels import LabelEdit, LabelMap, Region, bounding_region
from annotator.engine.label_extent import slices_present
from annotator.engine.propagate import (
    PropagationCancelled,
    PropagationParams,
    PropagationResult,
    mask_iou,
)


def _continues(labels: LabelMap, result: PropagationResult, axis: int, label_id: int, last: int, beyond: int,
               keep_tail_iou: float) -> bool:
    """Whether the label's mask on slice `beyond` continues the result's mask on slice `last`."""
    mask = result.masks[last]
    return bool(mask.any()) and mask_iou(mask, slice_2d(labels.array, axis, beyond) == label_id) >= keep_tail_iou


def _replacement_slices(labels: LabelMap, result: PropagationResult, axis: int, label_id: int,
                        keep_tail_iou: float) -> list[int]:
    """Non-key slices whose `label_id` voxels the result replaces: every slice from the lowest to
    the highest it reached, plus the label's contiguous run of slices just beyond, unless that run
    continues the result's mask where it stopped (IoU >= keep_tail_iou: a re-propagation that stops
    earlier than the last one removes the last one's tail only where the tail is something else);
    separate pieces further away are kept, and so are the slices a run left to the label where it
    joined it (result.kept)."""
    n = labels.shape_zyx[axis]
    present = slices_present(labels.array == label_id, axis)
    reached = sorted(result.masks)
    lo, hi = reached[0], reached[-1]
    fixed = result.keys | result.kept
    if lo > 0 and (lo - 1) not in result.kept and \
            not _continues(labels, result, axis, label_id, lo, lo - 1, keep_tail_iou):
        while lo - 1 >= 0 and present[lo - 1] and (lo - 1) not in fixed:
            lo -= 1
    if hi + 1 < n and (hi + 1) not in result.kept and \
            not _continues(labels, result, axis, label_id, hi, hi + 1, keep_tail_iou):
        while hi + 1 < n and present[hi + 1] and (hi + 1) not in fixed:
            hi += 1
    return [i for i in range(lo, hi + 1) if i not in fixed]


def propagation_edit(labels: LabelMap, result: PropagationResult, axis: int, label_id: int, *,
                     overwrite: bool = False, description: str = "propagate",
                     keep_tail_iou: float = PropagationParams.keep_tail_iou) -> LabelEdit | None:
    """Write the propagated masks into `labels` as ONE edit (one undo step). Key slices are never
    written; on the other slices the result replaces `label_id` (see _replacement_slices). Voxels of
    other labels are kept unless `overwrite`; locked labels never change. Refuses a cancelled result."""
    if result.cancelled:
        raise PropagationCancelled("propagation was cancelled; the label map was not changed")
    if not result.masks:
        return None
    slices = _replacement_slices(labels, result, axis, label_id, keep_tail_iou)
    if not slices:
        return None
    shape = labels.shape_zyx
    new_mask = np.zeros(shape, dtype=bool)
    writable = np.zeros(shape, dtype=bool)
    for index in slices:
        region = slice_region(shape, axis, index)
        writable[region] = True
        if index in result.masks:
            new_mask[region] = result.masks[index].reshape(new_mask[region].shape)
    old = (labels.array == label_id) & writable
    changed = bounding_region(new_mask | old)
    if changed is None:
        return None
    region = changed
    if overwrite:
        target = new_mask[region] | ((labels.array[region] == label_id) & ~writable[region])
        return labels.replace_label(region, target, label_id, description=description)
    return _paint_keep_others(labels, region, new_mask[region], writable[region], label_id, description)


def _paint_keep_others(labels: LabelMap, region: Region, mask: np.ndarray, writable: np.ndarray, label_id: int,
                       description: str) -> LabelEdit | None:
    """label_id becomes `mask` on the writable voxels of region, except voxels of another label."""
    current = labels.array[region]
    keep_other = (current != 0) & (current != label_id)
    target = (mask & ~keep_other) | ((current == label_id) & ~writable)
    return labels.replace_label(region, target, label_id, description=description)
