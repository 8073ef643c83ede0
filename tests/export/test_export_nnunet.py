"""nnU-Net v2 export: nnU-Net's own verify_dataset_integrity passes, also after adding cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from annotator.core.labels import LabelMap, LabelTable
from annotator.export.api import ExportSpec, OutputExistsError, export_volume


def verify_with_nnunet(folder, capfd):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(folder), num_processes=1)
    out, err = capfd.readouterr()
    # nnU-Net reports mismatched grids only as printed warnings: none may appear.
    assert "Warning" not in out, out
    assert "Error" not in out, out


@pytest.mark.slow
def test_nnunet_integrity_check_passes_and_cases_are_added_without_renumbering(tmp_path, volume, label_map, capfd):
    import nibabel as nib

    dataset = tmp_path / "Dataset501_Test"
    export_volume("nnunet", volume, label_map, dataset, ExportSpec())
    data = json.loads((dataset / "dataset.json").read_text())
    assert data["labels"] == {"background": 0, "liver": 1, "kidney": 2}  # 3 renumbered to 2
    assert data["numTraining"] == 1
    assert data["file_ending"] == ".nii.gz"
    assert data["channel_names"] == {"0": "CT"}
    written = np.asarray(nib.load(str(dataset / "labelsTr" / "case_001.nii.gz")).dataobj).transpose(2, 1, 0)
    np.testing.assert_array_equal(written == 2, label_map.array == 3)
    np.testing.assert_array_equal(written == 1, label_map.array == 1)
    image = nib.load(str(dataset / "imagesTr" / "case_001_0000.nii.gz"))
    np.testing.assert_array_equal(np.asarray(image.dataobj).transpose(2, 1, 0), volume.array)
    np.testing.assert_allclose(image.affine, volume.affine_ras(), atol=1e-4)

    # A second case with one known label (by name, different id) and one new label.
    table = LabelTable()
    table.add("kidney", label_id=7)
    table.add("spleen", label_id=1)
    array = np.zeros(volume.shape_zyx, np.uint16)
    array[2, 4:9, 4:9] = 7
    array[5, 1:3, 1:3] = 1
    before = (dataset / "labelsTr" / "case_001.nii.gz").read_bytes()
    second_case = LabelMap(volume.shape_zyx, table, array=array)
    with pytest.raises(OutputExistsError, match="--append"):  # adding to a dataset is explicit
        export_volume("nnunet", volume, second_case, dataset, ExportSpec(overwrite=True))
    assert not (dataset / "labelsTr" / "case_002.nii.gz").exists()
    export_volume("nnunet", volume, second_case, dataset, ExportSpec(append=True))
    data = json.loads((dataset / "dataset.json").read_text())
    assert data["labels"] == {"background": 0, "liver": 1, "kidney": 2, "spleen": 3}
    assert data["numTraining"] == 2
    assert (dataset / "labelsTr" / "case_001.nii.gz").read_bytes() == before  # not renumbered
    second = np.asarray(nib.load(str(dataset / "labelsTr" / "case_002.nii.gz")).dataobj).transpose(2, 1, 0)
    assert set(np.unique(second[2])) == {0, 2}
    assert set(np.unique(second[5])) == {0, 3}
    verify_with_nnunet(dataset, capfd)


@pytest.mark.slow
def test_nnunet_integrity_check_catches_a_broken_dataset(tmp_path, volume, label_map, capfd):
    """The checker we rely on is not a no-op: a dataset.json missing a label makes it fail."""
    dataset = tmp_path / "Dataset502_Broken"
    export_volume("nnunet", volume, label_map, dataset, ExportSpec())
    data = json.loads((dataset / "dataset.json").read_text())
    del data["labels"]["kidney"]
    (dataset / "dataset.json").write_text(json.dumps(data))
    with pytest.raises(RuntimeError, match="unexpected labels"):
        verify_with_nnunet(dataset, capfd)


@pytest.mark.slow
@pytest.mark.realdata
def test_nnunet_integrity_check_passes_on_the_real_labelled_ct(tmp_path, capfd):
    from support.export_cases import shared_data_or_skip

    from annotator.io import load_volume, read_labels_onto

    case = shared_data_or_skip() / "labelled" / "ct_totalseg_abdomen_3mm"
    volume = load_volume(case / "image.nii.gz")
    label_map = read_labels_onto(volume, case / "labels.nii.gz")
    dataset = tmp_path / "Dataset503_TotalSeg"
    export_volume("nnunet", volume, label_map, dataset, ExportSpec())
    data = json.loads((dataset / "dataset.json").read_text())
    assert list(data["labels"].values()) == list(range(42))  # 41 labels renumbered 1..41
    assert data["channel_names"] == {"0": "CT"}  # recognised from the HU range of a NIfTI
    verify_with_nnunet(dataset, capfd)
