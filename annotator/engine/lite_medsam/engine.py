"""LiteMedSamEngine: the default PromptEngine, a box-prompted SAM with a small TinyViT encoder that
segments real scans on a laptop CPU with weights that ship inside a pip package."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from annotator.engine.api import EngineError, ImageEmbedding, MaskPrediction, ProgressFn
from annotator.engine.lite_medsam import preprocess

log = logging.getLogger(__name__)

# Takes the (1, 3, 256, 256) float32 model input, returns (1, 256, 64, 64) float32 features.
EncoderFn = Callable[..., np.ndarray]  # (x) -> features; also cancel= where it says accepts_cancel


class LiteMedSamEngine:
    """PromptEngine over LiteMedSAM. Box prompts are what it was trained on (prompt_kind="box");
    points and mask_input are accepted (SAM's decoder takes them) but the click strategy decides
    how clicks are used, because fed as points they make LiteMedSAM's masks worse."""

    prompt_kind = "box"
    preprocess_version = preprocess.PREPROCESS_VERSION

    def __init__(self, module: Any, *, model_id: str, model_sha256: str, device: str,
                 checkpoint: Path | None = None) -> None:
        self._module = module
        self.model_id = model_id
        self.model_sha256 = model_sha256
        self.device = device
        self.checkpoint = checkpoint
        self.runtime = "torch-fp32"
        self._encoder: EncoderFn = self._torch_encode
        self.runtime_pending = False  # True: the runtime check has not run on this machine yet
        self._prompt_runner = None  # issue 8: runtime.prompt_path.PromptRunner replacing the torch prompt path
        self._lock = threading.Lock()  # predict/embed may be called from the executor and tests

    @classmethod
    def load(cls, checkpoint: str | Path | None = None, device: str = "auto", runtime: str = "auto",
             *, expected_sha256: str | None = None) -> LiteMedSamEngine:
        """Bundled weights when checkpoint is None (hash-checked), else a LiteMedSAM-architecture file."""
        from annotator.engine.device import pick_device
        from annotator.engine.lite_medsam.model import load_model

        # issue 8 (runtime layer): malloc tuning first, then the encoder goes on the fastest
        # runtime that passes its self-check here ("auto"), or the one asked for.
        from annotator.engine.runtime.lite_medsam_runtime import accelerate_lite_medsam
        from annotator.engine.runtime.malloc import tune_malloc

        tune_malloc()
        device = pick_device(device)  # CUDA, else MPS, else CPU; unknown or missing devices refused
        loaded = load_model(checkpoint, expected_sha256=expected_sha256, device=device)
        model_id = "lite-medsam" if loaded.bundled else f"lite-medsam:{loaded.sha256[:12]}"
        engine = cls(loaded.module, model_id=model_id, model_sha256=loaded.sha256, device=device,
                     checkpoint=loaded.checkpoint)
        if runtime == "auto-stored":
            # The fast runtime only if an earlier check on this machine chose it; otherwise torch
            # now, and `runtime_pending` tells the caller to run the check in the background.
            engine.runtime_pending = accelerate_lite_medsam(engine, "auto", stored_only=True) is None
        elif runtime not in ("torch", "torch-fp32"):
            accelerate_lite_medsam(engine, runtime)
        return engine

    # -- the encoder: one method, so another runtime (issue 8) can take its place ------------------
    @property
    def torch_module(self) -> Any:
        """The assembled torch module (image_encoder, prompt_encoder, mask_decoder), e.g. for export."""
        return self._module

    def set_encoder(self, encoder: EncoderFn, runtime: str) -> None:
        """Replace the image encoder call (e.g. an ONNX Runtime / OpenVINO session); `runtime` names it
        in every EmbeddingKey so embeddings of different runtimes never mix in the cache."""
        self._encoder = encoder
        self.runtime = runtime

    def set_prompt_runner(self, runner: Any) -> None:
        """Run prompt encoder + mask decoder through `runner` (runtime.prompt_path.PromptRunner,
        checked equal to torch at selection); None restores the torch modules."""
        self._prompt_runner = runner

    def encode(self, model_input_1x3: np.ndarray, cancel: threading.Event | None = None) -> np.ndarray:
        """(1, 3, 256, 256) float32 -> (1, 256, 64, 64) float32 through the current runtime; a set
        `cancel` interrupts runtimes that can stop mid-run (EmbeddingCancelled)."""
        from annotator.engine.runtime.base import run_encoder

        features = np.asarray(run_encoder(self._encoder, model_input_1x3, cancel), dtype=np.float32)
        if features.ndim != 4 or features.shape[:2] != (1, 256):
            raise EngineError(f"encoder returned features of shape {features.shape}, expected (1, 256, h, w)")
        return features

    def _torch_encode(self, model_input_1x3: np.ndarray, cancel: threading.Event | None = None) -> np.ndarray:
        import torch

        from annotator.engine.runtime.torch_interrupt import interruptible

        encoder = self._module.image_encoder
        with torch.inference_mode(), interruptible(encoder, cancel):
            x = torch.from_numpy(model_input_1x3).to(self.device)
            return encoder(x).float().cpu().numpy()

    _torch_encode.accepts_cancel = True  # type: ignore[attr-defined]

    # -- PromptEngine ---------------------------------------------------------------------------
    def embed(self, image_hw3_u8: np.ndarray, *, cancel: threading.Event | None = None,
              progress: ProgressFn | None = None) -> ImageEmbedding:
        try:
            image = preprocess.as_rgb_u8(image_hw3_u8)
        except ValueError as exc:
            raise EngineError(str(exc)) from exc
        if cancel is not None and cancel.is_set():
            # The service's own outcome type: the executor reports it as "cancelled", not an error.
            from annotator.engine.service import EmbeddingCancelled

            raise EmbeddingCancelled("embedding cancelled before the encoder started")
        if progress is not None:
            progress(0, 1)
        model_input, input_size = preprocess.model_input(image)
        with self._lock:
            features = self.encode(model_input, cancel)
        if progress is not None:
            progress(1, 1)
        return ImageEmbedding(features=features, original_size=(int(image.shape[0]), int(image.shape[1])),
                              input_size=input_size, model_id=self.model_id)

    def predict(self, embedding: ImageEmbedding, *, points_xy: np.ndarray | None = None,
                point_labels: np.ndarray | None = None, box_xyxy: np.ndarray | None = None,
                mask_input: np.ndarray | None = None, multimask: bool = True) -> MaskPrediction:
        """One mask (LiteMedSAM was trained single-mask, so `multimask` is ignored: its other heads
        are untrained). Prompts are in slice pixels and scaled like the reference's boxes."""
        import torch

        if embedding.model_id != self.model_id:
            raise EngineError(f"embedding made by {embedding.model_id!r}, not {self.model_id!r}")
        has_points = points_xy is not None and len(points_xy) > 0
        if box_xyxy is None and not has_points:
            raise EngineError("LiteMedSAM needs a box (or at least one point)")
        size = (int(embedding.original_size[0]), int(embedding.original_size[1]))
        with self._lock, torch.inference_mode():
            module = self._module
            features = torch.from_numpy(np.asarray(embedding.features, dtype=np.float32)).to(self.device)
            points = None
            if has_points:
                coords = preprocess.to_model_coords(np.asarray(points_xy, dtype=np.float64).reshape(-1, 2), size)
                labels = np.asarray(point_labels if point_labels is not None else np.ones(len(coords)))
                points = (torch.as_tensor(coords[None], dtype=torch.float32, device=self.device),
                          torch.as_tensor(labels.reshape(1, -1), dtype=torch.int64, device=self.device))
            boxes = None
            if box_xyxy is not None:
                box = preprocess.to_model_coords(preprocess.clip_box_xyxy(box_xyxy, size), size)
                boxes = torch.as_tensor(box[None, None], dtype=torch.float32, device=self.device)
            masks = None
            if mask_input is not None:
                masks = torch.as_tensor(np.asarray(mask_input, dtype=np.float32).reshape(1, 1, *np.shape(mask_input)[-2:]),
                                        device=self.device)
            if self._prompt_runner is not None:  # issue 8: the same prompt path on ONNX Runtime/OpenVINO
                low_res, iou = (torch.from_numpy(a) for a in self._prompt_runner.predict(
                    embedding.features, points_xy=coords if has_points else None,
                    point_labels=labels if has_points else None,
                    box_xyxy=box if box_xyxy is not None else None, mask_input=mask_input, multimask=False))
            else:
                sparse, dense = module.prompt_encoder(points=points, boxes=boxes, masks=masks)
                low_res, iou = module.mask_decoder(
                    image_embeddings=features, image_pe=module.prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False,
                )
            logits = preprocess.upsample_logits(low_res, embedding.input_size, size)
            mask = preprocess.masks_from_logits(logits)[0]
        return MaskPrediction(masks=mask.astype(bool), scores=iou[0].float().cpu().numpy(),
                              low_res_logits=low_res[0].float().cpu().numpy())
