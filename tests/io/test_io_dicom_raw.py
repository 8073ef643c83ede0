"""The fast discovery header reader gives the same frames and series fields as pydicom, or declines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian
from support.dicom_factory import write_series

from annotator.io import dicom as dicom_io
from annotator.io.dicom import frames as dicom_frames
from annotator.io.dicom import scan as dicom_scan
from annotator.io.dicom.raw import read_fast_header


def _pydicom_header(path):
    return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=dicom_scan.HEADER_TAGS)


def _assert_same(path) -> bool:
    """True when the fast reader handled the file (and agreed with pydicom)."""
    fast = read_fast_header(str(path))
    if fast is None:
        return False
    slow = _pydicom_header(path)
    fast_frames = dicom_io.frames_of_dataset(fast, str(path))
    slow_frames = dicom_io.frames_of_dataset(slow, str(path))
    assert len(fast_frames) == len(slow_frames)
    for a, b in zip(fast_frames, slow_frames, strict=True):
        for name in ("group_key", "rows", "cols", "pixel_spacing", "slope", "intercept", "order_key",
                     "sop_uid", "has_geometry", "slice_spacing_hint", "native_pixels", "frame_index"):
            assert getattr(a, name) == getattr(b, name), (path, name)
        np.testing.assert_array_equal(a.ipp, b.ipp)
        np.testing.assert_array_equal(a.iop, b.iop)
    assert dicom_frames.series_fields(fast) == dicom_frames.series_fields(slow)
    return True


@pytest.mark.realdata
def test_fast_header_matches_pydicom_on_real_files(shared_data):
    handled = declined = 0
    for path in sorted((shared_data / "dicom").rglob("*")):
        if path.is_file() and "expected" not in path.parts:
            if _assert_same(path):
                handled += 1
            else:
                declined += 1
    assert handled >= 300  # GE and Philips classic files go the fast way
    assert declined >= 8   # mosaics, enhanced, big endian go through pydicom


@pytest.mark.parametrize("implicit", [False, True])
def test_fast_header_matches_pydicom_with_sequences_and_latin1(tmp_path, implicit):
    stored = np.zeros((2, 4, 3), np.int16)
    paths = write_series(tmp_path, stored, acquisition_times=["101010.5", "101011"])
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName = "Müller^Jürgen"
        item = pydicom.Dataset()
        item.ReferencedSOPInstanceUID = "1.2.3"
        nested = pydicom.Dataset()
        nested.CodeValue = "X"
        item.PurposeOfReferenceCodeSequence = pydicom.Sequence([nested])
        ds.ReferencedImageSequence = pydicom.Sequence([item, item])
        ds.add_new(0x00091010, "OB", b"\x01\x02" * 40_000)  # a big private element: > first read
        if implicit:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(path, enforce_file_format=True)
    for path in paths:
        assert _assert_same(path)
    assert read_fast_header(str(paths[0]))["PatientName"] == "Müller^Jürgen"


@pytest.mark.filterwarnings("ignore:Failed to encode value:UserWarning")
def test_fast_header_declines_what_it_does_not_handle(tmp_path):
    [path] = write_series(tmp_path, np.zeros((1, 4, 3), np.int16))
    ds = pydicom.dcmread(path)
    ds.SpecificCharacterSet = "ISO 2022 IR 87"
    ds.save_as(path, enforce_file_format=True)
    assert read_fast_header(str(path)) is None
    cut = Path(tmp_path / "cut.dcm")
    cut.write_bytes(path.read_bytes()[:400])
    assert read_fast_header(str(cut)) is None
