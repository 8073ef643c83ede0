"""Specks finer than a reference pixel: which holes and islands go, which stay (a click's, the
anatomy's), and that on a slice no finer than the reference nothing goes."""

from __future__ import annotations

import numpy as np

from annotator.engine.mask_specks import (
    speck_px,
    without_specks,
    without_specks_finer_than_reference,
)


def _at(shape, *pixels):
    out = np.zeros(shape, dtype=bool)
    for rc in pixels:
        out[rc] = True
    return out


def test_without_specks_fills_pinholes_and_drops_crumbs_but_keeps_what_a_click_or_the_anatomy_made():
    mask = np.zeros((40, 40), dtype=bool)
    mask[5:30, 5:30] = True
    mask[10, 10] = False                  # a pinhole
    mask[12, 20] = False                  # a pinhole a negative click made
    mask[18:24, 12:18] = False            # a real hole (36 px, a renal sinus)
    mask[35, 35] = True                   # a crumb
    mask[35:37, 5:7] = True               # a crumb of 4 px
    mask[33, 20] = True                   # a crumb a positive click asked for
    clicks = [(12, 20, False), (33, 20, True)]
    out = without_specks(mask, clicks, 5)
    assert out[10, 10]                    # filled
    assert not out[12, 20]                # kept: the click said "not here"
    assert not out[18:24, 12:18].any()    # kept: not a speck
    assert not out[35, 35]
    assert not out[35:37, 5:7].any()
    assert out[33, 20]
    assert np.count_nonzero(out ^ mask) == 1 + 1 + 4
    assert np.array_equal(without_specks(mask, clicks, 4), mask ^ _at(mask.shape, (10, 10), (35, 35)))
    # a mask that is one small piece is never dropped: it is the largest piece
    tiny = _at((10, 10), (4, 4))
    assert np.array_equal(without_specks(tiny, [], 5), tiny)


def test_a_speck_is_smaller_than_a_square_of_the_side():
    assert speck_px(1.0) == 1
    assert speck_px(0.5) == 1
    assert speck_px(2.0) == 4
    assert speck_px(3.8) == 15


def _organ_with_pinholes(side: int, organ: int) -> np.ndarray:
    mask = np.zeros((side, side), dtype=bool)
    mask[10:10 + organ, 10:10 + organ] = True
    mask[20, 20] = mask[30, 31] = False    # pinholes
    mask[20:23, 40:43] = False             # a 9-pixel hole
    mask[10 + organ + 5, 10] = True        # a crumb beside it
    return mask


def test_on_a_fine_slice_specks_finer_than_a_reference_pixel_go():
    """A 512-pixel slice is four reference pixels (128) across each way: a hole or crumb of fewer
    than 16 pixels is finer than one of them and goes; on a 128-pixel slice it is a pixel of the
    reference itself, and stays."""
    fine = _organ_with_pinholes(512, 300)
    out = without_specks_finer_than_reference(fine)
    assert out[20, 20]
    assert out[30, 31]
    assert out[20:23, 40:43].all()
    assert not out[315, 10]
    assert np.count_nonzero(out ^ fine) == 2 + 9 + 1
    coarse = _organ_with_pinholes(128, 100)
    assert np.array_equal(without_specks_finer_than_reference(coarse), coarse)
    assert np.array_equal(without_specks_finer_than_reference(fine, side_px=0.0), fine)


def test_a_small_object_on_a_fine_slice_keeps_its_fine_detail():
    """A small object on a 512-pixel slice (an adrenal, a rib) is as many pixels across as the
    objects the lengths were measured on (pixel_lengths.length_scale): its specks' limit stays near
    one pixel, so its 9-pixel hole is detail, not a speck."""
    mask = np.zeros((512, 512), dtype=bool)
    mask[100:124, 100:124] = True          # 24 px across: length_scale 1.5
    mask[110:113, 110:113] = False
    mask[105, 105] = False
    out = without_specks_finer_than_reference(mask)
    assert out[105, 105]                   # one pixel: a speck even at this scale (fewer than 3)
    assert not out[110:113, 110:113].any()
