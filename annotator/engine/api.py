"""The PromptEngine protocol and its plain-data inputs/outputs: the expensive embed is separate from the cheap predict."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

ProgressFn = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class EmbeddingKey:
    """Everything that makes an embedding reusable; any difference is a cache miss.

    content_id:     hash of the source voxels + geometry (Volume.content_id), or of the 2-D image
    plane / slice_index: which slice ("axial"/"coronal"/"sagittal" or "image" for 2-D input)
    window:         (low, high) intensity window applied before encoding
    model_id / model_sha256: which weights
    preprocess_version: bumped whenever our preprocessing of that model changes
    runtime:        runtime + precision that produced the features ("torch-fp32", "openvino-bf16")
    """

    content_id: str
    plane: str
    slice_index: int
    window: tuple[float, float]
    model_id: str
    model_sha256: str
    preprocess_version: int
    runtime: str = "torch-fp32"

    def signature(self) -> str:
        """Hex digest identifying this key; stored beside cached features and checked on load."""
        payload = json.dumps(asdict(self), sort_keys=True, default=list).encode()
        return hashlib.sha256(payload).hexdigest()


@dataclass(frozen=True)
class ImageEmbedding:
    """Encoder output plus what predict needs to map prompts and masks to the original slice.

    features:      model-specific array, e.g. (1, 256, 64, 64) float32 (float16 when cached)
    original_size: (H, W) of the slice given to embed
    input_size:    (h, w) of the slice after the model's resize, before padding
    model_id:      the engine that produced it (predict refuses another model's embedding)
    extras:        further arrays some models need (e.g. intermediate features)
    """

    features: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    model_id: str
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return int(self.features.nbytes + sum(a.nbytes for a in self.extras.values()))


@dataclass(frozen=True)
class MaskPrediction:
    """masks (C, H, W) bool at the original slice size; scores (C,) predicted IoU;
    low_res_logits (C, h, w) float32 logits in the model's low-res frame (feed back as mask_input)."""

    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray

    @property
    def best_index(self) -> int:
        return int(np.argmax(self.scores))

    @property
    def best_mask(self) -> np.ndarray:
        return self.masks[self.best_index]


class EngineError(Exception):
    """The engine could not run a request (bad checkpoint, wrong embedding, device failure)."""


@runtime_checkable
class PromptEngine(Protocol):
    """A promptable segmentation model. Implementations keep no per-image state between calls."""

    model_id: str
    model_sha256: str
    preprocess_version: int
    device: str
    runtime: str
    # "box" for box-trained models (LiteMedSAM), "points" for point-trained ones (SAM, MedSAM);
    # the click strategy reads it to decide how corrective clicks are applied.
    prompt_kind: str

    def embed(self, image_hw3_u8: np.ndarray, *, cancel: threading.Event | None = None,
              progress: ProgressFn | None = None) -> ImageEmbedding:
        """Encode one (H, W, 3) uint8 slice (already windowed). The expensive step."""
        ...

    def predict(self, embedding: ImageEmbedding, *, points_xy: np.ndarray | None = None,
                point_labels: np.ndarray | None = None, box_xyxy: np.ndarray | None = None,
                mask_input: np.ndarray | None = None, multimask: bool = True) -> MaskPrediction:
        """Masks for prompts in original-slice pixels (x = column, y = row). The cheap step.

        points_xy (N, 2) float; point_labels (N,) 1 positive / 0 negative; box_xyxy (4,) inclusive
        pixel corners; mask_input (1, h, w) low-res logits of a previous prediction.
        """
        ...


def engine_summary(engine: object) -> str:
    """One line naming the model and how it runs, e.g. "lite-medsam on openvino-bf16mix (cpu)":
    what the command line prints wherever it names the model (issue 8)."""
    text = f"{getattr(engine, 'model_id', type(engine).__name__)}"
    runtime, device = getattr(engine, "runtime", ""), getattr(engine, "device", "")
    if runtime:
        text += f" on {runtime}"
    if device:
        text += f" ({device})"
    return text
