"""`annotator clean`: copies only, per-label changes in --dry-run, physical units from the file's spacing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from annotator.cli import main
from annotator.core.volume import Volume


def write_labels(path, array, spacing=(2.0, 0.5, 0.5)):
    from annotator.io import write_volume

    write_volume(Volume(array, spacing_zyx_mm=spacing), path)
    return path


def sample_labels() -> np.ndarray:
    array = np.zeros((4, 20, 20), np.uint8)
    array[0:3, 2:12, 2:12] = 1
    array[1, 6, 6] = 0                 # a one-voxel hole in label 1
    array[3, 15, 15:18] = 1            # a 3-voxel island of label 1 (1.5 mm³)
    array[0:2, 14:18, 2:6] = 2         # label 2: 32 voxels, untouched
    return array


def test_dry_run_reports_per_label_changes_and_writes_nothing(tmp_path, capsys):
    src = write_labels(tmp_path / "l.nii.gz", sample_labels())
    before = src.read_bytes()
    rc = main(["clean", str(src), "--fill-holes", "--min-size", "2mm3", "--dry-run", "--json", "--no-progress"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    changes = {c["label_id"]: c for c in report["files"][0]["labels"]}
    assert (changes[1]["added"], changes[1]["removed"]) == (1, 3)
    assert (changes[2]["added"], changes[2]["removed"]) == (0, 0)
    assert src.read_bytes() == before
    assert list(tmp_path.iterdir()) == [src]


def test_island_threshold_follows_the_file_spacing(tmp_path, capsys):
    src = write_labels(tmp_path / "l.nii.gz", sample_labels())
    # the island is 3 voxels x 0.5 mm³ = 1.5 mm³: kept at 1.5mm3, removed at 1.6mm3
    main(["clean", str(src), "--min-size", "1.5mm3", "--dry-run", "--json", "--no-progress"])
    kept = json.loads(capsys.readouterr().out)["files"][0]["labels"][0]
    main(["clean", str(src), "--min-size", "1.6mm3", "--dry-run", "--json", "--no-progress"])
    removed = json.loads(capsys.readouterr().out)["files"][0]["labels"][0]
    assert kept["removed"] == 0
    assert removed["removed"] == 3


def test_clean_writes_a_copy_with_the_same_geometry(tmp_path, capsys):
    from annotator.io import load_volume

    src = write_labels(tmp_path / "in" / "l.nii.gz", sample_labels())
    rc = main(["clean", str(src), "--fill-holes", "--min-size", "2mm3", "--largest", "-o", str(tmp_path / "out"),
               "--no-progress"])
    assert rc == 0
    out = load_volume(tmp_path / "out" / "l.nii.gz")
    assert out.same_grid(load_volume(src))
    expected = sample_labels()
    expected[1, 6, 6] = 1
    expected[3, 15, 15:18] = 0
    np.testing.assert_array_equal(out.array, expected)
    text = capsys.readouterr().out
    assert "files cleaned: 1/1" in text


@pytest.mark.parametrize(("extra", "message"), [
    ([], "nothing to do"),
    (["--fill-holes"], "-o OUTPUT_FOLDER"),
    (["--min-size", "lots", "--dry-run"], "--min-size 'lots'"),
])
def test_usage_errors_exit_2(tmp_path, capsys, extra, message):
    src = write_labels(tmp_path / "l.nii.gz", sample_labels())
    assert main(["clean", str(src), *extra]) == 2
    assert message in capsys.readouterr().err


def test_never_in_place_and_never_over_an_existing_file(tmp_path, capsys):
    src = write_labels(tmp_path / "l.nii.gz", sample_labels())
    assert main(["clean", str(src), "--fill-holes", "-o", str(tmp_path)]) == 2
    assert "would replace the input" in capsys.readouterr().err
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "l.nii.gz").write_bytes(b"keep me")
    assert main(["clean", str(src), "--fill-holes", "-o", str(tmp_path / "out")]) == 2
    assert (tmp_path / "out" / "l.nii.gz").read_bytes() == b"keep me"


def test_float_label_files_with_whole_numbers_are_accepted(tmp_path, capsys):
    src = write_labels(tmp_path / "l.nii.gz", sample_labels().astype(np.float32))
    assert main(["clean", str(src), "--fill-holes", "--dry-run", "--json", "--no-progress"]) == 0
    changes = json.loads(capsys.readouterr().out)["files"][0]["labels"]
    assert [(c["label_id"], c["added"]) for c in changes] == [(1, 1), (2, 0)]
