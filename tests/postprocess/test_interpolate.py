"""Shape interpolation between slice masks (signed-distance blending)."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.postprocess.interpolate import blend_masks, fill_between, signed_distance


def _disk(shape, centre, radius):
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    return (rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= radius ** 2


def test_signed_distance_is_negative_inside_and_positive_outside():
    mask = _disk((30, 30), (15, 15), 5)
    sdf = signed_distance(mask)
    assert (sdf[mask] < 0).all()
    assert (sdf[~mask] > 0).all()
    np.testing.assert_array_equal(sdf < 0, mask)  # thresholding gives the mask back
    assert np.isinf(signed_distance(np.zeros((4, 4), bool))).all()


def test_a_disk_moving_and_growing_is_interpolated_in_between():
    a = _disk((60, 60), (30, 24), 8)
    b = _disk((60, 60), (30, 36), 12)
    middle = blend_masks(a, b, 0.5)
    cols = np.nonzero(middle)[1]
    assert cols.mean() == pytest.approx(30, abs=1.0)
    assert a.sum() < middle.sum() < b.sum()
    steps = fill_between(a, b, 3)
    assert len(steps) == 3
    centres = [np.nonzero(m)[1].mean() for m in steps]
    assert centres == sorted(centres)
    np.testing.assert_array_equal(blend_masks(a, b, 0.0), a)
    np.testing.assert_array_equal(blend_masks(a, b, 1.0), b)


def test_towards_an_empty_slice_the_shape_shrinks_to_its_core():
    a = _disk((40, 40), (20, 20), 10)
    empty = np.zeros_like(a)
    sizes = [int(m.sum()) for m in fill_between(a, empty, 3)]
    assert a.sum() > sizes[0] > sizes[1] > sizes[2] > 0
    assert not blend_masks(a, empty, 1.0).any()
    assert not blend_masks(empty, empty, 0.5).any()
    with pytest.raises(ValueError, match="within 0..1"):
        blend_masks(a, empty, 1.5)


def test_fill_between_slices_fills_gaps_only_inside_and_never_over_other_labels():
    from annotator.postprocess.interpolate import fill_between_slices

    a = np.zeros((9, 20, 20), np.uint8)
    a[1, 5:10, 5:10] = 3
    a[4, 5:13, 5:13] = 3
    a[5, 5:13, 5:13] = 3  # adjacent slices: no gap
    a[2, 7, 7] = 9  # another label inside the gap stays
    out = fill_between_slices(a, 3, axis=0, spacing_zyx_mm=(2.0, 1.0, 1.0))
    assert out[2, 7, 7] == 9
    for z in (2, 3):
        filled = out[z] == 3
        assert 20 <= filled.sum() <= 64  # between the 25- and 64-pixel squares
    assert not (out[0] == 3).any()
    assert not (out[6:] == 3).any()  # outside the outermost slices nothing is added
    assert np.array_equal(out[[1, 4, 5]], a[[1, 4, 5]])
    # along another axis the same rule holds
    b = np.moveaxis(a, 0, 2).copy()
    assert np.array_equal(np.moveaxis(fill_between_slices(b, 3, axis=2, spacing_zyx_mm=(1.0, 1.0, 2.0)), 2, 0), out)
