"""`annotator evaluate --propagate`: per organ, the step-0 box on its largest slice, then 3-D
propagation through the volume with the engine's propagation code, scored by 3-D Dice."""

from __future__ import annotations

import numpy as np

from annotator.engine.api import MaskPrediction
from annotator.engine.propagate import PropagationParams, propagate, result_volume_mask
from annotator.evaluate import protocol


class MeterSlices:
    """SlicePredictor over the evaluation's windowed slices (each embedded at most once)."""

    def __init__(self, meter) -> None:
        self.meter = meter

    def predict(self, index: int, *, box_xyxy: np.ndarray, mask_input: np.ndarray | None = None) -> MaskPrediction:
        return self.meter.predictor(index)(box_xyxy=box_xyxy, mask_input=mask_input, multimask=False)

    def image(self, index: int) -> np.ndarray:
        return self.meter.image(index)

    def prefetch(self, index: int, step: int, count: int) -> None:
        return None  # the evaluation runs on one thread; embeddings are made when first needed


def _z_range(mask_3d: np.ndarray, axis: int) -> list[int] | None:
    other = tuple(a for a in range(3) if a != axis)
    hits = np.flatnonzero(mask_3d.any(axis=other))
    return [int(hits[0]), int(hits[-1])] if hits.size else None


def evaluate_propagation(meter, labels_zyx: np.ndarray, item: protocol.Item, axis: int,
                         params: PropagationParams | None = None) -> dict:
    """3-D Dice of propagating the step-0 box mask of `item` through the volume."""
    truth_3d = labels_zyx == item.label
    truth = protocol.plane_slice(truth_3d, axis, item.slice_index)
    box = protocol.tight_box_xyxy(truth).astype(np.float64)
    slices = MeterSlices(meter)
    first = slices.predict(item.slice_index, box_xyxy=box)
    key_mask = first.best_mask.astype(bool)
    entry = {"key_slice": item.slice_index, "key_dice_2d": protocol.dice(key_mask, truth),
             "z_range_label": _z_range(truth_3d, axis)}
    if not key_mask.any():
        entry.update(dice_3d=0.0, z_range_predicted=None, stops={"+": "empty key mask", "-": "empty key mask"})
        return entry
    result = propagate(slices, item.slice_index, key_mask, labels_zyx.shape[axis], params=params or PropagationParams(),
                       key_logits=first.low_res_logits[first.best_index: first.best_index + 1])
    predicted = result_volume_mask(result, labels_zyx.shape, axis)
    entry.update(dice_3d=protocol.dice(predicted, truth_3d), z_range_predicted=_z_range(predicted, axis),
                 voxels_label=int(truth_3d.sum()), voxels_predicted=int(predicted.sum()), stops=result.stops)
    return entry
