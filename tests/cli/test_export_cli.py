"""`annotator export` end to end: formats, exit codes, overwrite, geometry refusal, pairs, pool, Dask."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from support.cli_export import SHARED_DATA, make_case, write_pairs_csv

from annotator.cli import main


def test_single_case_to_nifti_keeps_the_image_geometry(tmp_path, capsys):
    import nibabel as nib

    image, labels, volume, label_array = make_case(tmp_path / "in", "ct1")
    rc = main(["export", "--image", str(image), "--labels", str(labels), "--format", "nifti",
               "-o", str(tmp_path / "out"), "--case-id", "ct1"])
    assert rc == 0
    written = nib.load(str(tmp_path / "out" / "ct1_labels.nii.gz"))
    np.testing.assert_allclose(written.affine, nib.load(str(image)).affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(written.dataobj).transpose(2, 1, 0), label_array)
    assert "exported ct1 as nifti" in capsys.readouterr().out


def test_case_names_come_from_the_image_content_not_the_file_name(tmp_path, capsys):
    """A file name so often carries the patient's name (Jane_Doe_CT.nii.gz) that it is never a
    default case name; the content-derived name is stable, so exporting again is refused."""
    image, labels, *_ = make_case(tmp_path / "in", "Jane_Doe_CT")
    args = ["export", "--image", str(image), "--labels", str(labels), "--format", "nifti", "-o", str(tmp_path / "out")]
    assert main(args) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(names) == 2
    assert names[1] == "labels.json"
    assert re.fullmatch(r"case_[0-9a-f]{10}_labels\.nii\.gz", names[0])
    assert not any("jane" in n.lower() or "doe" in n.lower() for n in names)
    assert main(args) == 2  # the same image gets the same name: refused, not duplicated
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names
    assert main([*args, "--keep-phi", "-o", str(tmp_path / "named")]) == 0
    assert (tmp_path / "named" / "Jane_Doe_CT_labels.nii.gz").exists()


def test_existing_output_needs_overwrite(tmp_path, capsys):
    image, labels, *_ = make_case(tmp_path / "in", "ct1")
    args = ["export", "--image", str(image), "--labels", str(labels), "--format", "coco", "-o", str(tmp_path / "out")]
    assert main(args) == 0
    before = (tmp_path / "out" / "annotations.json").read_bytes()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("annotator export: error: ")
    assert "--overwrite" in err
    assert err.count("\n") == 1
    assert (tmp_path / "out" / "annotations.json").read_bytes() == before
    assert main([*args, "--overwrite"]) == 0


def test_label_map_on_another_grid_exits_2_and_writes_nothing(tmp_path, capsys):
    image, labels, *_ = make_case(tmp_path / "in", "ct1", label_spacing=(2.0, 0.8, 0.75))
    rc = main(["export", "--image", str(image), "--labels", str(labels), "--format", "nifti",
               "-o", str(tmp_path / "out")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "ct1_labels.nii.gz" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_pairs_with_one_bad_case_exit_1_and_write_the_others(tmp_path, capsys):
    rows = []
    for k in range(3):
        image, labels, *_ = make_case(tmp_path / "in", f"ct{k}", seed=k,
                                      label_spacing=(2.0, 0.8, 0.9) if k == 1 else None)
        rows.append((image, labels, f"c{k}"))
    csv = write_pairs_csv(tmp_path / "in" / "pairs.csv", rows)
    rc = main(["export", "--pairs", str(csv), "--format", "nnunet", "-o", str(tmp_path / "Dataset1_X"),
               "--workers", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "2/3" in out
    assert "FAILED c1" in out
    data = json.loads((tmp_path / "Dataset1_X" / "dataset.json").read_text())
    assert data["numTraining"] == 2
    assert sorted(p.name for p in (tmp_path / "Dataset1_X" / "labelsTr").iterdir()) == ["case_001.nii.gz", "case_002.nii.gz"]


def test_pairs_in_a_local_process_pool_merge_into_one_coco_file(tmp_path, capsys):
    from pycocotools.coco import COCO

    rows = [make_case(tmp_path / "in", f"ct{k}", seed=k)[:2] + (f"c{k}",) for k in range(2)]
    csv = write_pairs_csv(tmp_path / "in" / "pairs.csv", rows)
    rc = main(["export", "--pairs", str(csv), "--format", "coco", "-o", str(tmp_path / "out"),
               "--workers", "2", "--no-progress", "--slices", "all"])
    assert rc == 0
    assert "2 local processes" in capsys.readouterr().out
    coco = COCO(str(tmp_path / "out" / "annotations.json"))
    assert len(coco.dataset["images"]) == 10  # 2 cases x 5 slices
    assert len({img["id"] for img in coco.dataset["images"]}) == 10
    assert len(coco.dataset["annotations"]) == 2 * 3


@pytest.mark.slow
def test_pairs_on_a_dask_cluster(tmp_path, capsys):
    from distributed import LocalCluster

    rows = [make_case(tmp_path / "in", f"ct{k}", seed=k)[:2] + (f"c{k}",) for k in range(2)]
    csv = write_pairs_csv(tmp_path / "in" / "pairs.csv", rows)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                      host="127.0.0.1", dashboard_address=None) as cluster:
        rc = main(["export", "--pairs", str(csv), "--format", "datalist", "-o", str(tmp_path / "out"),
                   "--scheduler", cluster.scheduler_address, "--no-progress"])
    assert rc == 0
    assert f"dask {cluster.scheduler_address}" in capsys.readouterr().out
    data = json.loads((tmp_path / "out" / "datalist.json").read_text())
    assert [e["image"] for e in data["training"]] == ["imagesTr/c0.nii.gz", "imagesTr/c1.nii.gz"]


def test_unreachable_scheduler_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("annotator.export.batch.DASK_CONNECT_TIMEOUT_S", 1.0)
    rows = [make_case(tmp_path / "in", f"ct{k}", seed=k)[:2] + (f"c{k}",) for k in range(2)]
    csv = write_pairs_csv(tmp_path / "in" / "pairs.csv", rows)
    rc = main(["export", "--pairs", str(csv), "--format", "nifti", "-o", str(tmp_path / "out"),
               "--label-names", str(_names(tmp_path)), "--scheduler", "tcp://127.0.0.1:9", "--no-progress"])
    assert rc == 2
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err


def _names(tmp_path):
    path = tmp_path / "names.json"
    path.write_text(json.dumps({"1": "liver", "2": "kidney"}))
    return path


@pytest.mark.realdata
def test_real_dicom_series_to_every_format_carries_no_phi(tmp_path):
    pytest.importorskip("annotator.io.dicom")
    from annotator.io import load_volume

    folder = SHARED_DATA / "dicom" / "ct_philips_ingenuity_axial_5mm" / "dcm"
    if not folder.is_dir():
        pytest.skip("../shared/data is not present")
    volume = load_volume(folder)
    labels = np.zeros(volume.shape_zyx, np.uint8)
    labels[10:14, 200:260, 220:300] = 1
    labels[12, 100:120, 100:130] = 2
    from annotator.io import write_volume

    write_volume(volume.with_array(labels), tmp_path / "labels.nii.gz")
    phi = [str(volume.metadata[k]) for k in ("patient_name", "patient_id") if volume.metadata.get(k)]
    assert phi  # the Philips phantom carries a name and an ID
    for fmt in ("nifti", "coco", "nnunet", "dicom-seg", "datalist", "yolo"):
        out = tmp_path / fmt
        rc = main(["export", "--image", str(folder), "--labels", str(tmp_path / "labels.nii.gz"),
                   "--format", fmt, "-o", str(out), "--case-id", "_".join(phi)])
        assert rc == 0, fmt
        import gzip

        for path in out.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                if data[:2] == b"\x1f\x8b":
                    data = gzip.decompress(data)
                text = (str(path.relative_to(out)).encode() + data).lower()
                for value in phi:
                    assert value.lower().encode() not in text, f"{value!r} in {path}"
