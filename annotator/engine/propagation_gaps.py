"""The slices between two keys of a propagation (engine.propagate): the runs from both keys blended
by shape, the keys' own shape interpolation, and the fill of slices neither run reached."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from annotator.engine.propagate import Key


def blend_gap(lower: Key, upper: Key, up: dict[int, np.ndarray], down: dict[int, np.ndarray],
              spacing_rc: tuple[float, float]) -> dict[int, np.ndarray]:
    """Masks of the slices strictly between two keys from the run up from `lower` and down from
    `upper`: blended by shape where both reached a slice, weighted towards the nearer key."""
    from annotator.postprocess.interpolate import blend_masks

    out: dict[int, np.ndarray] = {}
    gap = upper.index - lower.index
    for index in range(lower.index + 1, upper.index):
        a, b = up.get(index), down.get(index)
        if a is not None and b is not None:
            out[index] = blend_masks(a, b, (index - lower.index) / gap, spacing_rc)
        elif a is not None:
            out[index] = a
        elif b is not None:
            out[index] = b
    return out


def interpolate_gap(lower: Key, upper: Key, spacing_rc: tuple[float, float]) -> dict[int, np.ndarray]:
    """The keys' own shape interpolation for every slice strictly between them."""
    from annotator.postprocess.interpolate import fill_between

    slices = fill_between(lower.mask, upper.mask, upper.index - lower.index - 1, spacing_rc)
    return {lower.index + 1 + i: m for i, m in enumerate(slices)}


def fill_unreached(lower: Key, upper: Key, masks: dict[int, np.ndarray],
                   spacing_rc: tuple[float, float]) -> dict[int, np.ndarray]:
    """Shape interpolation for each run of slices strictly between two keys that `masks` lacks,
    from the nearest masks (or keys) on both sides."""
    from annotator.postprocess.interpolate import fill_between

    known = {lower.index: lower.mask, upper.index: upper.mask, **masks}
    out: dict[int, np.ndarray] = {}
    index = lower.index + 1
    while index < upper.index:
        if index in known:
            index += 1
            continue
        below = index - 1
        above = index
        while above not in known:
            above += 1
        slices = fill_between(known[below], known[above], above - below - 1, spacing_rc)
        out.update({below + 1 + i: m for i, m in enumerate(slices)})
        index = above
    return out
