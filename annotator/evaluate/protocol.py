"""The deterministic click-simulation protocol of `annotator evaluate` (issue 7): items, intensity
window, box, click placement, Dice and NoC. Kept exact so results compare across tools and versions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotator.core.overlap import dice  # noqa: F401 - the protocol's metric, used as protocol.dice

MIN_ITEM_PIXELS = 64
CT_WINDOW = (-160.0, 240.0)
MR_PERCENTILES = (0.5, 99.5)
# Names containing any of these are bones/cartilage, not organs (summary "organs").
NON_ORGAN_WORDS = ("rib", "vertebra", "costal", "humerus", "femur", "hip", "sacrum", "intervertebral")


@dataclass(frozen=True)
class Item:
    """One evaluation item: a label on the slice where it has the most pixels."""

    label: int
    name: str
    plane: str
    slice_index: int
    pixels: int

    @property
    def organ(self) -> bool:
        return is_organ(self.name)


def is_organ(name: str) -> bool:
    lowered = name.lower()
    return not any(word in lowered for word in NON_ORGAN_WORDS)


def is_ct(array: np.ndarray, modality: str = "") -> bool:
    """CT by DICOM Modality, or (NIfTI, no modality) a volume minimum <= -500."""
    if modality:
        return modality.upper() == "CT"
    return float(np.min(array)) <= -500


def windowed_volume_u8(array: np.ndarray, modality: str = "") -> tuple[np.ndarray, tuple[float, float]]:
    """(uint8 volume, (low, high)) as LiteMedSAM's pre_CT_MR.py prepares it.

    CT: clip to [-160, 240]; MR: clip to the 0.5/99.5 percentiles of the nonzero voxels. Then
    (x - min) / (max - min) * 255 over the clipped volume, MR voxels that were 0 set back to 0,
    np.uint8 (truncation).
    """
    data = np.asarray(array, dtype=np.float64)
    ct = is_ct(array, modality)
    if ct:
        low, high = CT_WINDOW
    else:
        nonzero = data[data != 0]
        values = nonzero if nonzero.size else data.ravel()
        low, high = (float(v) for v in np.percentile(values, MR_PERCENTILES))
    clipped = np.clip(data, low, high)
    lo, hi = float(clipped.min()), float(clipped.max())
    scaled = (clipped - lo) / max(hi - lo, 1e-8) * 255.0
    if not ct:
        scaled[data == 0] = 0
    return scaled.astype(np.uint8), (float(low), float(high))


def plane_slice(array: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The raw 2-D slice of a (z, y, x) array along an array axis (no display flips)."""
    return np.take(array, index, axis=axis)


def select_items(labels_zyx: np.ndarray, names: dict[int, str], axis: int = 0, plane: str = "axial",
                 min_pixels: int = MIN_ITEM_PIXELS) -> tuple[list[Item], list[dict]]:
    """(items, skipped): per label value > 0, its slice with the most pixels along array `axis`
    (the axis of `plane`: core.geometry.plane_array_axis; ties: lowest index); a label whose best
    count is below `min_pixels` is skipped (and reported as such)."""
    other = tuple(a for a in range(3) if a != axis)
    items, skipped = [], []
    for value in sorted(int(v) for v in np.unique(labels_zyx) if v > 0):
        counts = np.count_nonzero(labels_zyx == value, axis=other)
        best = int(np.argmax(counts))  # argmax returns the first (lowest) index on ties
        name = names.get(value, f"label {value}")
        if counts[best] < min_pixels:
            skipped.append({"label": value, "name": name, "slice": best, "pixels": int(counts[best])})
            continue
        items.append(Item(value, name, plane, best, int(counts[best])))
    return items, skipped


def tight_box_xyxy(mask_hw: np.ndarray) -> np.ndarray:
    """[x_min, y_min, x_max, y_max] pixel indices of a non-empty mask (x = column)."""
    rows = np.flatnonzero(mask_hw.any(axis=1))
    cols = np.flatnonzero(mask_hw.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.int64)


def pieces_to_box(mask_hw: np.ndarray, at_most: int, min_share: float = 0.1) -> list[np.ndarray]:
    """The connected pieces (8-connected) of a slice's mask a user boxes one by one, largest first:
    those of at least `min_share` of the largest piece's area, `at_most` of them. Smaller pieces
    are left to the clicks."""
    from scipy.ndimage import label

    labelled, count = label(np.asarray(mask_hw, bool), structure=np.ones((3, 3), bool))
    if count == 0:
        return []
    areas = np.bincount(labelled.ravel())[1:]
    order = [int(i) for i in np.argsort(-areas, kind="stable") if areas[i] >= min_share * areas.max()]
    return [labelled == i + 1 for i in order[:at_most]]


def _bordered_edt(mask_hw: np.ndarray) -> np.ndarray:
    """EDT of a mask computed with a one-pixel False border, so the image edge counts as boundary."""
    from scipy.ndimage import distance_transform_edt

    padded = np.pad(np.asarray(mask_hw, bool), 1, constant_values=False)
    return distance_transform_edt(padded)[1:-1, 1:-1]


def next_click(pred_hw: np.ndarray, truth_hw: np.ndarray) -> tuple[int, int, bool] | None:
    """(x, y, positive) of the simulated corrective click, or None when the mask is perfect.

    The pixel deepest inside either error region (FN = truth and not predicted, FP = predicted and
    not truth); ties: FN before FP, then the first in row-major order. Positive if it is in FN.
    """
    pred = np.asarray(pred_hw, bool)
    truth = np.asarray(truth_hw, bool)
    fn, fp = truth & ~pred, pred & ~truth
    if not fn.any() and not fp.any():
        return None
    d_fn, d_fp = _bordered_edt(fn), _bordered_edt(fp)
    best_fn, best_fp = float(d_fn.max()), float(d_fp.max())
    if best_fn >= best_fp:
        row, col = np.unravel_index(int(np.argmax(d_fn)), d_fn.shape)
        return int(col), int(row), True
    row, col = np.unravel_index(int(np.argmax(d_fp)), d_fp.shape)
    return int(col), int(row), False


def clicks_to_reach(dice_per_step: list[float], threshold: float, max_clicks: int) -> int:
    """NoC: prompts until Dice >= threshold (the box counts 1, each click 1); never -> K + 2."""
    for step, value in enumerate(dice_per_step):
        if value >= threshold:
            return step + 1
    return max_clicks + 2
