"""Checkpoint catalogue for segment-anything models: load safely (weights only, never code), read
the architecture from the state-dict shapes, and name the published checkpoints by SHA-256."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotator.engine.api import EngineError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnownCheckpoint:
    """A published checkpoint, recognised by the SHA-256 of its file."""

    name: str
    architecture: str  # "vit_b" | "vit_l" | "vit_h"
    flavour: str  # "sam" | "medsam": which preprocessing the weights were trained with
    source: str


# SHA-256 of the files published by Meta (dl.fbaipublicfiles.com/segment_anything/). Values as
# used by micro-sam's model registry (micro_sam/util.py _CHECKSUMS) and several other projects
# that verify the downloads; the three agree everywhere they appear.
KNOWN_CHECKPOINTS: dict[str, KnownCheckpoint] = {
    "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912": KnownCheckpoint(
        "sam_vit_b_01ec64", "vit_b", "sam", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"),
    "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622": KnownCheckpoint(
        "sam_vit_l_0b3195", "vit_l", "sam", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth"),
    "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e": KnownCheckpoint(
        "sam_vit_h_4b8939", "vit_h", "sam", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth"),
    # MedSAM's medsam_vit_b.pth (bowang-lab/MedSAM, Google Drive) has no published checksum we
    # could find, so it is not listed: it is recognised as MedSAM by its file name (see flavour_for).
}

# Standard SAM encoders: (embed_dim, depth) -> name.
_STANDARD_ARCHITECTURES = {(768, 12): "vit_b", (1024, 24): "vit_l", (1280, 32): "vit_h"}


@dataclass(frozen=True)
class SamArchitecture:
    """Everything needed to build segment_anything's Sam with the checkpoint's shapes."""

    name: str  # "vit_b", "vit_l", "vit_h", or "vit_custom_<dim>x<depth>" (e.g. test models)
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    window_size: int
    img_size: int
    patch_size: int
    mlp_ratio: float
    use_rel_pos: bool
    prompt_embed_dim: int
    mask_in_chans: int
    decoder_depth: int
    decoder_mlp_dim: int
    num_multimask_outputs: int
    iou_head_depth: int
    iou_head_hidden_dim: int


@dataclass
class LoadedCheckpoint:
    path: Path
    sha256: str
    architecture: SamArchitecture
    known: KnownCheckpoint | None
    flavour: str
    model: Any  # segment_anything.modeling.Sam, eval mode, on the CPU

    @property
    def display_name(self) -> str:
        if self.known is not None:
            return f"{self.known.name} ({self.known.flavour}, recognised by SHA-256)"
        return f"{self.path.name} ({self.flavour} {self.architecture.name}, not a published checkpoint)"


_sha_lock = threading.Lock()
_sha_memo: OrderedDict[tuple[str, int, int], str] = OrderedDict()
_SHA_MEMO_SIZE = 64  # checkpoints a session opens; a file edited in place gets a new key each time


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, remembered per (path, size, mtime) so a 2.4 GB file is hashed once."""
    path = Path(path)
    st = path.stat()
    memo_key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _sha_lock:
        if memo_key in _sha_memo:
            return _sha_memo[memo_key]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _sha_lock:
        _sha_memo[memo_key] = value
        while len(_sha_memo) > _SHA_MEMO_SIZE:
            _sha_memo.popitem(last=False)
    return value


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, Any]:
    import torch

    if isinstance(obj, dict):
        for wrapper in ("model", "state_dict", "model_state"):
            inner = obj.get(wrapper)
            if isinstance(inner, dict) and any(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise EngineError(f"{path}: not a model state dict (expected a mapping of parameter names to tensors)")
    out = {}
    for name, tensor in obj.items():
        for prefix in ("module.", "sam."):
            if name.startswith(prefix):
                name = name[len(prefix):]
        out[name] = tensor
    return out


# torch.load(weights_only=True) is the only guard when a user opens a checkpoint; before 2.6 it
# can be bypassed to run code (CVE-2025-32434).
SAFE_TORCH = (2, 6)


def require_safe_torch() -> None:
    """EngineError unless the installed torch loads weights safely (pyproject pins the same floor)."""
    import torch

    text = str(getattr(torch, "__version__", "0"))
    parts = [int(p) for p in re.findall(r"\d+", text.split("+")[0])[:2]] + [0, 0]
    if tuple(parts[:2]) < SAFE_TORCH:
        raise EngineError(f"torch {text} is installed, but opening a checkpoint needs torch >= "
                          f"{SAFE_TORCH[0]}.{SAFE_TORCH[1]}: older versions let a crafted file run code "
                          "while loading (CVE-2025-32434). Upgrade torch (pip install 'torch>=2.6').")


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Tensors of a checkpoint, read with torch.load(weights_only=True): a file never runs code.

    Raises EngineError naming the file when it is missing, corrupt, or carries pickled objects
    beyond plain tensors and containers (those are refused without being executed).
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise EngineError(f"{path}: checkpoint file not found")
    require_safe_torch()
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        detail = next((line.strip() for line in text.splitlines() if "Unsupported" in line), "")
        if "Unsupported global" in text:
            raise EngineError(f"{path}: refused to load: the checkpoint contains pickled objects other than "
                              f"tensors, which could run code ({detail})") from None
        raise EngineError(f"{path}: not a readable PyTorch checkpoint ({detail or 'unpickling failed'})") from None
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError/EOFError/zip errors for bad files
        raise EngineError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    return _unwrap_state_dict(obj, path)


def _count_indexed(state: dict[str, Any], prefix: str, suffix: str) -> int:
    count = 0
    while f"{prefix}{count}{suffix}" in state:
        count += 1
    return count


def detect_architecture(state: dict[str, Any], path: str | os.PathLike[str] = "checkpoint") -> SamArchitecture:
    """Read encoder width/depth/heads/global blocks and the decoder's sizes from tensor shapes."""
    required = [
        "image_encoder.patch_embed.proj.weight", "image_encoder.pos_embed", "image_encoder.neck.0.weight",
        "prompt_encoder.mask_downscaling.0.weight", "prompt_encoder.mask_downscaling.3.weight",
        "mask_decoder.mask_tokens.weight", "mask_decoder.transformer.layers.0.mlp.lin1.weight",
        "mask_decoder.iou_prediction_head.layers.0.weight",
    ]
    missing = [k for k in required if k not in state]
    if missing:
        raise EngineError(f"{path}: not a Segment Anything (ViT) checkpoint: missing {missing[0]}"
                          + (f" and {len(missing) - 1} more tensors" if len(missing) > 1 else ""))
    try:
        proj = state["image_encoder.patch_embed.proj.weight"]
        embed_dim, patch_size = int(proj.shape[0]), int(proj.shape[2])
        depth = _count_indexed(state, "image_encoder.blocks.", ".norm1.weight")
        if depth == 0:
            raise EngineError(f"{path}: not a Segment Anything checkpoint: the image encoder has no blocks")
        grid = int(state["image_encoder.pos_embed"].shape[1])
        img_size = grid * patch_size
        use_rel_pos = "image_encoder.blocks.0.attn.rel_pos_h" in state
        global_blocks: list[int] = []
        window_size = 0
        if use_rel_pos:
            head_dim = int(state["image_encoder.blocks.0.attn.rel_pos_h"].shape[1])
            for i in range(depth):
                size = (int(state[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0]) + 1) // 2
                if size == grid:
                    global_blocks.append(i)
                else:
                    window_size = size
            num_heads = embed_dim // head_dim
        else:
            standard_heads = {768: 12, 1024: 16, 1280: 16}
            if embed_dim not in standard_heads:
                raise EngineError(f"{path}: cannot tell the number of attention heads of a {embed_dim}-wide "
                                  "encoder without relative position tensors")
            num_heads = standard_heads[embed_dim]
            window_size = 14
            global_blocks = {768: [2, 5, 8, 11], 1024: [5, 11, 17, 23], 1280: [7, 15, 23, 31]}[embed_dim]
        mlp_hidden = int(state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0])
        iou_layers = _count_indexed(state, "mask_decoder.iou_prediction_head.layers.", ".weight")
        arch = SamArchitecture(
            name=_STANDARD_ARCHITECTURES.get((embed_dim, depth), f"vit_custom_{embed_dim}x{depth}"),
            encoder_embed_dim=embed_dim,
            encoder_depth=depth,
            encoder_num_heads=num_heads,
            encoder_global_attn_indexes=tuple(global_blocks),
            window_size=window_size,
            img_size=img_size,
            patch_size=patch_size,
            mlp_ratio=mlp_hidden / embed_dim,
            use_rel_pos=use_rel_pos,
            prompt_embed_dim=int(state["image_encoder.neck.0.weight"].shape[0]),
            mask_in_chans=int(state["prompt_encoder.mask_downscaling.3.weight"].shape[0]),
            decoder_depth=_count_indexed(state, "mask_decoder.transformer.layers.", ".norm1.weight"),
            decoder_mlp_dim=int(state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0]),
            num_multimask_outputs=int(state["mask_decoder.mask_tokens.weight"].shape[0]) - 1,
            iou_head_depth=iou_layers,
            iou_head_hidden_dim=int(state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0]),
        )
    except (KeyError, IndexError, AttributeError, TypeError) as exc:
        raise EngineError(f"{path}: unexpected Segment Anything checkpoint layout ({type(exc).__name__}: {exc})") from None
    return arch


def build_sam(arch: SamArchitecture) -> Any:
    """An untrained segment_anything Sam with these shapes (the library's own classes)."""
    from functools import partial

    import torch

    from annotator.engine._torchvision_compat import ensure_torchvision

    ensure_torchvision()
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    grid = arch.img_size // arch.patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=arch.encoder_depth, embed_dim=arch.encoder_embed_dim, img_size=arch.img_size,
            mlp_ratio=arch.mlp_ratio, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=arch.encoder_num_heads, patch_size=arch.patch_size, qkv_bias=True,
            use_rel_pos=arch.use_rel_pos, global_attn_indexes=arch.encoder_global_attn_indexes,
            window_size=arch.window_size, out_chans=arch.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=arch.prompt_embed_dim, image_embedding_size=(grid, grid),
            input_image_size=(arch.img_size, arch.img_size), mask_in_chans=arch.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=arch.num_multimask_outputs,
            transformer=TwoWayTransformer(depth=arch.decoder_depth, embedding_dim=arch.prompt_embed_dim,
                                          mlp_dim=arch.decoder_mlp_dim, num_heads=8),
            transformer_dim=arch.prompt_embed_dim, iou_head_depth=arch.iou_head_depth,
            iou_head_hidden_dim=arch.iou_head_hidden_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def flavour_for(path: Path, known: KnownCheckpoint | None, requested: str = "auto") -> str:
    """"sam" or "medsam": as requested, else as catalogued, else "medsam" when the file name says so."""
    if requested not in ("auto", "sam", "medsam"):
        raise EngineError(f"unknown checkpoint flavour {requested!r}; expected auto, sam or medsam")
    if requested != "auto":
        return requested
    if known is not None:
        return known.flavour
    return "medsam" if "medsam" in path.name.lower() else "sam"


def load_sam_checkpoint(path: str | os.PathLike[str], flavour: str = "auto") -> LoadedCheckpoint:
    """Load, identify and build a SAM/MedSAM model from a checkpoint file (CPU, eval mode)."""
    path = Path(path)
    state = load_state_dict(path)
    arch = detect_architecture(state, path)
    sha = file_sha256(path)
    known = KNOWN_CHECKPOINTS.get(sha)
    model = build_sam(arch)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise EngineError(f"{path}: tensors do not fit a {arch.name} Segment Anything model ({detail[:300]})") from None
    chosen = flavour_for(path, known, flavour)
    if known is not None:
        log.info("%s: recognised %s by SHA-256", path, known.name)
    return LoadedCheckpoint(path=path, sha256=sha, architecture=arch, known=known, flavour=chosen, model=model)
