"""The slices between two keys of a propagation (engine.propagate): the runs from both keys blended
by shape, the keys' own shape interpolation where they disagree (unless one run found a piece the
other cannot, or the keys lie apart and one run met the other), the fill of slices neither run
reached, and in a re-propagation the label's masks where only an older key's run reached."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

import numpy as np

from annotator.engine.propagation_pieces import parts_touching

if TYPE_CHECKING:
    from annotator.engine.propagate import Key


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks (0 when both are empty)."""
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b)) / union if union else 0.0


def gap_masks(lower: Key, upper: Key, up: dict[int, np.ndarray], down: dict[int, np.ndarray],
              spacing_rc: tuple[float, float], *, agree_iou: float, fill_unreached_gap: bool,
              labelled: Mapping[int, np.ndarray] | None = None,
              new_keys: Collection[int] = ()) -> dict[int, np.ndarray]:
    """The slices strictly between two keys from the runs up from `lower` and down from `upper`
    (engine.propagate's module docstring says why each rule). A re-propagation passes the label's
    masks before it (`labelled`) and the keys made since the last one (`new_keys`)."""
    blended = blend_gap(lower, upper, up, down, spacing_rc)
    if fill_unreached_gap and lower.mask.any() and upper.mask.any():
        blended.update(fill_unreached(lower, upper, blended, spacing_rc))
    if labelled:
        blended.update(kept_where_an_old_run_is_alone(lower, upper, up, down, labelled, new_keys))
    both = [i for i in blended if i in up and i in down]
    agree = [i for i in both if mask_iou(up[i], down[i]) >= agree_iou]
    disagree = [i for i in both if i not in agree]
    if disagree:
        shape = interpolate_gap(lower, upper, spacing_rc)
        # Keys that do not overlap in-plane (a correction far along a vessel that moved) have no
        # shape between them worth interpolating: it shrinks to nothing mid-way. A run confirmed by
        # meeting the other one is kept there instead (CTA false lumen, with a simulated user who
        # boxes each piece: a box on slice 44 under the key on 126 emptied slices 63-91, which the
        # run down from 126 had right, 3-D 0.74 -> 0.67; 0.79 with it).
        keys_overlap = bool(np.any(lower.mask & upper.mask))
        for i in disagree:
            more = run_with_a_piece_more(up[i], down[i])
            if more is not None:
                blended[i] = more
                continue
            confirmed = None if keys_overlap else confirmed_run(i, up, down, agree)
            blended[i] = shape[i] if confirmed is None else confirmed
    return blended


def kept_where_an_old_run_is_alone(lower: Key, upper: Key, up: dict[int, np.ndarray], down: dict[int, np.ndarray],
                                   labelled: Mapping[int, np.ndarray], new_keys: Collection[int]) -> dict[int, np.ndarray]:
    """The label's masks on the gap's slices that only the run from a key older than the last
    propagation reached (the run from the other key stopped short): that run drew them before,
    cross-checked by the other key's run then, and alone now it has nothing new to say there."""
    kept = {}
    for index in range(lower.index + 1, upper.index):
        alone = lower if index in up and index not in down else upper if index in down and index not in up else None
        if alone is not None and alone.index not in new_keys and index in labelled:
            kept[index] = labelled[index]
    return kept


def confirmed_run(index: int, up: dict[int, np.ndarray], down: dict[int, np.ndarray],
                  agree: list[int]) -> np.ndarray | None:
    """Where the two runs disagree on slice `index` but agree on slices only on one side of it, the
    run from the key on this slice's side: it met the other run beyond this slice, so it was on the
    structure all the way from its key to there; None when they agree on both sides or nowhere."""
    above = any(a > index for a in agree)
    below = any(a < index for a in agree)
    if above == below:
        return None
    return up[index] if above else down[index]


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


def run_with_a_piece_more(a: np.ndarray, b: np.ndarray, share: float = 0.8) -> np.ndarray | None:
    """Of two runs' masks on one slice, the one that holds (at least `share` of) the other and besides
    it only pieces of its own, apart from it: a piece that appears between two keys (the ascending
    aorta above the key on the descending one) is found by the run from the key that has it, never
    by the other. None when neither does: a drift or a leak grows attached to the structure."""
    for big, small in ((a, b), (b, a)):
        area = np.count_nonzero(small)
        if area == 0 or np.count_nonzero(big & small) < share * area:
            continue
        attached = parts_touching(big, small)
        if np.count_nonzero(attached & ~small) <= (1.0 - share) * area and np.count_nonzero(big & ~attached):
            return big
    return None
