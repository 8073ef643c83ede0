"""The review session read from the command line: validate shows the statuses and keeps only some;
export --pairs exports only the reviewed cases."""

from __future__ import annotations

import json

import numpy as np
from support.review_dataset import planted_cases, write_dataset

from annotator.cli import main
from annotator.core.review_session import ReviewSession
from annotator.core.volume import Volume


def _dataset(tmp_path, layout):
    image = Volume(np.zeros((10, 20, 22), np.int16), (2.0, 1.0, 1.0))
    labels = np.zeros(image.shape_zyx, np.uint8)
    labels[2:8, 3:15, 3:15] = 1
    labels[3:6, 16:19, 16:20] = 2
    names = {1: "liver", 2: "spleen"}
    planted = planted_cases(labels, names)
    index = write_dataset(tmp_path / "ds", layout, image, {c: a for c, (a, _) in planted.items()}, names)
    root = index if index.is_dir() else index.parent
    session = ReviewSession()
    session.set_status("case_001", "modified")
    session.set_status("case_002", "flagged", "hole is real")
    session.save(root / "annotator-review.json")
    return index


def test_validate_shows_statuses_and_filters(tmp_path, capsys):
    index = _dataset(tmp_path, "nnunet")
    assert main(["validate", str(index), "--json", "--no-progress"]) == 0  # warnings only
    report = json.loads(capsys.readouterr().out)
    assert {r["case_id"]: r["review_status"] for r in report["reports"]} == {
        "case_001": "modified", "case_002": "flagged", "case_003": "not seen"}
    assert report["warnings"] == 3
    assert {r["case_id"]: [f["kind"] for f in r["findings"]] for r in report["reports"]} == {
        "case_001": ["islands"], "case_002": ["holes"], "case_003": ["missing-label"]}
    assert main(["validate", str(index), "--strict", "--no-progress"]) == 1
    assert "warning: liver: 1 island(s)" in capsys.readouterr().out
    assert main(["validate", str(index), "--json", "--no-progress", "--status", "flagged"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["case_id"] for r in report["reports"]] == ["case_002"]


def test_export_only_reviewed_cases(tmp_path, capsys):
    csv = _dataset(tmp_path, "csv")
    out = tmp_path / "out"
    rc = main(["export", "--pairs", str(csv), "--format", "nifti", "-o", str(out), "--status", "modified",
               "--no-progress", "--workers", "1"])
    assert rc == 0, capsys.readouterr()
    assert len(list(out.glob("*_labels.nii.gz"))) == 1
    rc = main(["export", "--pairs", str(csv), "--format", "nifti", "-o", str(tmp_path / "o2"), "--status", "reviewed",
               "--no-progress"])
    assert rc == 2
    assert "no case has review status reviewed" in capsys.readouterr().err
