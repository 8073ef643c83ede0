"""Exports never change a file the user did not ask to change: every target is checked before the
first write, adding to a dataset is explicit (append), and a label value keeps its meaning."""

from __future__ import annotations

import json

import numpy as np
import pytest

from annotator.builtins import manifest as builtins
from annotator.core.errors import InputError
from annotator.core.labels import LabelMap, LabelTable
from annotator.export.api import ExportSpec, OutputExistsError, export_volume


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def relabelled(label_map: LabelMap, names: dict[int, str]) -> LabelMap:
    table = LabelTable()
    for label_id, name in names.items():
        table.add(name, label_id=label_id)
    return LabelMap(label_map.shape_zyx, table, array=label_map.array)


@pytest.mark.parametrize("fmt", [c.id for c in builtins.exporters if c.id != "dicom-seg"])
def test_a_second_case_into_an_existing_dataset_is_refused_before_any_write(tmp_path, volume, label_map, fmt):
    export_volume(fmt, volume, label_map, tmp_path, ExportSpec(case_id="first", slices="all"))
    before = snapshot(tmp_path)
    with pytest.raises(OutputExistsError, match="--append"):
        export_volume(fmt, volume, label_map, tmp_path, ExportSpec(case_id="second", slices="all"))
    assert snapshot(tmp_path) == before  # not one case file, not the index


@pytest.mark.parametrize("fmt", ["nifti", "datalist", "coco"])
def test_append_never_changes_what_a_label_value_means(tmp_path, volume, label_map, fmt):
    export_volume(fmt, volume, label_map, tmp_path, ExportSpec(case_id="first"))
    before = snapshot(tmp_path)
    clash = relabelled(label_map, {1: "spleen", 3: "kidney"})  # value 1 was liver there
    with pytest.raises(InputError, match="1 is 'liver' there, 'spleen' here"):
        export_volume(fmt, volume, clash, tmp_path, ExportSpec(case_id="second", append=True))
    assert snapshot(tmp_path) == before


def test_append_adds_cases_to_a_coco_dataset_that_pycocotools_reads(tmp_path, volume, label_map):
    from pycocotools.coco import COCO

    export_volume("coco", volume, label_map, tmp_path, ExportSpec(case_id="first"))
    first = json.loads((tmp_path / "annotations.json").read_text())
    more = relabelled(label_map, {1: "liver", 3: "kidney", 4: "aorta"})
    more.array[0, 0:3, 0:3] = 4
    export_volume("coco", volume, more, tmp_path, ExportSpec(case_id="second", append=True))
    coco = COCO(str(tmp_path / "annotations.json"))
    data = coco.dataset
    assert data["images"][: len(first["images"])] == first["images"]  # existing entries untouched
    assert data["annotations"][: len(first["annotations"])] == first["annotations"]
    assert len({i["id"] for i in data["images"]}) == len(data["images"]) == 2 * len(first["images"]) + 1
    assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])
    assert {c["id"]: c["name"] for c in data["categories"]} == {1: "liver", 3: "kidney", 4: "aorta"}
    for image in data["images"]:
        assert (tmp_path / image["file_name"]).is_file()


def test_yolo_append_keeps_every_class_index_and_adds_new_names_after(tmp_path, volume, label_map):
    import yaml

    export_volume("yolo", volume, label_map, tmp_path, ExportSpec(case_id="first"))
    assert yaml.safe_load((tmp_path / "data.yaml").read_text())["names"] == {0: "liver", 1: "kidney"}
    # another case whose table lists kidney first and adds aorta: indices must not move
    table = LabelTable()
    table.add("aorta", label_id=1)
    table.add("kidney", label_id=2)
    array = np.zeros(volume.shape_zyx, np.uint16)
    array[2, 2:6, 2:6] = 2
    array[2, 10:14, 10:14] = 1
    export_volume("yolo", volume, LabelMap(volume.shape_zyx, table, array=array), tmp_path,
                  ExportSpec(case_id="second", append=True))
    assert yaml.safe_load((tmp_path / "data.yaml").read_text())["names"] == {0: "liver", 1: "kidney", 2: "aorta"}
    lines = (tmp_path / "labels" / "second_axial_0002.txt").read_text().splitlines()
    assert sorted(line.split()[0] for line in lines) == ["1", "2"]


def test_the_same_case_again_needs_overwrite_even_when_appending(tmp_path, volume, label_map):
    export_volume("datalist", volume, label_map, tmp_path, ExportSpec(case_id="c1"))
    before = snapshot(tmp_path)
    with pytest.raises(OutputExistsError, match="case c1 is already in"):
        export_volume("datalist", volume, label_map, tmp_path, ExportSpec(case_id="c1", append=True))
    assert snapshot(tmp_path) == before
    export_volume("datalist", volume, label_map, tmp_path, ExportSpec(case_id="c1", append=True, overwrite=True))
    assert len(json.loads((tmp_path / "datalist.json").read_text())["training"]) == 1


def test_batch_export_refuses_before_writing_any_case(tmp_path, capsys):
    from support.cli_export import make_case, write_pairs_csv

    from annotator.cli import main

    rows = []
    for n in range(3):
        image, labels, *_ = make_case(tmp_path / "in", f"ct{n}", seed=n)
        rows.append((image, labels, f"c{n}"))
    csv_path = write_pairs_csv(tmp_path / "in" / "pairs.csv", rows)
    out = tmp_path / "out"
    out.mkdir()
    (out / "labels.json").write_text("[]\n")  # a dataset index already there
    args = ["export", "--pairs", str(csv_path), "--format", "nifti", "-o", str(out), "--workers", "1",
            "--no-progress"]
    assert main(args) == 2
    assert "--append" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["labels.json"]
    assert (out / "labels.json").read_text() == "[]\n"
    assert main([*args, "--append"]) == 0
    assert len(list(out.glob("c*_labels.nii.gz"))) == 3


def test_window_label_export_checks_both_files_before_writing(tmp_path, volume, label_map):
    from annotator.qt.jobs import export_labels_job

    table_json = tmp_path / "mine.json"
    table_json.write_text('{"user": "notes"}')
    with pytest.raises(OutputExistsError, match="mine.json"):
        export_labels_job(volume, label_map, str(tmp_path / "mine.nii.gz"))
    assert not (tmp_path / "mine.nii.gz").exists()
    assert table_json.read_text() == '{"user": "notes"}'
    export_labels_job(volume, label_map, str(tmp_path / "mine.nii.gz"), overwrite=True)
    assert json.loads(table_json.read_text())[0]["name"] == "liver"
