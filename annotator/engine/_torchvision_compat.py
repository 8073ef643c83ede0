"""segment_anything imports four torchvision functions at import time; when torchvision is broken
(a CPU wheel whose C++ ops are missing raises RuntimeError on import) we supply just those four."""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import types
from typing import Any

log = logging.getLogger(__name__)
_lock = threading.Lock()
_state: str | None = None  # "real" or "shim" once decided

SHIM_VERSION = "0.0+annotator-shim"


def ensure_torchvision() -> str:
    """Make `torchvision.transforms.functional` and `torchvision.ops.boxes` importable.

    Tries the real torchvision first; only when importing it fails (any exception, since a
    broken build raises RuntimeError rather than ImportError) are the half-imported
    torchvision modules removed from sys.modules and a minimal stand-in installed that
    provides exactly resize, to_pil_image, batched_nms and box_area. Returns "real" or "shim".
    Call before `import segment_anything`; idempotent and thread-safe.
    """
    global _state
    with _lock:
        if _state is not None:
            return _state
        try:
            _import_real()
            _state = "real"
        except Exception as exc:  # noqa: BLE001 - a broken build may raise anything at import
            _drop_torchvision_modules()
            _install_shim()
            log.info("torchvision unusable (%s: %s); using annotator's minimal stand-in",
                     type(exc).__name__, exc)
            _state = "shim"
        return _state


def _import_real() -> None:
    importlib.import_module("torchvision")
    importlib.import_module("torchvision.transforms.functional")
    importlib.import_module("torchvision.ops.boxes")


def _drop_torchvision_modules() -> None:
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]


def _install_shim() -> None:
    root: Any = types.ModuleType("torchvision")
    root.__version__ = SHIM_VERSION
    root.__path__ = []  # a package, so submodule imports resolve
    root._is_tracing = lambda: False
    transforms: Any = types.ModuleType("torchvision.transforms")
    transforms.__path__ = []
    functional: Any = types.ModuleType("torchvision.transforms.functional")
    functional.resize = resize
    functional.to_pil_image = to_pil_image
    ops: Any = types.ModuleType("torchvision.ops")
    ops.__path__ = []
    boxes: Any = types.ModuleType("torchvision.ops.boxes")
    boxes.batched_nms = batched_nms
    boxes.box_area = box_area
    ops.batched_nms = batched_nms
    ops.box_area = box_area
    ops.boxes = boxes
    transforms.functional = functional
    root.transforms = transforms
    root.ops = ops
    sys.modules.update({
        "torchvision": root,
        "torchvision.transforms": transforms,
        "torchvision.transforms.functional": functional,
        "torchvision.ops": ops,
        "torchvision.ops.boxes": boxes,
    })


# ---- the four functions, following torchvision's documented behaviour ------------------------

def _resized_output_size(height: int, width: int, size: Any) -> tuple[int, int]:
    """(new_h, new_w) as torchvision computes it: a single int matches the shorter edge."""
    if isinstance(size, (list, tuple)):
        if len(size) == 2:
            return int(size[0]), int(size[1])
        if len(size) != 1:
            raise ValueError(f"size must be an int or a sequence of 1 or 2 ints, got {size!r}")
        size = size[0]
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = int(size), int(int(size) * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    return new_h, new_w


def resize(img: Any, size: Any, interpolation: Any = None, max_size: Any = None, antialias: Any = True) -> Any:
    """torchvision.transforms.functional.resize for PIL images and (..., H, W) tensors, bilinear.

    A PIL image is resized with PIL's bilinear filter (antialiased, as torchvision does for PIL);
    a tensor with torch's bilinear interpolation, antialias on. Only bilinear is supported.
    """
    if interpolation is not None and str(getattr(interpolation, "value", interpolation)).lower() != "bilinear":
        raise NotImplementedError("annotator's torchvision stand-in supports only bilinear resize")
    if max_size is not None:
        raise NotImplementedError("annotator's torchvision stand-in does not support max_size")
    from PIL import Image

    if isinstance(img, Image.Image):
        new_h, new_w = _resized_output_size(img.height, img.width, size)
        return img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    import torch
    from torch.nn import functional as F

    if not isinstance(img, torch.Tensor):
        raise TypeError(f"img should be a PIL Image or a torch Tensor, got {type(img)}")
    new_h, new_w = _resized_output_size(int(img.shape[-2]), int(img.shape[-1]), size)
    lead = img.shape[:-2]
    x = img.reshape(-1, 1, img.shape[-2], img.shape[-1])
    was_int = not torch.is_floating_point(x)
    y = F.interpolate(x.float() if was_int else x, size=(new_h, new_w), mode="bilinear",
                      align_corners=False, antialias=bool(antialias))
    if was_int:
        y = y.round().clamp(0, 255).to(img.dtype)
    return y.reshape(*lead, new_h, new_w)


def to_pil_image(pic: Any, mode: str | None = None) -> Any:
    """torchvision.transforms.functional.to_pil_image for (H, W[, C]) arrays and (C, H, W) tensors.

    Float tensors are taken as 0..1 and scaled by 255 (as torchvision does); numpy arrays are used
    as they are. 1 channel -> "L", 3 -> "RGB", 4 -> "RGBA" unless `mode` says otherwise.
    """
    import numpy as np
    from PIL import Image

    if hasattr(pic, "detach"):  # torch tensor, channels first
        tensor = pic.detach().cpu()
        if tensor.ndim == 2:
            tensor = tensor[None]
        if tensor.ndim != 3:
            raise ValueError(f"pic should be 2/3 dimensional, got {tensor.ndim} dimensions")
        if tensor.is_floating_point() and mode != "F":
            tensor = tensor.mul(255).byte()
        array = tensor.permute(1, 2, 0).numpy()
    elif isinstance(pic, np.ndarray):
        if pic.ndim == 2:
            array = pic[:, :, None]
        elif pic.ndim == 3:
            array = pic
        else:
            raise ValueError(f"pic should be 2/3 dimensional, got {pic.ndim} dimensions")
    else:
        raise TypeError(f"pic should be a Tensor or ndarray, got {type(pic)}")
    channels = array.shape[2]
    if channels == 1:
        plane = array[:, :, 0]
        if mode is None:
            mode = {np.dtype(np.uint8): "L", np.dtype(np.int16): "I;16", np.dtype(np.int32): "I",
                    np.dtype(np.float32): "F"}.get(plane.dtype)
            if mode is None:
                raise TypeError(f"input type {plane.dtype} is not supported")
        return Image.fromarray(plane, mode=mode) if mode != "L" else Image.fromarray(plane.astype(np.uint8))
    if channels not in (3, 4):
        raise ValueError(f"pic should have 1, 3 or 4 channels, got {channels}")
    if array.dtype != np.uint8:
        raise TypeError(f"{channels}-channel input must be uint8, got {array.dtype}")
    return Image.fromarray(np.ascontiguousarray(array), mode=mode or ("RGB" if channels == 3 else "RGBA"))


def box_area(boxes: Any) -> Any:
    """Area of (N, 4) boxes in (x1, y1, x2, y2) format."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _nms(boxes: Any, scores: Any, iou_threshold: float) -> Any:
    import torch

    order = torch.argsort(scores, descending=True)
    boxes = boxes[order].float()
    area = box_area(boxes)
    lt = torch.max(boxes[:, None, :2], boxes[None, :, :2])
    rb = torch.min(boxes[:, None, 2:], boxes[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    iou = inter / (area[:, None] + area[None, :] - inter)
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return order[torch.as_tensor(keep, dtype=torch.long)]


def batched_nms(boxes: Any, scores: Any, idxs: Any, iou_threshold: float) -> Any:
    """Non-maximum suppression per category: indices of kept boxes, by decreasing score.

    Boxes of different `idxs` never suppress each other (torchvision's coordinate-offset trick).
    """
    import torch

    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    max_coordinate = boxes.max()
    offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
    return _nms(boxes + offsets[:, None], scores, iou_threshold)
