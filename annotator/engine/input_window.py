"""The model's input intensity mapping, chosen per prompt: a box model sees only what its 8-bit input
shows, and one fixed soft-tissue window hides lungs, bones and contrast-filled vessels.

For each box, the slice is embedded under a few candidate windows (CT: the clinical soft-tissue,
lung and bone presets, each only where the box holds tissue that the soft-tissue window would clip;
MR: LiteMedSAM's volume percentiles and the percentiles of the box's own surroundings) and the
window whose mask best fills the box wins. Measured with `annotator evaluate` on the two labelled
CTs: choosing by how well the mask's extent matches the box beat choosing by the model's own IoU
estimate (mean box Dice 0.699 / 0.814 against 0.609 / 0.697 for the same three presets), which
barely tells good masks from bad ones on these scans. The display window stays the user's; the chosen
window is part of every embedding's cache key and is carried through propagation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from annotator.core.geometry import CT_PRESETS, Window, percentile_window
from annotator.core.volume import Volume
from annotator.engine.api import MaskPrediction

# CT presets tried for a box, in order (the first is the default for clicks and prefetch).
CT_CANDIDATES: tuple[str, ...] = ("soft tissue", "lung", "bone")
# A preset other than the first is tried only if at least this share of the box (grown by
# BOX_CONTEXT on every side) lies below / above what the soft-tissue window shows: otherwise it
# would only show the same tissue with less contrast.
CLIPPED_SHARE = 0.02
BOX_CONTEXT = 0.1
MR_BOX_PERCENTILES = (0.5, 99.5)
# Before any box, a preset is embedded for the visible slice where at least this share of the whole
# slice lies outside the default window: any tissue there, not stray voxels. Bone is ~1 % of an
# abdominal slice yet fills the boxes drawn near it (the demo phantom: 1.3 % of the slice, over 2 %
# of each liver box); the cost is idle encoder time, cancelled when the user moves on.
SLICE_CLIPPED_SHARE = 0.002


def is_ct(volume: Volume) -> bool:
    """CT by DICOM modality, or (NIfTI without one) a minimum <= -500, as core.geometry.default_window."""
    if volume.modality:
        return volume.modality.upper() == "CT"
    array = volume.array
    return bool(np.issubdtype(array.dtype, np.number) and array.size and float(array.min()) <= -500)


def default_model_window(volume: Volume) -> Window:
    """The window used when no box is given (clicks, prefetch): the first candidate."""
    return CT_PRESETS[CT_CANDIDATES[0]] if is_ct(volume) else percentile_window(volume.array)


def _box_region(slice_hw: np.ndarray, box_xyxy: np.ndarray, grow: float) -> np.ndarray:
    h, w = slice_hw.shape
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    gx, gy = grow * (x1 - x0 + 1), grow * (y1 - y0 + 1)
    rows = slice(max(0, int(np.floor(y0 - gy))), min(h, int(np.ceil(y1 + gy)) + 1))
    cols = slice(max(0, int(np.floor(x0 - gx))), min(w, int(np.ceil(x1 + gx)) + 1))
    region = slice_hw[rows, cols]
    return region if region.size else slice_hw


def _clipped_presets(values: np.ndarray, default: Window, share: float) -> list[Window]:
    """The lung / bone presets where at least `share` of `values` lies below / above `default`."""
    out = []
    if np.count_nonzero(values < default.low) >= share * values.size:
        out.append(CT_PRESETS["lung"])
    if np.count_nonzero(values > default.high) >= share * values.size:
        out.append(CT_PRESETS["bone"])
    return out


def candidate_windows(volume: Volume, slice_hw: np.ndarray, box_xyxy: np.ndarray | None) -> list[Window]:
    """Windows worth trying for a box on the raw slice `slice_hw` (first = the default)."""
    default = default_model_window(volume)
    if box_xyxy is None:
        return [default]
    region = _box_region(np.asarray(slice_hw), np.asarray(box_xyxy, dtype=np.float64), BOX_CONTEXT)
    values = region[np.isfinite(region)] if np.issubdtype(region.dtype, np.floating) else region.ravel()
    if values.size == 0:
        return [default]
    out = [default]
    if is_ct(volume):
        return out + _clipped_presets(values, default, CLIPPED_SHARE)
    lo, hi = (float(v) for v in np.percentile(values.astype(np.float64), MR_BOX_PERCENTILES))
    if hi > lo:
        local = Window.from_bounds(lo, hi)
        if local.key() != default.key():
            out.append(local)
    return out


def slice_windows(volume: Volume, slice_hw: np.ndarray) -> list[Window]:
    """Windows a box on the raw slice `slice_hw` will likely try, before any box is drawn (first =
    the default): on CT the lung and bone presets where at least SLICE_CLIPPED_SHARE of the slice
    lies below / above the default window. The window embeds them while the user looks at the
    slice. MR's per-box window depends on the box, so there is nothing to embed ahead."""
    default = default_model_window(volume)
    if not is_ct(volume):
        return [default]
    values = np.asarray(slice_hw)
    if np.issubdtype(values.dtype, np.floating):
        values = values[np.isfinite(values)]
    if values.size == 0:
        return [default]
    return [default, *_clipped_presets(values, default, SLICE_CLIPPED_SHARE)]


def box_fit(mask_hw: np.ndarray, box_xyxy: np.ndarray) -> float:
    """IoU of the mask's bounding box with the prompt box (0 for an empty mask): a box is drawn around
    the whole structure, so the window whose mask spans it best saw the structure best."""
    mask = np.asarray(mask_hw, dtype=bool)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return 0.0
    cols = np.flatnonzero(mask.any(axis=0))
    mx0, my0, mx1, my1 = float(cols[0]), float(rows[0]), float(cols[-1]), float(rows[-1])
    bx0, by0, bx1, by1 = (float(v) for v in box_xyxy)
    iw = max(0.0, min(mx1, bx1) - max(mx0, bx0) + 1.0)
    ih = max(0.0, min(my1, by1) - max(my0, by0) + 1.0)
    inter = iw * ih
    union = (mx1 - mx0 + 1.0) * (my1 - my0 + 1.0) + (bx1 - bx0 + 1.0) * (by1 - by0 + 1.0) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class WindowChoice:
    """The window a box was segmented in, its prediction, and every candidate's fit (for logs)."""

    window: Window
    prediction: MaskPrediction
    fits: tuple[tuple[tuple[float, float], float], ...]


def choose_window(predict_in: Callable[[Window], MaskPrediction], box_xyxy: np.ndarray,
                  candidates: Sequence[Window]) -> WindowChoice:
    """Predict the box under each candidate window (`predict_in(window)` embeds the slice in that
    window, at most once ever, and runs the box); keep the best box fit (ties: the earlier one)."""
    if not candidates:
        raise ValueError("no candidate windows")
    best: tuple[float, Window, MaskPrediction] | None = None
    fits = []
    for window in candidates:
        prediction = predict_in(window)
        fit = box_fit(prediction.best_mask, box_xyxy)
        fits.append((window.key(), fit))
        if best is None or fit > best[0] + 1e-9:
            best = (fit, window, prediction)
    assert best is not None  # candidates is non-empty
    return WindowChoice(best[1], best[2], tuple(fits))
