"""Headers never drive an allocation or a loop unchecked: crafted sizes are refused with a message
naming the file, and a few hundred mutated real and synthetic headers give a Volume or an
InputError, nothing else, within a stated memory cap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support import fuzz_readers

from annotator.core.errors import InputError
from annotator.io import discover_series, load_volume

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TESTS = Path(__file__).resolve().parents[1]


def test_a_nifti2_header_claiming_petabytes_is_refused_by_info_and_convert(tmp_path, capsys):
    from annotator.cli import main

    path = tmp_path / "huge.nii"
    fuzz_readers.pack_nifti2_huge(path)
    for args in (["info", str(path)], ["convert", str(path), str(tmp_path / "out.nii.gz")]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert str(path) in err
        assert "header claims" in err
        assert err.count("\n") == 1
    assert not (tmp_path / "out.nii.gz").exists()


def test_a_header_longer_than_its_file_is_refused_before_reading(tmp_path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), np.eye(4)), tmp_path / "ok.nii")
    data = (tmp_path / "ok.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(data[: len(data) - 100])
    with pytest.raises(InputError, match="cut short"):
        load_volume(tmp_path / "cut.nii")


def test_the_cap_is_stated_and_can_be_raised(tmp_path, monkeypatch):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((64, 64, 64), np.float32), np.eye(4)), tmp_path / "v.nii")  # 1 MiB
    monkeypatch.setenv("ANNOTATOR_MAX_VOLUME_GB", str(0.5 / 1024))  # 0.5 MiB
    with pytest.raises(InputError, match=r"1\.0 MiB of voxel data, more than the 512\.0 KiB limit"):
        load_volume(tmp_path / "v.nii")
    monkeypatch.setenv("ANNOTATOR_MAX_VOLUME_GB", "0.01")
    assert load_volume(tmp_path / "v.nii").shape_zyx == (64, 64, 64)


def test_a_tiny_dicom_claiming_two_billion_frames_does_not_hang_the_folder_scan(tmp_path):
    import pydicom
    from support.dicom_factory import write_series

    files = write_series(tmp_path / "series", np.zeros((3, 16, 16), np.int16))
    liar = pydicom.dcmread(files[0])
    liar.NumberOfFrames = 2**31 - 1
    liar.SOPInstanceUID = pydicom.uid.generate_uid()
    liar.save_as(tmp_path / "series" / "liar.dcm")
    start = time.perf_counter()
    (series,) = discover_series(tmp_path / "series")
    assert time.perf_counter() - start < 5
    assert series.shape_zyx == (3, 16, 16)  # the three honest slices
    assert any("liar.dcm: header claims" in w for w in series.warnings)
    with pytest.raises(InputError, match="liar.dcm"):
        load_volume(tmp_path / "series" / "liar.dcm")


def test_a_metaimage_header_that_crashes_itk_is_refused_before_itk_reads_it(tmp_path):
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16)), str(tmp_path / "ok.mha"))
    data = (tmp_path / "ok.mha").read_bytes()
    # MetaIO segfaults on this (found by the fuzzing below): the process dies, no exception
    (tmp_path / "bad.mha").write_bytes(data.replace(b"NDims = 3", b"NDims = 4294967296 1 1"))
    for read in (load_volume, discover_series):
        with pytest.raises(InputError, match="ndims"):
            read(tmp_path / "bad.mha")
    (tmp_path / "short.mha").write_bytes(data.replace(b"ElementSpacing = 1 1 1", b"ElementSpacing = 1 1"))
    with pytest.raises(InputError, match="elementspacing needs 3"):
        load_volume(tmp_path / "short.mha")


def test_hundreds_of_mutated_headers_give_a_volume_or_an_input_error(tmp_path):
    seeds = tmp_path / "seeds"
    fuzz_readers.synthetic_seeds(seeds)
    if SHARED.is_dir():
        fuzz_readers.real_seeds(seeds, SHARED)
    fuzz_readers.pack_nifti2_huge(seeds / "huge2.nii")
    out = tmp_path / "run" / "result.json"
    out.parent.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "support.fuzz_readers", str(seeds), str(out), "1000", "20261205"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    failures = result["failures"]
    assert not failures, json.dumps(failures[:5], indent=1)
    # the run could have gone either way: both outcomes occur, over every format
    assert result["volumes"] > 20
    assert result["input_errors"] > 100
    assert {".nii", ".nii.gz", ".nrrd", ".mha", ".dcm"} <= set(result["per_format"])
    assert result["peak_rss_bytes"] < result["limit_bytes"]
