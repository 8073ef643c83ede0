import numpy as np
import pytest

from annotator.core.geometry import (
    CT_PRESETS,
    Window,
    apply_window,
    array_axis_plane,
    default_window,
    display_orientation,
    percentile_window,
    plane_array_axis,
    slice_2d,
    slice_pixel_to_index_zyx,
)
from annotator.core.volume import Volume


def _vol(direction=None, shape=(4, 5, 6)):
    return Volume(np.zeros(shape, np.int16), (2.5, 0.8, 0.7), (0, 0, 0), np.eye(3) if direction is None else direction)


def test_axial_volume_planes():
    vol = _vol()
    assert plane_array_axis(vol, "axial") == 0
    assert plane_array_axis(vol, "coronal") == 1
    assert plane_array_axis(vol, "sagittal") == 2
    assert array_axis_plane(vol, 0) == "axial"


def test_sagittal_acquisition_planes():
    # index x -> world P, index y -> world -S, index z -> world L (a typical sagittal MR)
    direction = np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], dtype=float)
    vol = _vol(direction)
    assert plane_array_axis(vol, "sagittal") == 0
    assert plane_array_axis(vol, "axial") == 1
    assert plane_array_axis(vol, "coronal") == 2


def test_slice_2d_axes():
    arr = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert slice_2d(arr, 0, 1).shape == (3, 4)
    assert slice_2d(arr, 1, 2).shape == (2, 4)
    assert slice_2d(arr, 2, 3).shape == (2, 3)
    np.testing.assert_array_equal(slice_2d(arr, 2, 3), arr[:, :, 3])
    with pytest.raises(IndexError):
        slice_2d(arr, 0, 2)
    assert slice_pixel_to_index_zyx(1, 2, 0.0, 3.0) == (0.0, 2.0, 3.0)


def test_display_orientation_radiological_axial_and_coronal():
    vol = _vol()
    axial = display_orientation(vol, 0)
    # LPS identity: columns run to patient left, shown on screen right -> no flip; rows posterior downwards.
    assert (axial.transpose, axial.flip_rows, axial.flip_cols) == (False, False, False)
    assert axial.edge_letters == ("R", "L", "A", "P")
    coronal = display_orientation(vol, 1)
    assert coronal.flip_rows  # z grows superior, shown upwards
    assert coronal.edge_letters[2:] == ("S", "I")
    assert coronal.row_spacing_mm == 2.5
    assert coronal.col_spacing_mm == 0.7


def test_display_round_trip_and_transposed_case():
    direction = np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], dtype=float)
    vol = _vol(direction, shape=(3, 5, 7))
    for axis in range(3):
        orient = display_orientation(vol, axis)
        raw = np.arange(np.prod(slice_2d(vol.array, axis, 0).shape)).reshape(slice_2d(vol.array, axis, 0).shape)
        disp = orient.apply(raw)
        for r in range(disp.shape[0]):
            for c in range(disp.shape[1]):
                rr, cc = orient.display_to_raw(r, c, raw.shape)
                assert disp[r, c] == raw[int(rr), int(cc)]
                assert orient.raw_to_display(rr, cc, raw.shape) == (r, c)


def test_apply_window_matches_litemedsam_recipe():
    img = np.array([-1000, -160, 40, 240, 3000], dtype=np.int16)
    out = apply_window(img, CT_PRESETS["soft tissue"])
    expected = ((np.clip(img, -160, 240) + 160) / 400 * 255).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8


def test_window_bounds_and_presets():
    w = Window.from_bounds(-160, 240)
    assert (w.center, w.width) == (40, 400)
    assert w.key() == (-160.0, 240.0)
    with pytest.raises(ValueError, match="must exceed"):
        Window.from_bounds(5, 5)


def test_default_window_ct_and_mr():
    ct = Volume(np.full((2, 2, 2), -1000, np.int16), (1, 1, 1), modality="CT")
    assert default_window(ct) == CT_PRESETS["soft tissue"]
    mr = np.zeros((10, 10, 10), np.float32)
    mr[2:8] = np.linspace(1, 100, 600).reshape(6, 10, 10)
    w = percentile_window(mr)
    assert w.low == pytest.approx(np.percentile(mr[mr > 0], 0.5))
    assert w.high == pytest.approx(np.percentile(mr[mr > 0], 99.5))
    assert default_window(Volume(mr, (1, 1, 1), modality="MR")) == w
