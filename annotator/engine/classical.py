"""ClassicalEngine: a weights-free PromptEngine (intensity region growing + marker watershed on the
windowed slice), so the app segments before any checkpoint is configured, and where torch is absent."""

from __future__ import annotations

import hashlib
import threading

import numpy as np

from annotator.engine.api import ImageEmbedding, MaskPrediction, ProgressFn

ALGORITHM_VERSION = 1
LOW_RES = 256
# Intensity tolerance multipliers (times the local spread at the seeds) of the 3 multimask
# candidates: tight, default, loose.
TOLERANCE_STEPS = (1.5, 2.5, 4.0)
MIN_TOLERANCE = 8.0  # grey levels (of 255): a perfectly flat seed region still grows
OPENING_ITERATIONS = 1
RIM_PIXELS = 2
LEAK_FRACTION = 0.3
LEAK_PENALTY = 0.25
_DISK = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
_SQUARE = np.ones((3, 3), dtype=bool)


class ClassicalEngine:
    """Region growing from the clicked points within the current window, split by watershed.

    - "Embedding" = the slice smoothed (Gaussian, sigma 1) and its gradient magnitude: cheap.
    - Positive points are seeds: the structure is the connected set of pixels whose smoothed
      intensity lies within a tolerance of the seeds' intensity (tolerance from the spread of a
      5x5 patch around each seed). A box restricts everything to its inside; a box alone seeds
      from its central part.
    - Negative points become background markers: when a negative click lies in the grown region,
      a marker watershed on the gradient separates it from the positive seeds.
    - Holes are filled. multimask returns tight/default/loose tolerances, scored by stability
      (IoU with the neighbouring tolerances, as SAM's stability score).
    """

    model_id = "classical-region-grow"
    model_sha256 = hashlib.sha256(f"classical-region-grow-v{ALGORITHM_VERSION}".encode()).hexdigest()
    preprocess_version = ALGORITHM_VERSION
    device = "cpu"
    runtime = "numpy"
    prompt_kind = "points"
    description = "classical region growing (no model weights)"

    def embed(self, image_hw3_u8: np.ndarray, *, cancel: threading.Event | None = None,
              progress: ProgressFn | None = None) -> ImageEmbedding:
        from scipy import ndimage

        if image_hw3_u8.ndim != 3 or image_hw3_u8.shape[2] != 3 or image_hw3_u8.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {image_hw3_u8.shape} {image_hw3_u8.dtype}")
        gray = image_hw3_u8.astype(np.float32).mean(axis=2)
        smooth = ndimage.gaussian_filter(gray, sigma=1.0)
        gradient = np.hypot(ndimage.sobel(smooth, axis=0), ndimage.sobel(smooth, axis=1)).astype(np.float32)
        size = (int(gray.shape[0]), int(gray.shape[1]))
        return ImageEmbedding(features=smooth[None].astype(np.float32), original_size=size, input_size=size,
                              model_id=self.model_id, extras={"gradient": gradient})

    def predict(self, embedding: ImageEmbedding, *, points_xy: np.ndarray | None = None,
                point_labels: np.ndarray | None = None, box_xyxy: np.ndarray | None = None,
                mask_input: np.ndarray | None = None, multimask: bool = True) -> MaskPrediction:
        """Masks for the prompts; mask_input is accepted for API symmetry and not used (the
        result depends only on the current clicks and box, which the caller accumulates)."""
        smooth = np.asarray(embedding.features[0], dtype=np.float32)
        gradient = np.asarray(embedding.extras["gradient"], dtype=np.float32)
        height, width = smooth.shape
        roi = np.ones((height, width), dtype=bool)
        if box_xyxy is not None:
            x0, y0, x1, y1 = np.asarray(box_xyxy, dtype=np.float64).reshape(4)
            c0, c1 = int(np.clip(np.floor(min(x0, x1)), 0, width - 1)), int(np.clip(np.ceil(max(x0, x1)), 0, width - 1))
            r0, r1 = int(np.clip(np.floor(min(y0, y1)), 0, height - 1)), int(np.clip(np.ceil(max(y0, y1)), 0, height - 1))
            roi[:] = False
            roi[r0:r1 + 1, c0:c1 + 1] = True
        positives, negatives = _split_points(points_xy, point_labels, height, width)
        if not positives and box_xyxy is not None:
            positives = _box_core_seeds(roi)
        if not positives:
            raise ValueError("predict needs a positive point or a box")
        level, spread = _seed_statistics(smooth, positives)
        steps = TOLERANCE_STEPS if multimask else (TOLERANCE_STEPS[1],)
        masks = [_grow(smooth, gradient, roi, positives, negatives, level, max(k * spread, MIN_TOLERANCE))
                 for k in steps]
        if multimask:
            scores = _stability_scores(masks, smooth, gradient, roi, positives, negatives, level, spread)
        else:
            scores = np.array([_stability_scores([masks[0]], smooth, gradient, roi, positives, negatives, level,
                                                 spread, steps=(TOLERANCE_STEPS[1],))[0]], dtype=np.float32)
        stack = np.stack(masks)
        return MaskPrediction(masks=stack, scores=scores.astype(np.float32), low_res_logits=_low_res_logits(stack))


def _split_points(points_xy: np.ndarray | None, point_labels: np.ndarray | None, height: int, width: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(row, col) seeds inside the image, positives and negatives."""
    positives: list[tuple[int, int]] = []
    negatives: list[tuple[int, int]] = []
    if points_xy is None or len(points_xy) == 0:
        return positives, negatives
    points = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    labels = np.ones(len(points), dtype=int) if point_labels is None else np.asarray(point_labels).reshape(-1)
    if len(labels) != len(points):
        raise ValueError("point_labels must give one label per point")
    for (x, y), label in zip(points, labels, strict=False):
        row, col = int(round(y)), int(round(x))
        if 0 <= row < height and 0 <= col < width:
            (positives if label > 0 else negatives).append((row, col))
    return positives, negatives


def _box_core_seeds(roi: np.ndarray) -> list[tuple[int, int]]:
    rows, cols = np.nonzero(roi)
    r_mid, c_mid = (rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2
    return [(int(r_mid), int(c_mid))]


def _seed_statistics(smooth: np.ndarray, seeds: list[tuple[int, int]]) -> tuple[float, float]:
    """Mean intensity and spread (std) of 5x5 patches around the seeds."""
    patches = []
    for row, col in seeds:
        patches.append(smooth[max(row - 2, 0):row + 3, max(col - 2, 0):col + 3].ravel())
    values = np.concatenate(patches)
    return float(values.mean()), float(values.std())


def _grow(smooth: np.ndarray, gradient: np.ndarray, roi: np.ndarray, positives: list[tuple[int, int]],
          negatives: list[tuple[int, int]], level: float, tolerance: float) -> np.ndarray:
    from scipy import ndimage

    candidate = roi & (np.abs(smooth - level) <= tolerance)
    # An opening cuts the thin bridges through which growth leaks into neighbouring tissue of
    # similar intensity; seeds it removes fall back to the unopened candidate.
    opened = ndimage.binary_opening(candidate, structure=_DISK, iterations=OPENING_ITERATIONS)
    region = np.zeros_like(candidate)
    for source in (opened, candidate):
        labels, _ = ndimage.label(source)
        keep = {labels[r, c] for r, c in positives if not region[r, c]} - {0}
        region |= np.isin(labels, list(keep))
    for row, col in positives:
        region[row, col] = True
    # Give back what the opening shaved off (corners, thin rims) without re-opening the bridges:
    # a few steps of dilation constrained to the candidate.
    region = ndimage.binary_dilation(region, structure=_SQUARE, iterations=OPENING_ITERATIONS + 1,
                                     mask=candidate) | region
    from skimage.segmentation import watershed

    # Snap the rim to the strongest edge: a marker watershed on the gradient decides a thin ring
    # around the grown region (tolerance alone stops short of blurred boundaries).
    ring_outer = ndimage.binary_dilation(region, structure=_SQUARE, iterations=RIM_PIXELS)
    markers = np.zeros(region.shape, dtype=np.int32)
    markers[ndimage.binary_erosion(region, structure=_DISK)] = 1
    for r, c in positives:
        markers[r, c] = 1
    markers[roi & ~ring_outer] = 2
    region = watershed(gradient, markers, mask=roi) == 1
    touched = [(r, c) for r, c in negatives if region[r, c]]
    if touched:
        # Split at the narrowest neck between positive and negative clicks (touching structures
        # of equal intensity have no edge between them, but usually a waist).
        split_markers = np.zeros(region.shape, dtype=np.int32)
        for r, c in positives:
            split_markers[r, c] = 1
        for r, c in touched:
            split_markers[r, c] = 2
        depth = ndimage.distance_transform_edt(region)
        region = watershed(-depth, split_markers, mask=region) == 1
    region = ndimage.binary_fill_holes(region) & roi
    return region


def _stability_scores(masks: list[np.ndarray], smooth: np.ndarray, gradient: np.ndarray, roi: np.ndarray,
                      positives: list[tuple[int, int]], negatives: list[tuple[int, int]], level: float,
                      spread: float, steps: tuple[float, ...] = TOLERANCE_STEPS) -> np.ndarray:
    """IoU of each mask with masks grown at 0.8x and 1.25x its tolerance: stable masks score high."""
    scores = []
    for mask, k in zip(masks, steps, strict=False):
        tolerance = max(k * spread, MIN_TOLERANCE)
        tighter = _grow(smooth, gradient, roi, positives, negatives, level, tolerance * 0.8)
        looser = _grow(smooth, gradient, roi, positives, negatives, level, tolerance * 1.25)
        union = np.logical_or(looser, mask).sum()
        stability = float(np.logical_and(tighter, mask).sum() / union) if union else 0.0
        # A region filling most of the search area is usually a leak, not the clicked structure.
        fraction = mask.sum() / max(1, roi.sum())
        scores.append(stability * (1.0 if fraction <= LEAK_FRACTION else LEAK_PENALTY))
    return np.array(scores, dtype=np.float32)


def _low_res_logits(masks: np.ndarray) -> np.ndarray:
    """(C, 256, 256) float32 logits (+8 inside, -8 outside), resampled like SAM's low-res frame."""
    from scipy import ndimage

    count, height, width = masks.shape
    out = np.empty((count, LOW_RES, LOW_RES), dtype=np.float32)
    for i in range(count):
        fraction = ndimage.zoom(masks[i].astype(np.float32), (LOW_RES / height, LOW_RES / width), order=1)
        fraction = fraction[:LOW_RES, :LOW_RES]
        padded = np.zeros((LOW_RES, LOW_RES), dtype=np.float32)
        padded[:fraction.shape[0], :fraction.shape[1]] = fraction
        out[i] = (padded - 0.5) * 16.0
    return out
