"""LiteMedSAM's own pre- and post-processing, step for step; small deviations cost real Dice.

Source: bowang-lab/MedSAM, LiteMedSAM branch, CVPR24_LiteMedSAM_infer.py (resize_longest_side,
pad_image, resize_box_to_256, MedSAM_Lite.postprocess_masks, medsam_inference, MedSAM_infer_npz_2D).
The slice arrives already windowed to uint8 (pre_CT_MR.py clips CT to a window and scales to 0..255).
"""

from __future__ import annotations

from typing import Any

import numpy as np

IMAGE_SIZE = 256  # CVPR24_LiteMedSAM_infer.py: image_size = 256
# Bump when anything below changes what the encoder sees: it is part of every EmbeddingKey.
PREPROCESS_VERSION = 1


def resized_shape(height: int, width: int, target: int = IMAGE_SIZE) -> tuple[int, int]:
    """(h, w) after resizing the longest side to `target`, rounded as resize_longest_side does:
    scale = target * 1.0 / max(oldh, oldw); neww, newh = int(neww + 0.5), int(newh + 0.5)."""
    scale = target * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def as_rgb_u8(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 -> (H, W, 3) uint8 (the npz 'imgs' the reference reads are 3-channel)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"LiteMedSAM expects a windowed uint8 slice, got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=-1)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"LiteMedSAM expects an (H, W, 3) slice, got shape {image.shape}")
    return image


def model_input(image_hw3_u8: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """The encoder's (1, 3, 256, 256) float32 input and the resized (h, w) before padding.

    MedSAM_infer_npz_2D: img_256 = resize_longest_side(img_3c, 256)   (cv2.INTER_AREA on uint8)
                         img_256_norm = (img_256 - min) / clip(max - min, 1e-8, None)
                         img_256_padded = pad_image(img_256_norm, 256)  (zeros, bottom/right)
                         torch.tensor(...).float().permute(2, 0, 1).unsqueeze(0)
    """
    import cv2

    image = as_rgb_u8(image_hw3_u8)
    new_h, new_w = resized_shape(image.shape[0], image.shape[1])
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    # Same float64 arithmetic as the reference (numpy promotes the uint8 array), cast at the end.
    lo, hi = resized.min(), resized.max()
    normalised = (resized - lo) / np.clip(float(hi) - float(lo), a_min=1e-8, a_max=None)
    padded = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float64)
    padded[:new_h, :new_w] = normalised
    return np.ascontiguousarray(padded.transpose(2, 0, 1)[None].astype(np.float32)), (new_h, new_w)


def to_model_coords(values: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
    """Pixel coordinates of the slice -> the 256 frame: int(v * 256 / max(H, W)) per value
    (resize_box_to_256: new_box[i] = int(box[i] * ratio), ratio = 256 / max(original_size)).
    Clicks are scaled the same way so boxes and points stay in one frame."""
    longest = max(original_size)
    flat = np.asarray(values, dtype=np.float64).ravel()
    out = np.array([int(v * IMAGE_SIZE / longest) for v in flat], dtype=np.float64)
    return out.reshape(np.shape(values))


def clip_box_xyxy(box_xyxy: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
    """A box clipped to the slice's pixel indices (prompts dragged past the edge stay usable)."""
    h, w = original_size
    box = np.asarray(box_xyxy, dtype=np.float64).reshape(4).copy()
    box[[0, 2]] = np.clip(box[[0, 2]], 0, w - 1)
    box[[1, 3]] = np.clip(box[[1, 3]], 0, h - 1)
    return box


def upsample_logits(low_res_logits: Any, input_size: tuple[int, int], original_size: tuple[int, int]) -> Any:
    """(B, C, 256, 256) torch logits -> (B, C, H, W) logits at the slice size.

    MedSAM_Lite.postprocess_masks: masks[..., :new_size[0], :new_size[1]], then
    F.interpolate(size=original_size, mode="bilinear", align_corners=False).
    """
    import torch.nn.functional as F

    cropped = low_res_logits[..., : input_size[0], : input_size[1]]
    return F.interpolate(cropped, size=tuple(original_size), mode="bilinear", align_corners=False)


def masks_from_logits(logits_bchw: Any) -> np.ndarray:
    """medsam_inference: sigmoid(logits) > 0.5, as a bool array."""
    import torch

    return (torch.sigmoid(logits_bchw) > 0.5).cpu().numpy()
