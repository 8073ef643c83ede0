"""`annotator validate`: a clean export passes; each kind of problem is found and exits 1."""

from __future__ import annotations

import json
import shutil

import numpy as np
from support.cli_export import make_case, write_pairs_csv

from annotator.cli import main


def validate_json(folder, capsys) -> tuple[int, dict]:
    capsys.readouterr()
    rc = main(["validate", str(folder), "--json", "--no-progress"])
    return rc, json.loads(capsys.readouterr().out)


def test_exported_nnunet_dataset_validates_then_problems_are_found(tmp_path, capsys):
    rows = [make_case(tmp_path / "in", f"ct{k}", seed=k)[:2] + (f"c{k}",) for k in range(2)]
    csv = write_pairs_csv(tmp_path / "in" / "pairs.csv", rows)
    dataset = tmp_path / "Dataset7_V"
    assert main(["export", "--pairs", str(csv), "--format", "nnunet", "-o", str(dataset),
                 "--workers", "1", "--no-progress"]) == 0
    rc, report = validate_json(dataset, capsys)
    assert rc == 0, report
    assert report["layout"] == "nnunet"
    assert report["problems"] == 0
    assert report["cases"] == 2

    shutil.copy(dataset / "imagesTr" / "case_001_0000.nii.gz", dataset / "imagesTr" / "case_009_0000.nii.gz")
    from annotator.io import load_volume, write_volume

    label = load_volume(dataset / "labelsTr" / "case_002.nii.gz")
    array = label.array.copy()
    array[0, 0, 0] = 7
    write_volume(label.with_array(array), dataset / "labelsTr" / "case_002.nii.gz", overwrite=True)
    rc, report = validate_json(dataset, capsys)
    assert rc == 1
    problems = {r["case_id"]: r["problems"] for r in report["reports"]}
    assert problems["case_001"] == []
    assert problems["case_002"] == ["label values [7] are not in the label table"]
    assert problems["case_009"] == ["image without a label"]
    assert report["dataset_problems"] == []
    capsys.readouterr()
    assert main(["validate", str(dataset), "--no-progress"]) == 1
    table = capsys.readouterr().out
    assert "case_009" in table
    assert "2 of 3 cases with problems" in table


def test_folder_dataset_grid_nan_empty_and_orientation_problems(tmp_path, capsys):
    root = tmp_path / "ds"
    cases = {
        "a": {}, "b": {}, "c": {},
        "grid": {"label_spacing": (2.0, 0.8, 0.9)},
        "nan": {"float_image": True},
        "empty": {"empty": True},
        "flipped": {"direction": np.diag([-1.0, 1.0, -1.0])},
    }
    for name, kwargs in cases.items():
        image, labels, *_ = make_case(tmp_path / "raw", name, **kwargs)
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        shutil.copy(image, root / "images" / f"{name}.nii.gz")
        shutil.copy(labels, root / "labels" / f"{name}.nii.gz")
    # put NaNs into the float image
    from annotator.io import load_volume, write_volume

    vol = load_volume(root / "images" / "nan.nii.gz")
    arr = vol.array.astype(np.float32)
    arr[0, 0, :3] = np.nan
    write_volume(vol.with_array(arr), root / "images" / "nan.nii.gz", overwrite=True)

    rc, report = validate_json(root, capsys)
    assert rc == 1
    problems = {r["case_id"]: " | ".join(r["problems"]) for r in report["reports"]}
    assert problems["a"] == problems["b"] == problems["c"] == ""
    assert "label grid differs from image: spacing" in problems["grid"]
    assert "3 NaN" in problems["nan"]  # io refuses such an image; validate reports it for that case
    assert "label map is empty" in problems["empty"]
    assert "orientation" in problems["flipped"]
    assert "differs from the dataset's usual" in problems["flipped"]


def test_not_a_dataset_exits_2(tmp_path, capsys):
    assert main(["validate", str(tmp_path)]) == 2
    assert "not a dataset" in capsys.readouterr().err


def test_nnunet_labels_must_be_consecutive(tmp_path, capsys):
    image, labels, *_ = make_case(tmp_path / "in", "ct1")
    dataset = tmp_path / "Dataset8_G"
    assert main(["export", "--image", str(image), "--labels", str(labels), "--format", "nnunet",
                 "-o", str(dataset)]) == 0
    data = json.loads((dataset / "dataset.json").read_text())
    data["labels"]["extra"] = 5
    (dataset / "dataset.json").write_text(json.dumps(data))
    rc, report = validate_json(dataset, capsys)
    assert rc == 1
    assert report["dataset_problems"] == ["dataset.json labels must be consecutive 0..N for nnU-Net, got [0, 1, 2, 5]"]
