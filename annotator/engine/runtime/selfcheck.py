"""Inputs for the first-use accuracy self-check: synthetic CT-like slices with boxes around organs.

Real scans cannot be assumed at first start, so the check runs on a few deterministic phantoms
(body outline, organs of different densities, bone, smooth texture and noise, windowed to uint8
like a soft-tissue CT window) with a box prompt around each structure, the same kind of prompt
the evaluation protocol uses. A runtime passes when its masks agree with torch fp32's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from annotator.core.overlap import dice

if TYPE_CHECKING:
    from annotator.engine.runtime.select import SelfCheck


def mask_agreement_check(inputs: Sequence[Any], masks_of: Callable[[int, np.ndarray], list[np.ndarray]],
                         identity: str) -> SelfCheck:
    """A SelfCheck scoring a runtime by the Dice between the masks masks_of(input_index, features)
    decodes from its features and from torch fp32's (one score per prompt of that input)."""
    from annotator.engine.runtime.select import SelfCheck

    def scores(index: int, reference: tuple[np.ndarray, ...], candidate: tuple[np.ndarray, ...]) -> list[float]:
        return [dice(r, c) for r, c in zip(masks_of(index, reference[0]), masks_of(index, candidate[0]),
                                                strict=True)]

    return SelfCheck(inputs=inputs, scores=scores, identity=identity)


def _ellipse(shape_hw: tuple[int, int], centre_yx: tuple[float, float], radii_yx: tuple[float, float], angle_rad: float = 0.0) -> np.ndarray:
    yy, xx = np.mgrid[: shape_hw[0], : shape_hw[1]].astype(np.float64)
    dy, dx = yy - centre_yx[0], xx - centre_yx[1]
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    u, v = dx * c + dy * s, -dx * s + dy * c
    return (v / radii_yx[0]) ** 2 + (u / radii_yx[1]) ** 2 <= 1.0


def _smooth_noise(rng: np.random.Generator, shape_hw: tuple[int, int], scale: int) -> np.ndarray:
    """Low-frequency texture in [-1, 1]: coarse random grid, bilinearly enlarged."""
    h, w = shape_hw
    coarse = rng.uniform(-1, 1, size=(h // scale + 2, w // scale + 2))
    ys, xs = np.linspace(0, h / scale, h), np.linspace(0, w / scale, w)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
    bottom = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def phantom_slices(count: int = 3, shape_hw: tuple[int, int] = (256, 256), seed: int = 0
                   ) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """`count` (H, W, 3) uint8 CT-like slices, each with its organ boxes ((4,) xyxy, pixels)."""
    rng = np.random.default_rng(seed)
    h, w = shape_hw
    out = []
    for _ in range(count):
        image = np.full(shape_hw, -1000.0)  # air, HU
        body = _ellipse(shape_hw, (h * 0.52, w * 0.5), (h * rng.uniform(0.33, 0.4), w * rng.uniform(0.42, 0.47)))
        image[body] = -80.0 + 30 * _smooth_noise(rng, shape_hw, 16)[body]  # fat
        boxes = []
        organs = [  # (centre, radii) as fractions of the slice, HU
            ((0.45, 0.33), (0.16, 0.13), 60.0),  # liver-like
            ((0.42, 0.68), (0.08, 0.06), 45.0),  # spleen-like
            ((0.58, 0.40), (0.05, 0.04), 30.0),  # kidney-like, left
            ((0.58, 0.61), (0.05, 0.04), 30.0),  # kidney-like, right
            ((0.47, 0.52), (0.035, 0.035), 180.0),  # contrast vessel
        ]
        for (cy, cx), (ry, rx), hu in organs:
            centre = (h * (cy + rng.uniform(-0.02, 0.02)), w * (cx + rng.uniform(-0.02, 0.02)))
            radii = (h * ry * rng.uniform(0.85, 1.15), w * rx * rng.uniform(0.85, 1.15))
            mask = _ellipse(shape_hw, centre, radii, rng.uniform(-0.5, 0.5)) & body
            image[mask] = hu + 15 * _smooth_noise(rng, shape_hw, 8)[mask]
            ys, xs = np.nonzero(mask)
            boxes.append(np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64))
        spine = _ellipse(shape_hw, (h * 0.74, w * 0.5), (h * 0.05, w * 0.05)) & body
        image[spine] = 700.0
        image += rng.normal(0, 12, size=shape_hw)  # scanner noise
        low, high = -160.0, 240.0  # the soft-tissue window evaluate uses for CT
        windowed = np.clip((image - low) / (high - low), 0, 1) * 255.0
        gray = windowed.astype(np.uint8)
        out.append((np.repeat(gray[:, :, None], 3, axis=2), boxes))
    return out
