"""Datasets as lists of cases: the same cases, table and findings whichever index file names them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.review_dataset import SHARED_CT, planted_cases, shared_ct_case, write_dataset

from annotator.core.errors import InputError
from annotator.core.volume import Volume
from annotator.io.dataset import open_dataset
from annotator.io.dataset_check import check_case, dataset_findings


def _synthetic() -> tuple[Volume, np.ndarray, dict[int, str]]:
    image = Volume(np.zeros((12, 20, 22), np.int16), spacing_zyx_mm=(2.0, 1.0, 1.0))
    labels = np.zeros(image.shape_zyx, np.uint8)
    labels[2:10, 3:15, 3:15] = 1  # big cube
    labels[3:7, 16:19, 16:20] = 2  # small box
    return image, labels, {1: "liver", 2: "spleen"}


@pytest.fixture(params=["nnunet", "datalist", "csv"])
def layout(request):
    return request.param


def _findings(dataset):
    reports = [check_case(c, dataset.table) for c in dataset.cases]
    dataset_findings(reports, dataset.table)
    return {r.case_id: sorted((f.kind, f.label_id) for f in r.findings) for r in reports}


def test_each_layout_gives_the_planted_findings_and_nothing_else(tmp_path, layout):
    image, labels, names = _synthetic()
    planted = planted_cases(labels, names)
    index = write_dataset(tmp_path / "ds", layout, image, {c: a for c, (a, _) in planted.items()}, names)
    dataset = open_dataset(index)
    assert dataset.layout == {"nnunet": "nnunet", "datalist": "monai-datalist", "csv": "csv"}[layout]
    assert dataset.case_ids == ["case_001", "case_002", "case_003"]
    assert [(lab.id, lab.name) for lab in dataset.table] == [(1, "liver"), (2, "spleen")]
    assert all(c.image and c.label for c in dataset.cases)
    assert _findings(dataset) == {"case_001": [("islands", 1)], "case_002": [("holes", 1)],
                                  "case_003": [("missing-label", 2)]}


def test_findings_on_the_shared_ct(tmp_path):
    if not SHARED_CT.exists():
        pytest.skip("needs ../shared/data")
    image, labels, names = shared_ct_case()
    planted = planted_cases(labels, names)
    dataset = open_dataset(write_dataset(tmp_path / "ds", "nnunet", image,
                                         {c: a for c, (a, _) in planted.items()}, names))
    found = _findings(dataset)
    assert found == {"case_001": [("islands", 4)], "case_002": [("holes", 4)], "case_003": [("missing-label", 3)]}


def test_nnunet_channels_and_decathlon(tmp_path):
    image, labels, names = _synthetic()
    root = write_dataset(tmp_path / "nn", "nnunet", image, {"a": labels}, names)
    from annotator.io import write_volume

    write_volume(image, root / "imagesTr" / "a_0001.nii.gz")
    case = open_dataset(root).case("a")
    assert [p.rsplit("/", 1)[1] for p in case.images] == ["a_0000.nii.gz", "a_0001.nii.gz"]
    deca = tmp_path / "deca"
    write_dataset(deca, "datalist", image, {"b": labels}, names)
    (deca / "datalist.json").rename(deca / "dataset.json")
    dataset = open_dataset(deca)
    assert dataset.layout == "decathlon"
    assert dataset.case_ids == ["b"]


@pytest.mark.parametrize(("content", "problem"), [
    ("{", "cannot read JSON"),
    ('{"labels": {"liver": "one"}}', "value must be a number"),
    ('{"labels": [1, 2]}', "'labels' must be an object"),
    ('{"training": [3], "labels": {}}', "training entry 0 must be an object"),
    ('{"training": [{"image": 5}], "labels": {}}', "must be paths"),
])
def test_bad_index_files_name_the_file(tmp_path, content, problem):
    (tmp_path / "dataset.json").write_text(content)
    with pytest.raises(InputError, match=problem) as info:
        open_dataset(tmp_path)
    assert "dataset.json" in str(info.value)


def test_not_a_dataset_and_bad_csv(tmp_path):
    with pytest.raises(InputError, match="not a dataset"):
        open_dataset(tmp_path)
    bad = tmp_path / "pairs.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="image,labels"):
        open_dataset(bad)
    bad.write_text("image,labels,case_id\nx.nii.gz,y.nii.gz,c\nz.nii.gz,w.nii.gz,c\n")
    with pytest.raises(InputError, match="appears twice"):
        open_dataset(bad)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "a": 1, "b": 5}}))
    assert open_dataset(tmp_path).notes == ["dataset.json labels must be consecutive 0..N for nnU-Net, got [0, 1, 5]"]
