"""`annotator info` and `annotator convert`: JSON contract, exact geometry, one-line errors with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from support.dicom_factory import write_series

from annotator.cli import main

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture
def series_folder(tmp_path):
    stored = np.arange(4 * 6 * 5, dtype=np.int16).reshape(4, 6, 5)
    a = np.radians(10)
    write_series(tmp_path / "dcm", stored, iop=(1, 0, 0, 0, np.cos(a), np.sin(a)), description="chest")
    return tmp_path / "dcm", stored


def test_info_json_contract(series_folder, capsys):
    folder, _ = series_folder
    assert main(["info", str(folder), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    [series] = out["series"]
    assert series["shape_zyx"] == [4, 6, 5]
    assert series["spacing_zyx_mm"] == pytest.approx([2.5, 0.8, 0.7])
    affine = np.array(series["affine_ras"])
    assert affine.shape == (4, 4)
    # NIfTI convention: index (i, j, k) = (x, y, z) -> RAS; first voxel at IPP with L,P negated
    np.testing.assert_allclose(affine[:3, 3], [50.0, 60.0, 100.0], atol=1e-6)
    for key in ("uid", "description", "modality", "orientation", "warnings"):
        assert key in series
    assert series["description"] == "chest"
    assert series["modality"] == "CT"
    assert series["orientation"] == "oblique axial"


def test_info_text_lists_warnings(series_folder, capsys):
    folder, _ = series_folder
    sorted(folder.iterdir())[2].unlink()  # a missing slice in the middle
    assert main(["info", str(folder)]) == 0
    text = capsys.readouterr().out
    assert "1 series" in text
    assert "warning: cannot be loaded" in text
    assert "missing" in text


def test_convert_writes_exact_geometry(series_folder, tmp_path, capsys):
    folder, stored = series_folder
    out = tmp_path / "out.nii.gz"
    assert main(["convert", str(folder), str(out)]) == 0
    img = nib.load(out)
    capsys.readouterr()
    main(["info", str(folder), "--json"])
    info = json.loads(capsys.readouterr().out)["series"][0]
    np.testing.assert_allclose(img.affine, np.array(info["affine_ras"]), atol=1e-4)
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), (stored.astype(np.int32) - 1024).T)
    # a second run refuses to overwrite unless asked
    assert main(["convert", str(folder), str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["convert", str(folder), str(out), "--overwrite"]) == 0


@pytest.mark.realdata
def test_convert_volume_and_series_options(capsys, tmp_path):
    if not DATA.is_dir():
        pytest.skip("shared data absent")
    folder = DATA / "dicom" / "mr_ge_mr750_two_series_mixed" / "dcm"
    uid = "1.2.840.113619.2.408.5282380.4562341.27283.1537222031.345"
    out = tmp_path / "t3.nii.gz"
    assert main(["convert", str(folder), str(out), "--series", uid, "--volume", "3"]) == 0
    ref = nib.load(folder.parent / "expected" / "DCM2NIIX_regression_test_6.nii")
    got = nib.as_closest_canonical(nib.load(out))
    ref = nib.as_closest_canonical(ref)
    np.testing.assert_array_equal(np.asanyarray(got.dataobj), np.asanyarray(ref.dataobj)[..., 3])
    assert main(["convert", str(folder), str(tmp_path / "x.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert "holds 2 series" in err
    assert uid in err


def _bad_inputs(tmp_path):
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    nan = tmp_path / "nan.nii.gz"
    data = np.zeros((3, 3, 3), np.float32)
    data[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), nan)
    no_images = tmp_path / "no_images"
    no_images.mkdir()
    (no_images / "a.txt").write_text("x")
    return {"empty": empty, "NaN": nan, "no DICOM images": no_images}


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    for problem, path in _bad_inputs(tmp_path).items():
        for command in (["info", str(path)], ["convert", str(path), str(tmp_path / "o.nii.gz")]):
            if problem == "NaN" and command[0] == "info":
                continue  # info reads headers only; NaN voxels are found when loading
            assert main(command) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1, err
            assert problem in err
            assert str(path) in err
            assert "Traceback" not in err


def test_bad_input_through_the_console_script_has_no_traceback(tmp_path):
    paths = _bad_inputs(tmp_path)
    result = subprocess.run([sys.executable, "-m", "annotator", "convert", str(paths["empty"]),
                             str(tmp_path / "o.nii.gz")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("annotator convert: error:")
    assert "empty" in result.stderr


def test_no_source_free_text_reaches_a_converted_or_cleaned_file_without_keep_phi(tmp_path, capsys):
    """A series description may name the patient: convert, clean and segment leave it out of the
    NIfTI header; convert --keep-phi keeps it."""
    import nibabel as nib

    src = tmp_path / "src.nii.gz"
    image = nib.Nifti1Image(np.zeros((6, 5, 4), np.int16), np.eye(4))
    image.header["descrip"] = b"Jane Doe head CT 1970-02-15"
    nib.save(image, src)
    labels = tmp_path / "labels.nii.gz"
    lab = nib.Nifti1Image(np.ones((6, 5, 4), np.uint8), np.eye(4))
    lab.header["descrip"] = b"Jane Doe liver"
    nib.save(lab, labels)

    def descrip(path):
        return nib.load(str(path)).header["descrip"].item().decode()

    assert main(["convert", str(src), str(tmp_path / "plain.nii.gz")]) == 0
    assert "Jane" not in descrip(tmp_path / "plain.nii.gz")
    assert main(["clean", str(labels), "--fill-holes", "-o", str(tmp_path / "cleaned")]) == 0
    (cleaned,) = (tmp_path / "cleaned").glob("*.nii.gz")
    assert "Jane" not in descrip(cleaned)
    assert main(["convert", str(src), str(tmp_path / "kept.nii.gz"), "--keep-phi"]) == 0
    assert descrip(tmp_path / "kept.nii.gz") == "Jane Doe head CT 1970-02-15"
