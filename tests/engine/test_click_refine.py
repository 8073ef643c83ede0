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


def test_a_click_on_a_slip_of_a_good_edge_changes_only_the_pixels_next_to_it():
    """A mask right but for a 1-pixel slip on a faint edge: the click there may change the mask
    within 3 pixels of itself, not re-draw 6 pixels of an edge the image barely shows (the
    random walker's guess there is worse than the model's: a radius of 6 made every one of
    these masks worse, 25 wrong pixels before the clicks and 40 after)."""
    wrong_before = wrong_after = 0
    for seed in range(5):
        truth = np.zeros((60, 60), dtype=bool)
        truth[10:50, 10:50] = True
        rng = np.random.default_rng(seed)
        image = np.clip(np.where(truth, 120, 100) + rng.normal(0, 8, truth.shape), 0, 255).astype(np.uint8)
        mask = truth.copy()
        mask[28:33, 49] = False
        out = refine_with_clicks(image, mask, [(30, 49, True)], np.array([10, 10, 49, 49]))
        rows, cols = np.nonzero(out ^ mask)
        assert np.hypot(rows - 30, cols - 49).max() <= RefineParams().reach_min_px == 3.0
        wrong_before += np.count_nonzero(mask ^ truth)
        wrong_after += np.count_nonzero(out ^ truth)
    assert wrong_after < wrong_before


def test_large_regions_are_refined_at_reduced_resolution():
    truth, image = _square_scene(400, 50, 350)
    mask = truth.copy()
    mask[200:350, 300:350] = False
    out = refine_with_clicks(image, mask, [(330, 330, True)], np.array([50, 50, 349, 349]),
                             RefineParams(max_side_px=80))
    assert out[330, 330]
    assert out[320:340, 310:345].mean() > 0.9
    assert out.shape == truth.shape


def _scene_with_neighbour(seed: int = 0):
    """A thin bright crescent (the structure) hugging a large grey blob (the neighbour the model
    took instead, as the liver dome under a lung lobe's box)."""
    rr, cc = np.ogrid[:60, :60]
    blob = (rr - 32) ** 2 + (cc - 30) ** 2 <= 14 ** 2
    ring = ((rr - 32) ** 2 + (cc - 30) ** 2 <= 19 ** 2) & ~blob & (rr < 32)
    rng = np.random.default_rng(seed)
    image = np.where(ring, 200, np.where(blob, 110, 30)) + rng.normal(0, 4, blob.shape)
    return ring, blob, np.clip(image, 0, 255).astype(np.uint8)


def test_a_negative_click_in_the_core_of_a_wholly_wrong_mask_rejects_it_and_a_positive_one_starts_afresh():
    from annotator.engine.click_refine import rejects_mask

    truth, wrong, image = _scene_with_neighbour()
    params = RefineParams()
    assert rejects_mask(wrong, (32, 30, False), params)
    after = refine_with_clicks(image, wrong, [(32, 30, False)], params=params)
    assert not after.any()
    rows, cols = np.nonzero(truth)
    box = np.array([cols.min(), rows.min(), cols.max(), rows.max()], dtype=float)  # the user's box
    restarted = refine_with_clicks(image, after, [(32, 30, False), (15, 30, True)], box, params=params)
    dice = 2 * np.count_nonzero(restarted & truth) / (restarted.sum() + truth.sum())
    assert dice > 0.8
    assert not restarted[wrong].any()
    # switched off, the same click only trims around itself and most of the wrong mask stays
    kept = refine_with_clicks(image, wrong, [(32, 30, False)], params=RefineParams(reject_whole_mask=False))
    assert kept[wrong].mean() > 0.5


def test_a_negative_click_trims_when_the_mask_is_not_one_compact_wrong_piece():
    from annotator.engine.click_refine import rejects_mask

    params = RefineParams()
    truth, wrong, _ = _scene_with_neighbour()
    assert not rejects_mask(wrong, (32, 30, True), params)      # a positive click
    assert not rejects_mask(wrong, (32, 44, False), params)     # near the edge: a trim
    two = wrong.copy()
    two[2:6, 2:6] = True
    assert not rejects_mask(two, (32, 30, False), params)       # another piece may be right
    vessel = np.zeros((40, 120), dtype=bool)
    vessel[15:25, 5:115] = True                                  # long and thin: a wrong end, not a wrong vessel
    assert not rejects_mask(vessel, (20, 10, False), params)


def test_a_negative_click_on_a_filled_hole_trims_it_instead_of_rejecting_the_whole_mask():
    """A vertebra mask that filled the dark spinal canal: a negative click in the canal lies in the
    core of one compact piece, as a click on a wholly wrong object does, but on tissue unlike the
    rest of the mask, so only that part goes."""
    from annotator.engine.click_refine import looks_like_the_mask, rejects_mask

    mask = np.zeros((50, 60), dtype=bool)
    mask[10:41, 5:56] = True                                   # the mask: bone and the canal it filled
    rr, cc = np.ogrid[:50, :60]
    canal = (rr - 25) ** 2 + (cc - 22) ** 2 <= 4 ** 2
    rng = np.random.default_rng(0)
    image = np.where(mask & ~canal, 220, np.where(canal, 90, 60)) + rng.normal(0, 5, mask.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    params = RefineParams()
    click = (25, 22, False)
    assert rejects_mask(mask, click, params)                   # the shape alone says "wrong object"
    assert not looks_like_the_mask(image, mask, click, params)
    box = np.array([5, 10, 55, 40])
    after = refine_with_clicks(image, mask, [click], box, params=params)
    assert not after[25, 22]
    assert after[mask & ~canal].mean() > 0.95                  # the bone stays
    # on bone-like grey the same click rejects the whole mask, as before
    bone = np.clip(np.where(mask, 220, 60) + rng.normal(0, 5, mask.shape), 0, 255).astype(np.uint8)
    assert looks_like_the_mask(bone, mask, click, params)
    assert not refine_with_clicks(bone, mask, [click], box, params=params).any()
