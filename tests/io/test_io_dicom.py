"""DICOM loading rules on small synthetic series: sorting, rescale, splitting, time points, irregular stacks."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from support.dicom_factory import write_enhanced_mr, write_series

from annotator.core.errors import InputError
from annotator.io import discover_series, load_volume


def _stored(n=6, rows=5, cols=4, seed=0):
    return np.random.default_rng(seed).integers(0, 3000, size=(n, rows, cols)).astype(np.int16)


def test_slices_sorted_by_position_not_name_or_instance_number(tmp_path):
    stored = _stored()
    names = [f"IM{v}" for v in (3, 10, 1, 22, 100, 5)]  # lexical order != spatial order
    write_series(tmp_path, stored, names=names, instance_numbers=[6, 1, 4, 2, 5, 3])
    volume = load_volume(tmp_path)
    np.testing.assert_array_equal(volume.array, stored.astype(np.int32) - 1024)
    assert volume.array.dtype == np.int16
    assert volume.spacing_zyx_mm == pytest.approx((2.5, 0.8, 0.7))
    np.testing.assert_allclose(volume.origin_lps_mm, (-50, -60, 100))
    assert [p.rsplit("/", 1)[-1] for p in volume.metadata["source_files"]] == names


def test_descending_positions_and_oblique_orientation(tmp_path):
    stored = _stored()
    a = np.radians(20)
    iop = (1, 0, 0, 0, np.cos(a), np.sin(a))
    normal = np.cross(iop[:3], iop[3:])
    positions = [np.array([10.0, 20.0, 30.0]) + normal * 3.0 * k for k in range(6)]
    # files written in reverse spatial order
    write_series(tmp_path, stored[::-1], positions=positions[::-1], iop=iop)
    volume = load_volume(tmp_path)
    np.testing.assert_array_equal(volume.array, stored.astype(np.int32) - 1024)
    np.testing.assert_allclose(volume.origin_lps_mm, positions[0], atol=1e-5)
    np.testing.assert_allclose(volume.direction_lps[:, 2], normal, atol=1e-6)
    # voxel (z=4, y=2, x=1) centre: IPP_4 + x*dx*row + y*dy*col
    expected = positions[4] + 1 * 0.7 * np.array(iop[:3]) + 2 * 0.8 * np.array(iop[3:])
    np.testing.assert_allclose(volume.index_zyx_to_world_lps(np.array([4, 2, 1])), expected, atol=1e-5)


def test_per_slice_float_rescale(tmp_path):
    stored = _stored()
    slopes = [0.5, 1.25, 2.0, 0.5, 1.0, 3.0]
    intercepts = [-10.0, 0.0, 5.5, 1.0, -1024.0, 0.25]
    write_series(tmp_path, stored, slope=slopes, intercept=intercepts)
    volume = load_volume(tmp_path)
    assert volume.array.dtype == np.float32
    expected = stored * np.array(slopes)[:, None, None] + np.array(intercepts)[:, None, None]
    np.testing.assert_allclose(volume.array, expected, rtol=1e-6)


def test_no_rescale_keeps_stored_type(tmp_path):
    stored = _stored()
    write_series(tmp_path, stored, intercept=0.0)
    volume = load_volume(tmp_path)
    assert volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array, stored)


def test_repeated_positions_are_time_points_ordered_by_acquisition_time(tmp_path):
    uid = generate_uid()
    volumes = [_stored(n=4, seed=s) for s in range(3)]
    # written interleaved and with instance numbers that do not follow time
    times = ["101500.0", "100000.0", "103000.5"]
    for t, (stored, time) in enumerate(zip(volumes, times, strict=True)):
        write_series(tmp_path, stored, series_uid=uid, names=[f"t{t}_s{k}" for k in range(4)],
                     acquisition_times=[time] * 4, instance_numbers=[100 - t * 4 - k for k in range(4)])
    [info] = discover_series(tmp_path)
    assert info.shape_zyx == (4, 5, 4)
    assert info.n_volumes == 3
    assert info.n_files == 12
    order = np.argsort([float(t) for t in times])
    for index, source in enumerate(order):
        np.testing.assert_array_equal(load_volume(tmp_path, volume_index=index).array,
                                      volumes[source].astype(np.int32) - 1024)
    with pytest.raises(InputError, match="volume 3 requested"):
        load_volume(tmp_path, volume_index=3)


def test_series_split_by_orientation_and_size(tmp_path):
    uid = generate_uid()
    write_series(tmp_path / "a", _stored(), series_uid=uid)
    write_series(tmp_path / "b", _stored(n=3), series_uid=uid, iop=(1, 0, 0, 0, 0, -1))  # coronal
    write_series(tmp_path / "c", _stored(n=2, rows=7), series_uid=uid,
                 positions=[(0, 0, -200.0), (0, 0, -197.5)])
    infos = discover_series(tmp_path)
    assert len(infos) == 3
    assert {i.series_instance_uid for i in infos} == {uid}
    assert sorted(i.shape_zyx for i in infos) == [(2, 7, 4), (3, 5, 4), (6, 5, 4)]
    assert sorted(i.orientation for i in infos) == ["axial", "axial", "coronal"]
    with pytest.raises(InputError, match="cannot be one volume"):
        load_volume(tmp_path, series_uid=uid)
    coronal = next(i for i in infos if i.orientation == "coronal")
    volume = load_volume(tmp_path, series_uid=coronal.uid)
    assert volume.shape_zyx == (3, 5, 4)


def test_two_series_in_one_folder_are_listed_in_the_error(tmp_path):
    write_series(tmp_path / "one", _stored(), description="first")
    write_series(tmp_path / "two", _stored(n=3), description="second")
    with pytest.raises(InputError, match=r"holds 2 series.*first.*second|holds 2 series.*second.*first"):
        load_volume(tmp_path)
    with pytest.raises(InputError, match="no series with UID"):
        load_volume(tmp_path, series_uid="1.2.3")


def test_missing_slice_is_refused_with_its_position(tmp_path):
    stored = _stored()
    paths = write_series(tmp_path, stored)
    paths[3].unlink()
    [info] = discover_series(tmp_path)  # listed, with the problem as a warning
    assert any("missing" in w for w in info.warnings)
    with pytest.raises(InputError, match=r"1 slice\(s\) missing.*105\.000 and 110\.000 mm"):
        load_volume(tmp_path)


def test_uneven_gaps_refused_then_resampled_on_request(tmp_path):
    stored = np.zeros((5, 4, 3), np.int16)
    z = np.array([0.0, 2.0, 4.0, 7.0, 10.0])
    for k in range(5):
        stored[k] = int(z[k] * 10)  # value = 10 * z: linear in z, so linear resampling is exact
    write_series(tmp_path, stored, positions=[(0.0, 0.0, v) for v in z], intercept=0.0)
    with pytest.raises(InputError, match="uneven slice gaps"):
        load_volume(tmp_path)
    volume = load_volume(tmp_path, regularize=True)
    assert volume.metadata["resampled"] is True
    assert any("resampled" in w for w in volume.metadata["warnings"])
    assert volume.spacing_zyx_mm[0] == pytest.approx(2.0)
    assert volume.shape_zyx == (6, 4, 3)
    np.testing.assert_allclose(volume.origin_lps_mm, (0, 0, 0), atol=1e-6)
    world_z = volume.index_zyx_to_world_lps(np.stack([np.arange(6), np.zeros(6), np.zeros(6)], 1))[:, 2]
    np.testing.assert_allclose(volume.array[:, 1, 1], np.rint(world_z * 10), atol=0)


def test_gantry_tilt_is_refused_then_resampled_in_patient_space(tmp_path):
    tilt = np.radians(15)
    iop = (1, 0, 0, 0, np.cos(tilt), np.sin(tilt))  # tilted slice planes
    n, rows, cols, dy, dx = 8, 12, 6, 1.0, 1.0
    positions = [np.array([0.0, 0.0, 2.0 * k]) for k in range(n)]  # table moves along S only
    row_cos, col_cos = np.array(iop[:3]), np.array(iop[3:])
    stored = np.zeros((n, rows, cols), np.int16)
    for k in range(n):
        for j in range(rows):
            world = positions[k] + col_cos * dy * j
            stored[k, j, :] = int(round(100 + 10 * world[1] + 20 * world[2]))  # linear in world
    write_series(tmp_path, stored, positions=positions, iop=iop, pixel_spacing=(dy, dx), intercept=0.0)
    [info] = discover_series(tmp_path)
    assert any("tilt" in w for w in info.warnings)
    with pytest.raises(InputError, match="gantry tilt"):
        load_volume(tmp_path)
    volume = load_volume(tmp_path, regularize=True)
    direction = np.asarray(volume.direction_lps)
    np.testing.assert_allclose(direction.T @ direction, np.eye(3), atol=1e-9)  # a regular, orthogonal grid
    np.testing.assert_allclose(np.abs(direction[:, 2]), (0, 0, 1), atol=1e-9)  # stacked along the table
    # every voxel inside the source stack holds the linear function of its own world position
    idx = np.stack(np.meshgrid(*(np.arange(n) for n in volume.shape_zyx), indexing="ij"), -1).reshape(-1, 3)
    world = volume.index_zyx_to_world_lps(idx)
    source_axes = np.column_stack([row_cos * dx, col_cos * dy, [0.0, 0.0, 2.0]])  # sheared source grid
    ijk = np.linalg.solve(source_axes, (world - positions[0]).T).T
    inside = np.all((ijk >= 0) & (ijk <= [cols - 1, rows - 1, n - 1]), axis=1)
    assert inside.sum() > 0.5 * volume.array.size
    got = volume.array.reshape(-1)[inside].astype(float)
    want = 100 + 10 * world[inside, 1] + 20 * world[inside, 2]
    np.testing.assert_allclose(got, want, atol=1.0)  # source and output are rounded to integers


def test_enhanced_multiframe_mixed_types_split_with_own_rescale(tmp_path):
    stored = _stored(n=6, rows=4, cols=3)
    positions = [(0.0, 0.0, float(z)) for z in (0, 0, 3, 3, 6, 6)]
    frame_types = [("ORIGINAL", "PRIMARY", "M", "MAGNITUDE"), ("ORIGINAL", "PRIMARY", "P", "PHASE")] * 3
    slopes = [1.0, 2.0] * 3
    intercepts = [0.0, -4096.0] * 3
    write_enhanced_mr(tmp_path / "mixed.dcm", stored, frame_types=frame_types, positions=positions,
                      slopes=slopes, intercepts=intercepts)
    infos = discover_series(tmp_path)
    assert len(infos) == 2
    assert all(i.shape_zyx == (3, 4, 3) and i.n_volumes == 1 for i in infos)
    results = {}
    for info in infos:
        volume = load_volume(tmp_path, series_uid=info.uid)
        results[tuple(volume.metadata["frame_numbers"])] = volume
    magnitude = results[(1, 3, 5)]
    phase = results[(2, 4, 6)]
    np.testing.assert_array_equal(magnitude.array, stored[0::2])
    np.testing.assert_array_equal(phase.array, stored[1::2].astype(np.int32) * 2 - 4096)
    assert magnitude.spacing_zyx_mm == pytest.approx((3.0, 2.0, 1.5))


def test_single_2d_image_without_geometry(tmp_path):
    paths = write_series(tmp_path, _stored(n=1), intercept=0.0)
    ds = pydicom.dcmread(paths[0])
    del ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing
    ds.ImagerPixelSpacing = ["0.15", "0.15"]
    ds.Modality = "DX"
    ds.save_as(paths[0])
    volume = load_volume(paths[0])
    assert volume.shape_zyx == (1, 5, 4)
    assert volume.spacing_zyx_mm[1:] == pytest.approx((0.15, 0.15))
    assert any("no patient position" in w for w in volume.metadata["warnings"])
    assert volume.modality == "DX"


def test_rgb_multiframe_cine_becomes_a_greyscale_stack(tmp_path):
    paths = write_series(tmp_path, _stored(n=1), intercept=0.0)
    ds = pydicom.dcmread(paths[0])
    rgb = np.zeros((3, 5, 4, 3), np.uint8)
    rgb[1, ..., 0] = 255
    rgb[2] = 100
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames = 3
    ds.PixelData = rgb.tobytes()
    del ds.RescaleSlope, ds.RescaleIntercept
    ds.Modality = "US"
    ds.save_as(paths[0])
    volume = load_volume(paths[0])
    assert volume.shape_zyx == (3, 5, 4)
    np.testing.assert_allclose(volume.array[:, 0, 0], [0, 255 * 0.299, 100], atol=0.01)
    assert any("greyscale" in w for w in volume.metadata["warnings"])


def test_non_dicom_files_in_folder_are_ignored(tmp_path):
    stored = _stored()
    write_series(tmp_path / "series", stored)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "series" / "DICOMDIR").write_bytes(b"\0" * 200)
    (tmp_path / ".hidden").write_bytes(b"x")
    volume = load_volume(tmp_path)
    assert volume.shape_zyx == (6, 5, 4)


def test_metadata_contract_keys(tmp_path):
    write_series(tmp_path, _stored())
    meta = load_volume(tmp_path).metadata
    for key in ("source_path", "series_instance_uid", "study_instance_uid", "frame_of_reference_uid",
                "series_description", "sop_instance_uids", "source_files", "patient_name", "patient_id",
                "patient_birth_date", "warnings", "resampled"):
        assert key in meta, key
    assert len(meta["sop_instance_uids"]) == 6
    assert meta["patient_name"] == "Test^Patient"
    assert meta["resampled"] is False


def test_image_type_splits_only_on_what_the_image_shows(tmp_path):
    uid = generate_uid()
    stored = _stored(n=3)
    # vendor processing flags differ from slice to slice: still one volume
    for k, flag in enumerate(["NORM", "DIS2D", "NORM"]):
        write_series(tmp_path / "flags", stored[k:k + 1], series_uid=uid, names=[f"f{k}"],
                     positions=[(0.0, 0.0, 2.5 * k)], image_type=("ORIGINAL", "PRIMARY", "M", flag))
    [info] = discover_series(tmp_path / "flags")
    assert info.shape_zyx == (3, 5, 4)
    # magnitude and phase images of the same slices in one series: two volumes
    uid2 = generate_uid()
    write_series(tmp_path / "mp", stored, series_uid=uid2, names=["m0", "m1", "m2"],
                 image_type=("ORIGINAL", "PRIMARY", "M_FFE", "M_FFE"))
    write_series(tmp_path / "mp", stored * 0, series_uid=uid2, names=["p0", "p1", "p2"],
                 image_type=("ORIGINAL", "PRIMARY", "P_FFE", "P_FFE"))
    infos = discover_series(tmp_path / "mp")
    assert len(infos) == 2
    assert all(i.n_volumes == 1 and i.shape_zyx == (3, 5, 4) for i in infos)
