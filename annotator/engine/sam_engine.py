"""SamEngine: segment-anything (ViT-B/L/H) and MedSAM checkpoints behind the PromptEngine protocol.

It converts between our explicit ImageEmbedding and the model; no "current image" lives in the
adapter beyond a memo of the last embedding's device tensor (same object -> no re-upload).
SAM preprocessing is SamPredictor's (longest side to 1024, pixel mean/std, pad); MedSAM's is its
own (bowang-lab/MedSAM MedSAM_Inference.py: bicubic resize of the whole slice to 1024x1024,
min-max to [0, 1], no mean/std, no padding; prompts scaled by 1024/W and 1024/H; single mask,
sigmoid probabilities upsampled bilinearly to the slice and thresholded at 0.5).
"""

from __future__ import annotations

import copy
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from annotator.engine.api import EngineError, ImageEmbedding, MaskPrediction, ProgressFn
from annotator.engine.service import EmbeddingCancelled

log = logging.getLogger(__name__)

PREPROCESS_VERSION = {"sam": 1, "medsam": 1}


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {shape} {getattr(image, 'dtype', type(image))}")


class SamEngine:
    """PromptEngine over a segment_anything Sam model (prompt_kind "points"; MedSAM: "box").

    Build with SamEngine.load(checkpoint) or directly from a Sam model (tests). One instance is
    meant to be driven by one thread (the executor's worker); a lock makes concurrent use safe.
    """


    def __init__(self, model: Any, *, model_id: str, model_sha256: str, flavour: str = "sam",
                 device: str = "cpu", half: bool = False, description: str = "") -> None:
        import torch

        from annotator.engine._torchvision_compat import ensure_torchvision

        ensure_torchvision()
        from segment_anything.utils.transforms import ResizeLongestSide

        if flavour not in PREPROCESS_VERSION:
            raise EngineError(f"unknown SAM flavour {flavour!r}; expected sam or medsam")
        self.model = model.to(device).eval()
        self.model_id = model_id
        self.model_sha256 = model_sha256
        self.flavour = flavour
        self.preprocess_version = PREPROCESS_VERSION[flavour]
        self.device = device
        self.half = bool(half)
        self.runtime = "torch-fp16" if self.half else "torch-fp32"
        self.prompt_kind = "box" if flavour == "medsam" else "points"
        self.description = description or f"{model_id} ({flavour})"
        self.img_size = int(model.image_encoder.img_size)
        self._transform = ResizeLongestSide(self.img_size)
        self._torch = torch
        self._lock = threading.RLock()
        self._memo: tuple[ImageEmbedding, Any] | None = None  # (embedding, features on device)
        self._dense_pe: Any = None  # constant for given weights; SamPredictor recomputes it per click
        self._encoder: Any = None  # None: the torch image encoder; else a runtime's (see set_encoder)
        self._prompt_runner: Any = None  # issue 8: runtime.prompt_path.PromptRunner, else torch
        # cached features of these runtimes are usable too (fp16 GPU <-> fp32 CPU fallback);
        # emptied when another runtime's encoder takes over, so its embeddings never mix with torch's
        self.accepts_runtimes: tuple[str, ...] = ("torch-fp32", "torch-fp16")
        self.runtime_pending = False  # True: the runtime check has not run on this machine yet

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def load(cls, checkpoint: str | Path, *, device: str = "auto", precision: str = "auto",
             flavour: str = "auto", runtime: str = "torch") -> SamEngine:
        """Load a SAM/MedSAM checkpoint (weights only), detect its size, pick the device.

        runtime (CPU only; issue 8): "torch" keeps the reference; "auto" puts the encoder and
        prompt path on the fastest runtime that passes its self-check here (first use: export,
        compile and check, minutes for ViT-B; stored afterwards); "auto-stored" only uses a choice
        stored earlier (runtime_pending tells the caller to run the check in the background);
        a runtime or exact variant ("openvino", "onnxruntime-fp32") forces it.
        """
        from annotator.engine.checkpoints import load_sam_checkpoint
        from annotator.engine.device import describe_device, pick_device, use_half

        loaded = load_sam_checkpoint(checkpoint, flavour=flavour)
        chosen = pick_device(device)
        half = use_half(chosen, precision)
        model_id = loaded.known.name if loaded.known else f"{loaded.flavour}-{loaded.architecture.name}"
        engine = cls(loaded.model, model_id=model_id, model_sha256=loaded.sha256, flavour=loaded.flavour,
                     device=chosen, half=half,
                     description=f"{loaded.display_name} on {describe_device(chosen, half)}")
        log.info("loaded %s", engine.description)
        if engine.device == "cpu" and runtime not in ("torch", "torch-fp32"):
            from annotator.engine.runtime.sam_runtime import accelerate_sam

            if runtime == "auto-stored":
                engine.runtime_pending = accelerate_sam(engine, "auto", stored_only=True) is None
            else:
                accelerate_sam(engine, runtime)
        return engine

    def cpu_fallback(self) -> SamEngine:
        """A CPU copy for requests that ran out of GPU memory (the executor calls this once)."""
        model = copy.deepcopy(self.model).float().to("cpu")
        return SamEngine(model, model_id=self.model_id, model_sha256=self.model_sha256, flavour=self.flavour,
                         device="cpu", half=False, description=f"{self.description} [CPU fallback]")

    # ---- the encoder: one method, so another runtime (issue 8) can take its place -------------
    @property
    def torch_module(self) -> Any:
        """The segment_anything Sam (image_encoder, prompt_encoder, mask_decoder), e.g. for export."""
        return self.model

    def set_encoder(self, encoder: Any, runtime: str) -> None:
        """Replace the image encoder call: (1, 3, S, S) float32 numpy -> (1, 256, S/16, S/16).

        `runtime` (e.g. "openvino-bf16") becomes part of every EmbeddingKey, so embeddings of
        different runtimes never mix in the cache. The input is already preprocessed (SAM: mean/std
        and padding; MedSAM: [0, 1]).
        """
        self._encoder = encoder
        self.runtime = runtime
        self.half = False
        self.accepts_runtimes = ()
        self.description = f"{self.description.split(' [')[0]} [{runtime}]"

    def set_prompt_runner(self, runner: Any) -> None:
        """Run prompt encoder + mask decoder through `runner` (runtime.prompt_path.PromptRunner,
        checked equal to torch at selection); None restores the torch modules."""
        self._prompt_runner = runner

    def _run_encoder(self, x: Any, cancel: threading.Event | None = None) -> Any:
        torch = self._torch
        if self._encoder is not None:
            from annotator.engine.runtime.base import run_encoder

            features = np.asarray(run_encoder(self._encoder, x.float().cpu().numpy(), cancel), dtype=np.float32)
            grid = self.img_size // 16
            if features.shape != (1, int(self.model.prompt_encoder.embed_dim), grid, grid):
                raise EngineError(f"encoder returned features of shape {features.shape}, "
                                  f"expected (1, {self.model.prompt_encoder.embed_dim}, {grid}, {grid})")
            return torch.from_numpy(features)
        from annotator.engine.runtime.torch_interrupt import interruptible

        encoder = self.model.image_encoder
        with interruptible(encoder, cancel):
            if self.half and self.device.startswith("cuda"):
                with torch.autocast(device_type="cuda", dtype=torch.float16):
                    return encoder(x)
            return encoder(x)

    # ---- embed -------------------------------------------------------------------------------
    def _encoder_input(self, image: np.ndarray) -> tuple[Any, tuple[int, int]]:
        torch = self._torch
        if self.flavour == "medsam":
            from skimage import transform

            size = self.img_size
            resized = transform.resize(image, (size, size), order=3, preserve_range=True,
                                       anti_aliasing=True).astype(np.uint8)
            low, high = float(resized.min()), float(resized.max())
            scaled = (resized - low) / np.clip(high - low, a_min=1e-8, a_max=None)
            tensor = torch.tensor(scaled).float().permute(2, 0, 1).unsqueeze(0).to(self.device)
            return tensor, (size, size)
        resized = self._transform.apply_image(image)
        tensor = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None, :, :, :]
        input_size = (int(tensor.shape[-2]), int(tensor.shape[-1]))
        return self.model.preprocess(tensor), input_size

    def embed(self, image_hw3_u8: np.ndarray, *, cancel: threading.Event | None = None,
              progress: ProgressFn | None = None) -> ImageEmbedding:
        """Run the image encoder on one windowed slice: (1, 256, 64, 64) float32 features."""
        _check_image(image_hw3_u8)
        torch = self._torch
        with self._lock:
            if cancel is not None and cancel.is_set():
                raise EmbeddingCancelled("embedding cancelled before the encoder started")
            if progress is not None:
                progress(0, 1)
            with torch.inference_mode():
                x, input_size = self._encoder_input(image_hw3_u8)
                features = self._run_encoder(x, cancel)
                features_np = features.float().cpu().numpy()
            if progress is not None:
                progress(1, 1)
        return ImageEmbedding(features=features_np, original_size=(int(image_hw3_u8.shape[0]), int(image_hw3_u8.shape[1])),
                              input_size=input_size, model_id=self.model_id)

    # ---- predict -----------------------------------------------------------------------------
    def _device_features(self, embedding: ImageEmbedding) -> Any:
        """The embedding's features as a float32 tensor on the device, reused for the same object."""
        memo = self._memo
        if memo is not None and memo[0] is embedding:
            return memo[1]
        grid = self.img_size // 16
        expected = (1, int(self.model.prompt_encoder.embed_dim), grid, grid)
        if tuple(embedding.features.shape) != expected:
            raise EngineError(f"embedding features have shape {tuple(embedding.features.shape)}, "
                              f"expected {expected} for {self.model_id}")
        tensor = self._torch.from_numpy(np.ascontiguousarray(embedding.features)).to(
            device=self.device, dtype=self._torch.float32)
        self._memo = (embedding, tensor)
        return tensor

    def _upscale_logits(self, low_res: Any, input_size: tuple[int, int], original_size: tuple[int, int]) -> Any:
        """Sam.postprocess_masks, without upsampling the padding that its crop throws away.

        SAM upsamples the low-res logits to the padded 1024x1024 frame, crops the resized image
        and resizes that to the slice. Low-res rows/columns that only feed the padding are left
        out here; the upsampling scale stays exactly the same (k low-res pixels -> k * 4), so the
        kept values are bit-identical to SAM's (tested against SamPredictor on non-square slices).
        """
        functional = self._torch.nn.functional
        low_h, low_w = int(low_res.shape[-2]), int(low_res.shape[-1])
        if self.img_size % low_h or self.img_size % low_w:
            return self.model.postprocess_masks(low_res, input_size, original_size)
        factor_h, factor_w = self.img_size // low_h, self.img_size // low_w
        # last low-res index any kept output pixel reads: floor((n - 0.5) / f - 0.5) + 1
        keep_h = min(low_h, int(np.floor((input_size[0] - 0.5) / factor_h - 0.5)) + 2)
        keep_w = min(low_w, int(np.floor((input_size[1] - 0.5) / factor_w - 0.5)) + 2)
        part = low_res[..., :keep_h, :keep_w]
        frame = functional.interpolate(part, (keep_h * factor_h, keep_w * factor_w), mode="bilinear",
                                       align_corners=False)
        frame = frame[..., : input_size[0], : input_size[1]]
        return functional.interpolate(frame, original_size, mode="bilinear", align_corners=False)

    def _image_pe(self) -> Any:
        if self._dense_pe is None:
            self._dense_pe = self.model.prompt_encoder.get_dense_pe()
        return self._dense_pe

    def _prompt_tensors(self, embedding: ImageEmbedding, points_xy: np.ndarray | None, point_labels: np.ndarray | None,
                        box_xyxy: np.ndarray | None, mask_input: np.ndarray | None) -> tuple[Any, Any, Any]:
        torch = self._torch
        height, width = embedding.original_size
        points = box = mask = None
        if points_xy is not None and len(points_xy) > 0:
            if point_labels is None or len(point_labels) != len(points_xy):
                raise ValueError("point_labels must give one label per point")
            coords = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
            if self.flavour == "medsam":
                coords = coords * np.array([self.img_size / width, self.img_size / height])
            else:
                coords = self._transform.apply_coords(coords, embedding.original_size)
            coords_t = torch.as_tensor(coords, dtype=torch.float, device=self.device)[None, :, :]
            labels_t = torch.as_tensor(np.asarray(point_labels), dtype=torch.int, device=self.device)[None, :]
            points = (coords_t, labels_t)
        if box_xyxy is not None:
            box_np = np.asarray(box_xyxy, dtype=np.float64).reshape(-1, 4)
            if self.flavour == "medsam":
                box_np = box_np / np.array([width, height, width, height]) * self.img_size
            else:
                box_np = self._transform.apply_boxes(box_np, embedding.original_size)
            box = torch.as_tensor(box_np, dtype=torch.float, device=self.device)[None, :]
        if mask_input is not None:
            mask = torch.as_tensor(np.asarray(mask_input), dtype=torch.float, device=self.device)
            if mask.ndim == 2:
                mask = mask[None]
            mask = mask[None, :, :, :]
        if points is None and box is None and mask is None:
            raise ValueError("predict needs at least one point, a box or a mask_input")
        return points, box, mask

    def predict(self, embedding: ImageEmbedding, *, points_xy: np.ndarray | None = None,
                point_labels: np.ndarray | None = None, box_xyxy: np.ndarray | None = None,
                mask_input: np.ndarray | None = None, multimask: bool = True) -> MaskPrediction:
        """Masks at the original slice size for prompts in slice pixels (as SamPredictor.predict)."""
        if embedding.model_id != self.model_id:
            raise EngineError(f"embedding was made by {embedding.model_id!r}, not by {self.model_id!r}")
        torch = self._torch
        if self.flavour == "medsam":
            multimask = False  # MedSAM was trained to output a single mask
        with self._lock, torch.inference_mode():
            features = self._device_features(embedding)
            points, box, mask = self._prompt_tensors(embedding, points_xy, point_labels, box_xyxy, mask_input)
            if self._prompt_runner is not None and (points is not None or box is not None) and (
                    box is None or box.shape[1] == 1):
                # issue 8: the same graph on ONNX Runtime/OpenVINO, prompts already in model frame
                low_res_np, iou_np = self._prompt_runner.predict(
                    embedding.features, points_xy=None if points is None else points[0][0].cpu().numpy(),
                    point_labels=None if points is None else points[1][0].cpu().numpy(),
                    box_xyxy=None if box is None else box[0, 0].cpu().numpy(),
                    mask_input=None if mask is None else mask[0, 0].cpu().numpy(), multimask=multimask)
                low_res, iou = torch.from_numpy(low_res_np), torch.from_numpy(iou_np)
            else:
                sparse, dense = self.model.prompt_encoder(points=points, boxes=box, masks=mask)
                low_res, iou = self.model.mask_decoder(
                    image_embeddings=features, image_pe=self._image_pe(),
                    sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask)
            if self.flavour == "medsam":
                probs = torch.nn.functional.interpolate(torch.sigmoid(low_res), size=embedding.original_size,
                                                        mode="bilinear", align_corners=False)
                masks = probs > 0.5
            else:
                upscaled = self._upscale_logits(low_res, embedding.input_size, embedding.original_size)
                masks = upscaled > self.model.mask_threshold
            return MaskPrediction(
                masks=masks[0].cpu().numpy(),
                scores=iou[0].float().cpu().numpy(),
                low_res_logits=low_res[0].float().cpu().numpy(),
            )
