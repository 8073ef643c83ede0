"""SAM 2 / SAM 2.1 / MedSAM2 checkpoints as a PromptEngine: the image path of sam2's
SAM2ImagePredictor (encoder once per slice; prompt encoder + mask decoder per prompt) over sam2's
own model classes, built from its own configs.

SAM2ImagePredictor itself is not imported: its transforms module imports torchvision at import time,
which fails on CPU-only torch builds (see the annotator README). Its three steps are re-stated here
(resize + ImageNet normalisation, the backbone features with `no_mem_embed`, prompts scaled to the
model's square input) and tested against it where torchvision can stand in.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from annotator.engine.api import EngineError, ImageEmbedding, MaskPrediction, ProgressFn
from annotator.engine.runtime.torch_interrupt import interruptible
from annotator.engine.service import EmbeddingCancelled

# (Hiera trunk width, number of Hiera blocks) -> the size in sam2's config names.
HIERA_SIZES: dict[tuple[int, int], str] = {(96, 12): "t", (96, 16): "s", (112, 24): "b+", (144, 48): "l"}
IMAGE_SIZE = 1024  # SAM 2 and 2.1
MEDSAM2_IMAGE_SIZE = 512  # MedSAM2 (bowang-lab) fine-tuned SAM 2.1 tiny at 512² (its sam2.1_hiera_t512.yaml)
PIXEL_MEAN = (0.485, 0.456, 0.406)  # SAM2Transforms: ImageNet statistics on [0, 1] pixels
PIXEL_STD = (0.229, 0.224, 0.225)
LOW_RES_CLAMP = 32.0  # SAM2ImagePredictor clamps the logits it hands back for re-use


@dataclass(frozen=True)
class Sam2Checkpoint:
    """What a SAM 2 state dict is: sam2's config for it and the image size it was trained at."""

    family: str  # "sam2" or "sam2.1"
    size: str  # "t", "s", "b+", "l"
    image_size: int

    @property
    def config(self) -> str:
        """sam2's Hydra config name (inside the installed sam2 package)."""
        return f"configs/{self.family}/{self.family}_hiera_{self.size}.yaml"

    @property
    def name(self) -> str:
        suffix = "" if self.image_size == IMAGE_SIZE else f"-{self.image_size}"
        return f"{self.family}-hiera-{self.size}{suffix}"


def describe_checkpoint(state: dict[str, Any], path: str | Path, image_size: int | None = None) -> Sam2Checkpoint:
    """Family and size from the state dict's shapes; the image size from the caller, else from the
    file name (MedSAM2's files say so; its weights have SAM 2.1 tiny's shapes exactly), else 1024."""
    path = Path(path)
    patch = state.get("image_encoder.trunk.patch_embed.proj.weight")
    if patch is None:
        raise EngineError(f"{path}: not a SAM 2 checkpoint (no Hiera image encoder weights); "
                          "SAM and MedSAM (ViT) checkpoints load with the 'sam' engine")
    blocks = 0
    while f"image_encoder.trunk.blocks.{blocks}.norm1.weight" in state:
        blocks += 1
    key = (int(patch.shape[0]), blocks)
    if key not in HIERA_SIZES:
        known = ", ".join(f"{w}x{b}" for w, b in HIERA_SIZES)
        raise EngineError(f"{path}: a Hiera encoder of width {key[0]} with {key[1]} blocks is not a published "
                          f"SAM 2 size (known: {known})")
    family = "sam2.1" if "no_obj_embed_spatial" in state else "sam2"
    if image_size is None:
        image_size = MEDSAM2_IMAGE_SIZE if "medsam2" in path.name.lower() else IMAGE_SIZE
    if image_size % 16:
        raise EngineError(f"{path}: image size {image_size} is not a multiple of 16")
    return Sam2Checkpoint(family, HIERA_SIZES[key], int(image_size))


def build_model(checkpoint: Sam2Checkpoint, device: str = "cpu") -> Any:
    """sam2's SAM2Base for this checkpoint, randomly initialised (weights are loaded separately)."""
    from sam2.build_sam import build_sam2

    overrides = [f"++model.image_size={checkpoint.image_size}"]
    if checkpoint.image_size != IMAGE_SIZE:  # the memory attention's RoPE grid follows the image size
        grid = checkpoint.image_size // 16
        for part in ("self_attention", "cross_attention"):
            overrides.append(f"++model.memory_attention.layer.{part}.feat_sizes=[{grid},{grid}]")
    return build_sam2(checkpoint.config, ckpt_path=None, device=device, mode="eval",
                      hydra_overrides_extra=overrides)


class Sam2Engine:
    """PromptEngine over a SAM2Base. Keeps no per-image state: the embedding carries the features."""

    prompt_kind = "points"  # trained on clicks as well as boxes
    preprocess_version = 1

    def __init__(self, model: Any, checkpoint: Sam2Checkpoint, *, model_sha256: str, device: str = "cpu") -> None:
        import torch

        self._torch = torch
        self.model = model.eval()
        self.checkpoint = checkpoint
        self.model_id = checkpoint.name
        self.model_sha256 = model_sha256
        self.device = device
        self.runtime = "torch-fp32"
        self.description = f"{checkpoint.name} (sam2, torch fp32)"
        size = checkpoint.image_size
        self._feature_sizes = [(size // 4, size // 4), (size // 8, size // 8), (size // 16, size // 16)]
        self._mean = torch.tensor(PIXEL_MEAN, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(PIXEL_STD, device=device).view(1, 3, 1, 1)
        self._lock = threading.Lock()

    # ---- the expensive step --------------------------------------------------------------------
    def embed(self, image_hw3_u8: np.ndarray, *, cancel: threading.Event | None = None,
              progress: ProgressFn | None = None) -> ImageEmbedding:
        """The backbone features of one windowed slice: (1, 256, S/16, S/16) plus two finer levels."""
        image = np.asarray(image_hw3_u8)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise EngineError(f"embed expects an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        torch = self._torch
        with self._lock, torch.inference_mode():
            if cancel is not None and cancel.is_set():
                raise EmbeddingCancelled("embedding cancelled before the encoder started")
            if progress is not None:
                progress(0, 1)
            x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
            size = self.checkpoint.image_size
            # torchvision's Resize on a tensor, as SAM2Transforms applies it: bilinear with antialias.
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                                antialias=True)
            x = (x - self._mean) / self._std
            with interruptible(self.model.image_encoder, cancel):  # a prefetch the user no longer needs stops
                backbone = self.model.forward_image(x)
            _, vision_feats, _, _ = self.model._prepare_backbone_features(backbone)
            if self.model.directly_add_no_mem_embed:
                vision_feats[-1] = vision_feats[-1] + self.model.no_mem_embed
            feats = [feat.permute(1, 2, 0).reshape(1, -1, *hw) for feat, hw in zip(vision_feats, self._feature_sizes, strict=True)]
            arrays = [f.float().cpu().numpy() for f in feats]
            if progress is not None:
                progress(1, 1)
        return ImageEmbedding(features=arrays[-1], original_size=(int(image.shape[0]), int(image.shape[1])),
                              input_size=(size, size), model_id=self.model_id,
                              extras={"high_res_0": arrays[0], "high_res_1": arrays[1]})

    # ---- the cheap step ------------------------------------------------------------------------
    def predict(self, embedding: ImageEmbedding, *, points_xy: np.ndarray | None = None,
                point_labels: np.ndarray | None = None, box_xyxy: np.ndarray | None = None,
                mask_input: np.ndarray | None = None, multimask: bool = True) -> MaskPrediction:
        if embedding.model_id != self.model_id:
            raise EngineError(f"embedding was made by {embedding.model_id!r}, not by {self.model_id!r}")
        torch = self._torch
        size = self.checkpoint.image_size
        expected = [(1, 256, *self._feature_sizes[2]), (1, 32, *self._feature_sizes[0]), (1, 64, *self._feature_sizes[1])]
        got = [tuple(embedding.features.shape)] + [tuple(embedding.extras.get(k, np.empty(0)).shape)
                                                   for k in ("high_res_0", "high_res_1")]
        if got != [tuple(e) for e in expected]:
            raise EngineError(f"embedding arrays have shapes {got}, expected {expected} for {self.model_id}")
        height, width = embedding.original_size
        scale = np.array([size / width, size / height], dtype=np.float32)
        coords, labels = [], []
        if box_xyxy is not None:  # the box's corners come first, as SAM2ImagePredictor orders them
            coords.append(np.asarray(box_xyxy, dtype=np.float32).reshape(2, 2) * scale)
            labels.append(np.array([2, 3], dtype=np.int32))
        if points_xy is not None and len(points_xy):
            pts = np.asarray(points_xy, dtype=np.float32).reshape(-1, 2)
            coords.append(pts * scale)
            lab = np.ones(len(pts)) if point_labels is None else np.asarray(point_labels)
            labels.append(lab.astype(np.int32).reshape(-1))
        with self._lock, torch.inference_mode():
            dev = self.device
            points = None
            if coords:
                points = (torch.from_numpy(np.concatenate(coords)[None]).to(dev),
                          torch.from_numpy(np.concatenate(labels)[None]).to(dev))
            masks = None
            if mask_input is not None:
                low = np.asarray(mask_input, dtype=np.float32)
                masks = torch.from_numpy(low.reshape(1, 1, *low.shape[-2:])).to(dev)
            sparse, dense = self.model.sam_prompt_encoder(points=points, boxes=None, masks=masks)
            feats = torch.from_numpy(np.asarray(embedding.features, dtype=np.float32)).to(dev)
            high_res = [torch.from_numpy(np.asarray(embedding.extras[k], dtype=np.float32)).to(dev)
                        for k in ("high_res_0", "high_res_1")]
            low_res, iou, _, _ = self.model.sam_mask_decoder(
                image_embeddings=feats, image_pe=self.model.sam_prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=bool(multimask),
                repeat_image=False, high_res_features=high_res)
            full = torch.nn.functional.interpolate(low_res.float(), (height, width), mode="bilinear",
                                                   align_corners=False)
            low_res = torch.clamp(low_res.float(), -LOW_RES_CLAMP, LOW_RES_CLAMP)
            return MaskPrediction(masks=(full[0] > 0).cpu().numpy(), scores=iou[0].float().cpu().numpy(),
                                  low_res_logits=low_res[0].cpu().numpy())


def load(checkpoint: str | Path | None = None, device: str = "auto", runtime: str = "auto",
         image_size: int | None = None, **_options: Any) -> Sam2Engine:
    """The engine contribution: a SAM 2 / 2.1 / MedSAM2 checkpoint (.pt) on torch."""
    if checkpoint is None:
        raise EngineError("the 'sam2' engine needs a checkpoint (a SAM 2 / SAM 2.1 / MedSAM2 .pt file)")
    if runtime not in ("auto", "auto-stored", "torch"):
        raise EngineError(f"the 'sam2' engine runs on torch only, not {runtime!r}")
    try:
        import sam2  # noqa: F401 - registers sam2's configs with Hydra
    except Exception as exc:  # noqa: BLE001 - a broken install may raise anything
        raise EngineError("the 'sam2' engine needs the sam2 package: "
                          "SAM2_BUILD_CUDA=0 pip install --no-build-isolation 'sam2==1.1.0' "
                          f"({type(exc).__name__}: {exc})") from None
    from annotator.engine.checkpoints import file_sha256, load_state_dict
    from annotator.engine.device import pick_device

    state = load_state_dict(checkpoint)
    info = describe_checkpoint(state, checkpoint, image_size)
    device = pick_device(device)
    model = build_model(info, device="cpu")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EngineError(f"{checkpoint}: does not fit {info.config} ({first})") from None
    return Sam2Engine(model.to(device), info, model_sha256=file_sha256(checkpoint), device=device)


def claims_checkpoint(state: dict[str, Any]) -> bool:
    """A Hiera image encoder: SAM 2's layout (the window's *Choose checkpoint…* and `--engine auto`
    hand such a file to this engine)."""
    return "image_encoder.trunk.patch_embed.proj.weight" in state


load.claims_checkpoint = claims_checkpoint  # type: ignore[attr-defined]
