"""Bad input gives an InputError naming the file and the problem, never a crash or a silent wrong volume."""

from __future__ import annotations

import numpy as np
import pytest
from support.dicom_factory import write_series

from annotator.core.errors import InputError
from annotator.io import discover_series, load_volume


def _series(folder):
    stored = np.random.default_rng(3).integers(0, 2000, (5, 16, 16)).astype(np.int16)
    return write_series(folder, stored)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="empty") as info:
        load_volume(path)
    assert str(path) in str(info.value)


def test_truncated_header(tmp_path):
    [path, *_] = _series(tmp_path / "s")
    data = path.read_bytes()
    bad = tmp_path / "cut.dcm"
    bad.write_bytes(data[:300])
    with pytest.raises(InputError, match="truncated or corrupt") as info:
        load_volume(bad)
    assert "cut.dcm" in str(info.value)


def test_corrupt_bytes_after_preamble(tmp_path):
    bad = tmp_path / "garbage.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8)))
    with pytest.raises(InputError, match="garbage.dcm"):
        load_volume(bad)


def test_truncated_pixel_data_in_a_series_names_the_file(tmp_path):
    paths = _series(tmp_path)
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[:-100])
    with pytest.raises(InputError) as info:
        load_volume(tmp_path)
    assert paths[2].name in str(info.value)


def test_damaged_file_in_folder_is_reported_not_fatal_to_discovery(tmp_path):
    paths = _series(tmp_path)
    (tmp_path / "zz_broken.dcm").write_bytes(paths[0].read_bytes()[:200])
    [info] = discover_series(tmp_path)
    assert any("zz_broken.dcm" in w for w in info.warnings)
    assert load_volume(tmp_path).shape_zyx == (5, 16, 16)


def test_folder_without_images(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    (tmp_path / "sub").mkdir()
    with pytest.raises(InputError, match="no DICOM images found"):
        load_volume(tmp_path)
    with pytest.raises(InputError, match="no DICOM images found"):
        discover_series(tmp_path)


def test_folder_with_only_damaged_files(tmp_path):
    (tmp_path / "a.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x08\x00\x05\x00CS\xff\xff")
    with pytest.raises(InputError, match="no readable DICOM images"):
        load_volume(tmp_path)


def test_text_file_is_not_dicom(tmp_path):
    path = tmp_path / "hello.dcm"
    path.write_text("hello world, this is not an image " * 10)
    with pytest.raises(InputError, match="hello.dcm"):
        load_volume(path)


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_volume(tmp_path / "nothing")


def test_degenerate_orientation_falls_back_with_a_warning(tmp_path):
    paths = _series(tmp_path)
    for path in paths:
        ds = __import__("pydicom").dcmread(path)
        ds.ImageOrientationPatient = [0, 0, 0, 0, 0, 0]
        ds.PixelSpacing = ["0", "0"]
        ds.save_as(path)
    infos = discover_series(tmp_path)
    assert all(any("no patient position" in w for w in i.warnings) for i in infos)
    volume = load_volume(paths[0])
    assert volume.spacing_zyx_mm[1:] == (1.0, 1.0)
