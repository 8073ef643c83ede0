import numpy as np
import pytest
import SimpleITK as sitk

from annotator.core.volume import Volume, grid_differences


def _oblique_volume():
    angle = np.deg2rad(17)
    direction = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    return Volume(arr, (2.5, 0.8, 0.7), (-10.0, 20.5, 30.25), direction, modality="CT")


def test_index_to_world_matches_simpleitk():
    vol = _oblique_volume()
    img = sitk.GetImageFromArray(vol.array)
    img.SetSpacing(vol.spacing_xyz_mm)
    img.SetOrigin(vol.origin_lps_mm)
    img.SetDirection(vol.direction_lps.ravel().tolist())
    for index_zyx in [(0, 0, 0), (3, 4, 5), (1, 2, 3)]:
        expected = img.TransformIndexToPhysicalPoint(tuple(int(v) for v in index_zyx[::-1]))
        np.testing.assert_allclose(vol.index_zyx_to_world_lps(index_zyx), expected, atol=1e-9)
        np.testing.assert_allclose(vol.world_lps_to_index_zyx(expected), index_zyx, atol=1e-9)


def test_affine_ras_flips_lps_signs():
    vol = _oblique_volume()
    ras = vol.affine_ras()
    lps = vol.affine_lps()
    np.testing.assert_allclose(ras[:2], -lps[:2])
    np.testing.assert_allclose(ras[2:], lps[2:])
    world = vol.index_zyx_to_world_ras((1, 2, 3))
    np.testing.assert_allclose(world, (ras @ np.array([3, 2, 1, 1.0]))[:3])


def test_content_id_stable_and_sensitive():
    vol = _oblique_volume()
    same = Volume(vol.array.copy(), vol.spacing_zyx_mm, vol.origin_lps_mm, vol.direction_lps)
    big_endian = Volume(vol.array.astype(">i2"), vol.spacing_zyx_mm, vol.origin_lps_mm, vol.direction_lps)
    assert vol.content_id == same.content_id == big_endian.content_id
    changed = vol.array.copy()
    changed[0, 0, 0] += 1
    assert Volume(changed, vol.spacing_zyx_mm, vol.origin_lps_mm, vol.direction_lps).content_id != vol.content_id
    shifted = Volume(vol.array, vol.spacing_zyx_mm, (0.0, 0.0, 0.0), vol.direction_lps)
    assert shifted.content_id != vol.content_id


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spacing_zyx_mm": (0, 1, 1)}, "spacing"),
        ({"origin_lps_mm": (np.nan, 0, 0)}, "origin"),
        ({"direction_lps": np.zeros((3, 3))}, "singular"),
    ],
)
def test_bad_geometry_is_refused(kwargs, message):
    base = {"spacing_zyx_mm": (1, 1, 1)}
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Volume(np.zeros((2, 2, 2)), **base)


def test_grid_differences_names_each_difference():
    vol = _oblique_volume()
    other = Volume(np.zeros((4, 5, 7)), (2.5, 0.8, 0.8), (0, 0, 0))
    diffs = grid_differences(vol, other)
    assert any("shape" in d for d in diffs)
    assert any("spacing" in d for d in diffs)
    assert any("origin" in d for d in diffs)
    assert any("direction" in d for d in diffs)
    assert grid_differences(vol, vol) == []
