"""FakeEngine: a deterministic PromptEngine for tests of the GUI's own behaviour (delays, errors,
threading). It draws discs and ellipses, not anatomy; end-to-end tests use the real models."""

from __future__ import annotations

import threading
import time

import numpy as np

from annotator.engine.api import EngineError, ImageEmbedding, MaskPrediction, ProgressFn


def _interruptible_sleep(seconds: float, cancel: threading.Event | None) -> bool:
    """Sleep; True if `cancel` was set meanwhile."""
    if seconds <= 0:
        return bool(cancel is not None and cancel.is_set())
    if cancel is None:
        time.sleep(seconds)
        return False
    return cancel.wait(seconds)


class FakeEngine:
    """Masks from prompts alone: a box gives the ellipse inscribed in it; points give discs of
    `radius_px` around positive clicks minus discs around negative ones. multimask gives three
    candidates (radius x0.5, x1, x1.5) with scores 0.6, 0.9, 0.7.

    embed_delay_s / predict_delay_s: simulated compute time (embed honours `cancel`).
    fail_embed / fail_predict: an exception instance to raise (EngineError by default type).
    Counters embed_calls / predict_calls are thread-safe.
    """

    model_sha256 = "0" * 64
    preprocess_version = 1
    device = "cpu"
    runtime = "fake"

    def __init__(self, *, embed_delay_s: float = 0.0, predict_delay_s: float = 0.0, radius_px: float = 6.0,
                 prompt_kind: str = "box", model_id: str = "fake") -> None:
        self.embed_delay_s = embed_delay_s
        self.predict_delay_s = predict_delay_s
        self.radius_px = radius_px
        self.prompt_kind = prompt_kind
        self.model_id = model_id
        self.fail_embed: Exception | None = None
        self.fail_predict: Exception | None = None
        self.embed_calls = 0
        self.predict_calls = 0
        self.threads: set[str] = set()  # names of the threads that ran the model
        self._lock = threading.Lock()

    def embed(self, image_hw3_u8: np.ndarray, *, cancel: threading.Event | None = None,
              progress: ProgressFn | None = None) -> ImageEmbedding:
        if image_hw3_u8.ndim != 3 or image_hw3_u8.shape[2] != 3 or image_hw3_u8.dtype != np.uint8:
            raise ValueError(f"expected (H, W, 3) uint8, got {image_hw3_u8.shape} {image_hw3_u8.dtype}")
        with self._lock:
            self.embed_calls += 1
            self.threads.add(threading.current_thread().name)
        if progress is not None:
            progress(0, 1)
        if _interruptible_sleep(self.embed_delay_s, cancel):
            from annotator.engine.service import EmbeddingCancelled

            raise EmbeddingCancelled("fake embedding cancelled")
        if self.fail_embed is not None:
            raise self.fail_embed
        if progress is not None:
            progress(1, 1)
        h, w = image_hw3_u8.shape[:2]
        features = image_hw3_u8[..., 0].astype(np.float32)[None, None, :: max(1, h // 16), :: max(1, w // 16)]
        return ImageEmbedding(features=features, original_size=(h, w), input_size=(h, w), model_id=self.model_id)

    def predict(self, embedding: ImageEmbedding, *, points_xy: np.ndarray | None = None,
                point_labels: np.ndarray | None = None, box_xyxy: np.ndarray | None = None,
                mask_input: np.ndarray | None = None, multimask: bool = True) -> MaskPrediction:
        if embedding.model_id != self.model_id:
            raise EngineError(f"embedding made by {embedding.model_id!r}, not {self.model_id!r}")
        with self._lock:
            self.predict_calls += 1
            self.threads.add(threading.current_thread().name)
        _interruptible_sleep(self.predict_delay_s, None)
        if self.fail_predict is not None:
            raise self.fail_predict
        h, w = embedding.original_size
        rows, cols = np.mgrid[0:h, 0:w]
        factors = (0.5, 1.0, 1.5) if multimask else (1.0,)
        masks = []
        for factor in factors:
            mask = np.zeros((h, w), dtype=bool)
            if box_xyxy is not None:
                x0, y0, x1, y1 = (float(v) for v in np.asarray(box_xyxy).ravel()[:4])
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                ax, ay = max((x1 - x0) / 2 * factor, 0.5), max((y1 - y0) / 2 * factor, 0.5)
                mask |= ((cols - cx) / ax) ** 2 + ((rows - cy) / ay) ** 2 <= 1.0
            if points_xy is not None and len(points_xy):
                labels = np.ones(len(points_xy)) if point_labels is None else np.asarray(point_labels)
                radius = self.radius_px * factor
                for (x, y), positive in zip(np.asarray(points_xy), labels, strict=True):
                    disc = (cols - x) ** 2 + (rows - y) ** 2 <= radius**2
                    mask = mask | disc if positive else mask & ~disc
            masks.append(mask)
        scores = np.array([0.6, 0.9, 0.7] if multimask else [0.9], dtype=np.float32)
        logits = np.zeros((len(masks), 64, 64), dtype=np.float32)
        return MaskPrediction(masks=np.stack(masks), scores=scores, low_res_logits=logits)
