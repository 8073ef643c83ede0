"""The random-walker refinement behind a box model's clicks: seeds, locality of a click, and the
reduced-resolution path for large regions."""

from __future__ import annotations

import numpy as np

from annotator.engine.click_refine import (
    BACKGROUND,
    FOREGROUND,
    RefineParams,
    refine_with_clicks,
    seeds_for,
)


def _square_scene(size: int, lo: int, hi: int, seed: int = 0):
    truth = np.zeros((size, size), dtype=bool)
    truth[lo:hi, lo:hi] = True
    rng = np.random.default_rng(seed)
    image = np.clip(np.where(truth, 180, 60) + rng.normal(0, 5, truth.shape), 0, 255).astype(np.uint8)
    return truth, image


def test_seeds_hold_the_core_the_far_background_and_every_click():
    mask = np.zeros((30, 30), dtype=bool)
    mask[5:25, 5:25] = True
    seeds = seeds_for(mask, [(15, 15, False), (2, 2, True)], RefineParams())
    assert seeds[15, 15] == BACKGROUND  # a negative click inside the core overrides it
    assert seeds[2, 2] == FOREGROUND
    assert seeds[13, 14] == 0  # cleared around the negative click
    assert seeds[12, 17] == FOREGROUND  # the rest of the core
    assert seeds[0, 15] == BACKGROUND  # the region's border


def test_a_click_changes_the_mask_only_near_itself():
    truth, image = _square_scene(60, 10, 50)
    mask = truth.copy()
    mask[10:50, 44:50] = False   # missed on the right, near the click
    mask[10:14, 10:50] = False   # and missed on the top, far from it
    out = refine_with_clicks(image, mask, [(30, 47, True)], np.array([10, 10, 49, 49]))
    assert out[25:35, 44:50].all()           # fixed where the click points
    assert not out[10:14, 10:40].any()       # left alone far away
    assert out[truth & mask].all()


def test_large_regions_are_refined_at_reduced_resolution():
    truth, image = _square_scene(400, 50, 350)
    mask = truth.copy()
    mask[200:350, 300:350] = False
    out = refine_with_clicks(image, mask, [(330, 330, True)], np.array([50, 50, 349, 349]),
                             RefineParams(max_side_px=80))
    assert out[330, 330]
    assert out[320:340, 310:345].mean() > 0.9
    assert out.shape == truth.shape
