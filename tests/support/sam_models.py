"""Small randomly initialised segment-anything models built from the library's own classes, saved
as checkpoints, so tests run the real loading, preprocessing and prediction code without weights."""

from __future__ import annotations

import contextlib
from functools import partial
from pathlib import Path


@contextlib.contextmanager
def one_torch_thread():
    """torch on one thread (steadier on a shared 2-core box), restored afterwards for other tests."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_tiny_sam(seed: int = 0, *, embed_dim: int = 32, depth: int = 2, num_heads: int = 2,
                   global_attn_indexes: tuple[int, ...] = ()):
    """A real Sam: short, narrow ViT encoder (1024 input, 64x64 grid) + real prompt encoder and
    ViT-B/L/H-sized mask decoder (256 channels, 2 two-way blocks, mlp 2048)."""
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

    torch.manual_seed(seed)
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=depth, embed_dim=embed_dim, img_size=1024, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=num_heads, patch_size=16,
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=global_attn_indexes, window_size=14,
            out_chans=256,
        ),
        prompt_encoder=PromptEncoder(embed_dim=256, image_embedding_size=(64, 64),
                                     input_image_size=(1024, 1024), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    # Random rel-pos tables are zero-initialised by the library; give them values so that
    # loading them into the wrong place would show.
    with torch.no_grad():
        for block in sam.image_encoder.blocks:
            block.attn.rel_pos_h.normal_(0, 0.02)
            block.attn.rel_pos_w.normal_(0, 0.02)
    return sam.eval()


def save_tiny_checkpoint(path: Path, seed: int = 0, **kwargs) -> Path:
    import torch

    torch.save(build_tiny_sam(seed, **kwargs).state_dict(), path)
    return path
