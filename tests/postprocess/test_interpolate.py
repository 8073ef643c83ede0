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
