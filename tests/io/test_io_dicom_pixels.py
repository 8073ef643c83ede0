"""The fast path for uncompressed pixels gives exactly what pydicom decodes (bits stored, VR, padding)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from support.dicom_factory import write_series

from annotator.core.errors import InputError
from annotator.io import dicom as dicom_io
from annotator.io import load_volume
from annotator.io.dicom import pixels as dicom_pixels


def _rewrite(path, *, bits_stored=16, signed=True, raw=None, transfer_syntax=ExplicitVRLittleEndian,
             trailing_padding=False, bits_allocated=16):
    ds = pydicom.dcmread(path)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_allocated, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if raw is not None:
        ds.Rows, ds.Columns = raw.shape
        ds.PixelData = raw.tobytes() + (b"\0" if raw.nbytes % 2 else b"")
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    if trailing_padding:
        ds.add_new(0xFFFCFFFC, "OB", b"\0" * 64)
    ds.save_as(path, enforce_file_format=True)
    return ds


CASES = {
    "signed 12 of 16 with junk high bits": dict(bits_stored=12, signed=True,
                                                raw=np.array([[0xFFFB, 0xF064], [0x07FF, 0x0800]], np.uint16)),
    "unsigned 12 of 16 with junk high bits": dict(bits_stored=12, signed=False,
                                                  raw=np.array([[0xF005, 0x0064], [0x0FFF, 0x1800]], np.uint16)),
    "implicit VR": dict(transfer_syntax=ImplicitVRLittleEndian),
    "trailing padding element": dict(trailing_padding=True),
    "8-bit odd length": dict(bits_allocated=8, bits_stored=8, signed=False,
                             raw=np.arange(15, dtype=np.uint8).reshape(3, 5)),
}


@pytest.mark.parametrize("case", CASES)
def test_fast_path_equals_pydicom(tmp_path, case, monkeypatch):
    stored = np.random.default_rng(2).integers(-2000, 2000, (1, 6, 7)).astype(np.int16)
    [path] = write_series(tmp_path, stored, intercept=0.0)
    _rewrite(path, **CASES[case])
    expected = pydicom.dcmread(path).pixel_array
    monkeypatch.setattr(dicom_pixels, "decode_file", lambda *a: pytest.fail("fast path not taken"))
    dicom_io.clear_cache()
    volume = load_volume(path)
    np.testing.assert_array_equal(volume.array[0], expected)
    assert volume.array.dtype == expected.dtype


def test_fast_path_refuses_a_short_pixel_element_and_pydicom_reports_it(tmp_path):
    stored = np.random.default_rng(2).integers(-2000, 2000, (1, 6, 7)).astype(np.int16)
    [path] = write_series(tmp_path, stored, intercept=0.0)
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[:-20]
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(InputError, match="slice000.dcm"):
        load_volume(path)
