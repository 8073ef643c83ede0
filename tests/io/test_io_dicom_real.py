"""Every real DICOM case in ../shared/data loads with the reference geometry and voxel values."""

from __future__ import annotations

import hashlib
import json

import nibabel as nib
import numpy as np
import pytest

from annotator.io import discover_series, load_volume
from annotator.io.dicom import pixels as dicom_pixels

pytestmark = pytest.mark.realdata


def _canonical(volume):
    img = nib.Nifti1Image(np.ascontiguousarray(volume.array.T), volume.affine_ras())
    return nib.as_closest_canonical(img)


def _assert_matches_reference(volume, ref):
    can = _canonical(volume)
    assert list(can.shape) == list(ref["canonical_RAS_shape"][:3])
    np.testing.assert_allclose(can.affine, np.array(ref["canonical_RAS_affine"]), atol=1e-3)
    np.testing.assert_allclose(volume.spacing_xyz_mm, ref["voxel_size_mm"], atol=1e-4)
    data = np.asanyarray(can.dataobj)
    inv = np.linalg.inv(can.affine)
    for probe in ref["probe_voxels_canonical_vol0"]:
        ijk = tuple(np.rint(inv @ np.r_[probe["ras_mm"], 1.0])[:3].astype(int))
        assert float(data[ijk]) == pytest.approx(probe["value"], abs=1e-2), probe


def _reference_volumes(path):
    """Reference NIfTI (dcm2niix) as canonical-RAS arrays, one per volume."""
    ref = nib.as_closest_canonical(nib.load(path))
    data = np.asanyarray(ref.dataobj)
    return ref, [data] if data.ndim == 3 else [data[..., t] for t in range(data.shape[3])]


def test_ct_philips_sorted_by_position_with_hu(shared_data):
    case = shared_data / "dicom" / "ct_philips_ingenuity_axial_5mm"
    exp = json.loads((case / "expected" / "expected_geometry.json").read_text())
    [ref] = exp["series"]
    volume = load_volume(case / "dcm")
    _assert_matches_reference(volume, ref)
    assert volume.array.dtype == np.int16
    stats = ref["intensity"]
    assert int(volume.array.min()) == stats["min"]
    assert int(volume.array.max()) == stats["max"]
    assert int(volume.array.sum(dtype=np.int64)) == int(stats["sum"])
    itk = ref["itk_LPS"]
    np.testing.assert_allclose(volume.origin_lps_mm, itk["origin_LPS"], atol=1e-3)
    assert volume.metadata["series_instance_uid"] == ref["SeriesInstanceUID"]
    assert len(volume.metadata["sop_instance_uids"]) == 28
    # slice z is the file whose IPP is z-th along the normal, whatever its name
    z_of_files = [float(np.asarray(__import__("pydicom").dcmread(f, stop_before_pixels=True).ImagePositionPatient)[2])
                  for f in volume.metadata["source_files"]]
    assert z_of_files == sorted(z_of_files)


def test_ge_two_series_split_and_time_points_ordered(shared_data):
    case = shared_data / "dicom" / "mr_ge_mr750_two_series_mixed"
    exp = json.loads((case / "expected" / "expected_geometry.json").read_text())
    infos = {i.uid: i for i in discover_series(case / "dcm")}
    assert len(infos) == 2
    for ref in exp["series"]:
        info = infos[ref["SeriesInstanceUID"]]
        assert info.shape_zyx == (15, 64, 64)
        assert info.n_volumes == 10
        assert info.n_files == 150
        ref_img, ref_volumes = _reference_volumes(case / "expected" / ref["reference_nifti"])
        np.testing.assert_allclose(info.affine_ras, load_volume(case / "dcm", series_uid=info.uid).affine_ras())
        for t in (0, 4, 9):  # time order must match dcm2niix's
            volume = load_volume(case / "dcm", series_uid=info.uid, volume_index=t)
            if t == 0:
                _assert_matches_reference(volume, ref)
            can = _canonical(volume)
            np.testing.assert_allclose(can.affine, ref_img.affine, atol=1e-3)
            np.testing.assert_array_equal(np.asanyarray(can.dataobj), ref_volumes[t])


def test_folder_with_two_series_needs_a_choice(shared_data):
    from annotator.core.errors import InputError

    with pytest.raises(InputError, match="holds 2 series"):
        load_volume(shared_data / "dicom" / "mr_ge_mr750_two_series_mixed" / "dcm")


def test_siemens_mosaic_all_transfer_syntaxes(shared_data):
    case = shared_data / "dicom" / "mr_siemens_trio_transfer_syntaxes"
    exp = json.loads((case / "expected" / "expected_geometry.json").read_text())
    ref_img, [ref_data] = _reference_volumes(case / "expected" / "1.nii")
    infos = discover_series(case / "dcm")
    assert len(infos) == 4  # same SeriesInstanceUID, different SeriesNumber: 4 images, not 4 time points
    assert sorted(i.series_number for i in infos) == [1, 4, 5, 9]
    for info in infos:
        [file] = info.files
        _, raw = dicom_pixels.decode_file(file)
        assert hashlib.md5(np.ascontiguousarray(raw, "<u2").tobytes()).hexdigest() == \
            exp["per_file_decode"][file.rsplit("/", 1)[-1]]["md5_of_native_little_endian_pixels"]
        volume = load_volume(case / "dcm", series_uid=info.uid)
        _assert_matches_reference(volume, exp["demosaiced_reference"])
        np.testing.assert_array_equal(np.asanyarray(_canonical(volume).dataobj), ref_data)


def test_enhanced_multiframe_vida_four_time_points(shared_data):
    case = shared_data / "dicom" / "mr_siemens_vida_xa10_enhanced_multiframe"
    exp = json.loads((case / "expected" / "expected_geometry.json").read_text())
    [info] = discover_series(case / "dcm")
    assert info.shape_zyx == (6, 64, 64)
    assert info.n_volumes == 4
    ref_img, ref_volumes = _reference_volumes(case / "expected" / "Siemens_REST1_w_SMS_PF7-8_6.nii")
    for t in range(4):
        volume = load_volume(case / "dcm", volume_index=t)
        if t == 0:
            _assert_matches_reference(volume, exp["4d_reference"])
        np.testing.assert_array_equal(np.asanyarray(_canonical(volume).dataobj), ref_volumes[t])
        itk = exp["per_file_itk_LPS"][f"6_{t + 1}.dcm"]
        np.testing.assert_allclose(volume.origin_lps_mm, itk["origin_LPS"], atol=1e-3)
        assert sorted(volume.metadata["frame_numbers"]) == [1, 2, 3, 4, 5, 6]
        assert {f.rsplit("/", 1)[-1] for f in volume.metadata["source_files"]} == {f"6_{t + 1}.dcm"}


def test_nema_small_transfer_syntaxes_decode_identically(shared_data):
    case = shared_data / "dicom" / "mr_nema_small_ts_variants"
    exp = json.loads((case / "expected" / "expected_geometry.json").read_text())
    arrays = []
    for name, ref in exp["per_file_decode"].items():
        volume = load_volume(case / "dcm" / name)
        assert volume.shape_zyx == (1, 64, 64)
        _, raw = dicom_pixels.decode_file(str(case / "dcm" / name))
        assert hashlib.md5(np.ascontiguousarray(raw, "<i2").tobytes()).hexdigest() == ref["md5_of_native_little_endian_pixels"]
        arrays.append(volume.array)
        itk = exp["itk_LPS_MR_small"]
        np.testing.assert_allclose(volume.origin_lps_mm, itk["origin_LPS"], atol=1e-3)
        np.testing.assert_allclose(volume.spacing_xyz_mm[:2], itk["spacing"][:2], atol=1e-6)
    assert all(np.array_equal(a, arrays[0]) for a in arrays)


def test_discovery_reads_no_pixel_data(shared_data, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("pixel data decoded during discovery")

    monkeypatch.setattr(dicom_pixels, "decode_file", fail)
    for case in ("ct_philips_ingenuity_axial_5mm", "mr_siemens_trio_transfer_syntaxes",
                 "mr_siemens_vida_xa10_enhanced_multiframe"):
        assert discover_series(shared_data / "dicom" / case / "dcm")


def test_dcm2niix_output_lands_on_our_dicom_grid_voxel_for_voxel(shared_data):
    """dcm2niix stores the mosaic with flipped rows; read_labels_onto must undo that exactly."""
    from annotator.io import read_labels_onto

    case = shared_data / "dicom" / "mr_siemens_trio_transfer_syntaxes"
    volume = load_volume(case / "dcm" / "1.dcm")
    on_grid = read_labels_onto(volume, case / "expected" / "1.nii")  # integer MR values act as labels
    np.testing.assert_array_equal(on_grid.array, volume.array)
