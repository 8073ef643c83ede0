"""NIfTI/NRRD/MHA loading and writing keep geometry and voxels exact (real files and round trips)."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from annotator.core.errors import InputError
from annotator.core.volume import Volume
from annotator.io import discover_series, load_volume, write_volume

NIFTI_FILES = ["nibabel_anatomical_bigendian.nii", "nibabel_example4d.nii.gz", "nibabel_someones_epi.nii.gz"]


@pytest.mark.realdata
@pytest.mark.parametrize("name", NIFTI_FILES)
def test_real_nifti_geometry_and_voxels_equal_nibabel(shared_data, name):
    path = shared_data / "nifti" / name
    img = nib.load(path)
    volume = load_volume(path)
    np.testing.assert_allclose(volume.affine_ras(), img.affine, atol=1e-6)
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4:
        data = data[..., 0]
    assert volume.shape_zyx == data.shape[::-1]
    np.testing.assert_allclose(volume.array, data.T, rtol=1e-6)
    assert volume.array.dtype.isnative


@pytest.mark.realdata
def test_real_nifti_expected_header_values(shared_data):
    import json

    expected = json.loads((shared_data / "nifti" / "expected_headers.json").read_text())
    for name, ref in expected.items():
        volume = load_volume(shared_data / "nifti" / name)
        key = next(k for k in ref if k.startswith("nibabel_affine"))
        np.testing.assert_allclose(volume.affine_ras(), np.array(ref[key]), atol=1e-3)
        assert volume.shape_zyx == tuple(ref["shape"][:3][::-1])
        stats = ref["intensity_after_scaling"]
        if len(ref["shape"]) == 3:  # 4-D stats cover all volumes
            assert float(volume.array.min()) == pytest.approx(stats["min"], abs=1e-3)
            assert float(volume.array.max()) == pytest.approx(stats["max"], abs=1e-3)
            assert float(volume.array.mean(dtype=np.float64)) == pytest.approx(stats["mean"], rel=1e-4)


@pytest.mark.realdata
def test_4d_volume_index_picks_the_time_point(shared_data):
    path = shared_data / "nifti" / "nibabel_example4d.nii.gz"
    data = np.asanyarray(nib.load(path).dataobj)
    second = load_volume(path, volume_index=1)
    np.testing.assert_array_equal(second.array, data[..., 1].T)
    assert second.metadata["n_volumes"] == 2
    with pytest.raises(InputError, match="volume 2 requested"):
        load_volume(path, volume_index=2)
    [info] = discover_series(path)
    assert info.n_volumes == 2
    assert info.shape_zyx == (24, 96, 128)
    np.testing.assert_allclose(info.affine_ras, nib.load(path).affine, atol=1e-6)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_write_then_load_round_trips_oblique_geometry(tmp_path, oblique_volume, suffix):
    path = tmp_path / f"out{suffix}"
    write_volume(oblique_volume, path)
    back = load_volume(path)
    np.testing.assert_array_equal(back.array, oblique_volume.array)
    assert back.array.dtype == np.int16
    # NIfTI-1 stores the sform as float32: 1e-4 mm at a 700 mm offset is the format's limit
    np.testing.assert_allclose(back.affine_lps(), oblique_volume.affine_lps(), atol=1e-4)
    [info] = discover_series(path)
    np.testing.assert_allclose(info.affine_ras, oblique_volume.affine_ras(), atol=1e-4)
    assert info.shape_zyx == oblique_volume.shape_zyx


def test_written_nifti_matches_nibabel_convention(tmp_path, oblique_volume):
    path = tmp_path / "out.nii.gz"
    write_volume(oblique_volume, path)
    img = nib.load(path)
    assert img.shape == oblique_volume.shape_zyx[::-1]
    np.testing.assert_allclose(img.affine, oblique_volume.affine_ras(), atol=1e-4)
    # voxel (x=2, y=3, z=4) is at the same world point in both conventions
    world_ras = img.affine @ np.array([2, 3, 4, 1.0])
    np.testing.assert_allclose(oblique_volume.index_zyx_to_world_ras(np.array([4, 3, 2])), world_ras[:3], atol=1e-4)
    assert int(np.asanyarray(img.dataobj)[2, 3, 4]) == int(oblique_volume.array[4, 3, 2])
    assert img.header.get_sform(coded=True)[1] == 1
    assert img.header.get_qform(coded=True)[1] == 1


def test_write_refuses_to_overwrite_without_flag(tmp_path, oblique_volume):
    path = tmp_path / "out.nii.gz"
    write_volume(oblique_volume, path)
    with pytest.raises(InputError, match="already exists"):
        write_volume(oblique_volume, path)
    write_volume(oblique_volume.with_array(oblique_volume.array * 0), path, overwrite=True)
    assert not load_volume(path).array.any()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]  # no temp files left


def test_write_rejects_unknown_suffix(tmp_path, oblique_volume):
    with pytest.raises(InputError, match="unsupported output type"):
        write_volume(oblique_volume, tmp_path / "out.png")


def test_bool_and_int64_arrays_are_written_in_nifti_types(tmp_path):
    mask = Volume(np.zeros((2, 3, 4), bool), spacing_zyx_mm=(1, 1, 1))
    write_volume(mask, tmp_path / "m.nii.gz")
    assert load_volume(tmp_path / "m.nii.gz").array.dtype == np.uint8
    big = Volume(np.arange(24, dtype=np.int64).reshape(2, 3, 4), spacing_zyx_mm=(1, 1, 1))
    write_volume(big, tmp_path / "b.nii")
    back = load_volume(tmp_path / "b.nii")
    assert back.array.dtype == np.int16
    np.testing.assert_array_equal(back.array, big.array)


def test_nifti_with_nan_is_refused(tmp_path):
    data = np.ones((4, 4, 3), np.float32)
    data[1, 2, 0] = np.nan
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    with pytest.raises(InputError, match="NaN") as info:
        load_volume(path)
    assert str(path) in str(info.value)


def test_nifti_with_singular_affine_is_refused(tmp_path):
    img = nib.Nifti1Image(np.ones((4, 4, 3), np.int16), None)
    header = img.header
    header["qform_code"], header["sform_code"] = 0, 1
    header["srow_x"], header["srow_y"], header["srow_z"] = [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]
    path = tmp_path / "singular.nii"
    nib.save(img, path)
    with pytest.raises(InputError, match="singular"):
        load_volume(path)


def test_zero_byte_and_corrupt_nifti_are_refused(tmp_path):
    empty = tmp_path / "empty.nii.gz"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_volume(empty)
    good = tmp_path / "good.nii"
    noise = np.random.default_rng(1).integers(-3000, 3000, (16, 16, 16)).astype(np.int16)
    nib.save(nib.Nifti1Image(noise, np.eye(4)), good)
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(gzip.compress(good.read_bytes())[:3000])
    with pytest.raises(InputError, match="truncated.nii.gz"):
        load_volume(truncated)
    garbage = tmp_path / "garbage.nii"
    garbage.write_bytes(b"not a nifti file at all" * 20)
    with pytest.raises(InputError, match="garbage.nii"):
        load_volume(garbage)


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_volume(tmp_path / "nope.nii.gz")


def test_2d_nifti_becomes_one_slice(tmp_path):
    path = tmp_path / "flat.nii"
    nib.save(nib.Nifti1Image(np.arange(12, dtype=np.int16).reshape(3, 4), np.diag([0.5, 0.5, 1, 1])), path)
    volume = load_volume(path)
    assert volume.shape_zyx == (1, 4, 3)
    assert volume.array[0, 1, 2] == 2 * 4 + 1


def test_concatenated_gzip_members_and_nifti2(tmp_path):
    data = np.random.default_rng(5).integers(-500, 500, (20, 18, 7, 3)).astype(np.int16)
    affine = np.array([[-1.5, 0, 0, 10], [0, 1.2, 0.1, -20], [0, -0.1, 1.2, 30], [0, 0, 0, 1.0]])
    plain = tmp_path / "img.nii"
    nib.save(nib.Nifti2Image(data, affine), plain)
    raw = plain.read_bytes()
    split = len(raw) // 3
    multi = tmp_path / "pigz_like.nii.gz"
    multi.write_bytes(gzip.compress(raw[:split]) + gzip.compress(raw[split:]))
    for t in range(3):
        volume = load_volume(multi, volume_index=t)
        np.testing.assert_array_equal(volume.array, data[..., t].T)
        np.testing.assert_allclose(volume.affine_ras(), affine, atol=1e-6)


def test_scaled_gz_matches_nibabel(tmp_path):
    img = nib.Nifti1Image(np.arange(60, dtype=np.uint8).reshape(5, 4, 3), np.eye(4))
    img.header.set_slope_inter(0.25, -3.0)
    path = tmp_path / "scaled.nii.gz"
    nib.save(img, path)
    volume = load_volume(path)
    np.testing.assert_allclose(volume.array, np.asanyarray(nib.load(path).dataobj).T, rtol=1e-6)
    assert volume.array.dtype == np.float32


def test_rgb_nifti_is_refused_clearly(tmp_path):
    rgb = np.zeros((4, 4, 2), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    path = tmp_path / "rgb.nii"
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), path)
    with pytest.raises(InputError, match="not a scalar image"):
        load_volume(path)


def test_folder_of_image_files_is_listed_and_loadable(tmp_path, oblique_volume):
    folder = tmp_path / "case"
    write_volume(oblique_volume, folder / "image.nii.gz")
    assert load_volume(folder).shape_zyx == oblique_volume.shape_zyx  # the only image: no choice needed
    write_volume(oblique_volume.with_array(oblique_volume.array * 0), folder / "sub" / "labels.nrrd")
    infos = discover_series(folder)
    assert sorted(i.format for i in infos) == ["nifti", "nrrd"]
    with pytest.raises(InputError, match="holds 2 images"):
        load_volume(folder)
    labels = next(i for i in infos if i.format == "nrrd")
    assert not load_volume(folder, series_uid=labels.uid).array.any()


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("codes", [(1, 0), (0, 2), (0, 0), (1, 2)])
def test_qform_sform_choice_follows_nibabel(tmp_path, suffix, codes):
    qform_code, sform_code = codes
    q_affine = np.array([[-2.0, 0, 0, 90], [0, 2.0, 0, -126], [0, 0, 2.5, -72], [0, 0, 0, 1]])
    s_affine = np.array([[-1.9, 0.1, 0, 80], [0.1, 1.9, 0, -120], [0, 0, 2.4, -70], [0, 0, 0, 1]])
    img = nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), None)
    img.set_qform(q_affine, code=qform_code)
    img.set_sform(s_affine, code=sform_code)
    path = tmp_path / f"codes{suffix}"
    nib.save(img, path)
    volume = load_volume(path)
    np.testing.assert_allclose(volume.affine_ras(), nib.load(path).affine, atol=1e-5)
    assert any("neither sform nor qform" in w for w in volume.metadata["warnings"]) == (codes == (0, 0))
