"""Round trip on the demo phantom and the real labelled CT: image + labels -> each format -> read back
by a reader we did not write -> identical masks on identical geometry."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.export_cases import shared_data_or_skip

from annotator.core.labels import LabelMap
from annotator.core.volume import Volume
from annotator.export.api import ExportSpec, export_volume


def read_back_nifti(path, volume: Volume) -> np.ndarray:
    import nibabel as nib
    import SimpleITK as sitk

    img = nib.load(str(path))
    np.testing.assert_allclose(img.affine, volume.affine_ras(), atol=1e-4)
    itk = sitk.ReadImage(str(path))
    np.testing.assert_allclose(itk.GetSpacing(), volume.spacing_xyz_mm, atol=1e-4)
    np.testing.assert_allclose(itk.GetOrigin(), volume.origin_lps_mm, atol=1e-4)
    np.testing.assert_allclose(np.reshape(itk.GetDirection(), (3, 3)), volume.direction_lps, atol=1e-4)
    return np.asarray(img.dataobj).transpose(2, 1, 0)


def read_back_coco(out_dir, label_map: LabelMap) -> np.ndarray:
    from pycocotools.coco import COCO

    coco = COCO(str(out_dir / "annotations.json"))
    rebuilt = np.zeros_like(label_map.array)
    for ann in coco.dataset["annotations"]:
        image = coco.imgs[ann["image_id"]]
        mask = coco.annToMask(ann).astype(bool)
        assert not (rebuilt[image["slice_index"]][mask]).any(), "components of one slice overlap"
        rebuilt[image["slice_index"]][mask] = ann["category_id"]
    return rebuilt


def round_trip_every_format(tmp_path, volume: Volume, label_map: LabelMap) -> None:
    spec = ExportSpec(case_id="rt")
    export_volume("nifti", volume, label_map, tmp_path / "nifti", spec)
    np.testing.assert_array_equal(read_back_nifti(tmp_path / "nifti" / "rt_labels.nii.gz", volume), label_map.array)

    export_volume("datalist", volume, label_map, tmp_path / "datalist", spec)
    np.testing.assert_array_equal(read_back_nifti(tmp_path / "datalist" / "labelsTr" / "rt.nii.gz", volume),
                                  label_map.array)
    np.testing.assert_array_equal(read_back_nifti(tmp_path / "datalist" / "imagesTr" / "rt.nii.gz", volume),
                                  volume.array)

    export_volume("nnunet", volume, label_map, tmp_path / "nnunet", spec)
    labels = json.loads((tmp_path / "nnunet" / "dataset.json").read_text())["labels"]
    written = read_back_nifti(tmp_path / "nnunet" / "labelsTr" / "case_001.nii.gz", volume)
    for lab in label_map.table:
        if lab.id in label_map.present_ids():
            np.testing.assert_array_equal(written == labels[lab.name], label_map.array == lab.id)
    np.testing.assert_array_equal(read_back_nifti(tmp_path / "nnunet" / "imagesTr" / "case_001_0000.nii.gz", volume),
                                  volume.array)

    export_volume("coco", volume, label_map, tmp_path / "coco", spec)
    np.testing.assert_array_equal(read_back_coco(tmp_path / "coco", label_map), label_map.array)


def test_demo_phantom_round_trip(tmp_path):
    from annotator.core.phantom import make_phantom

    phantom = make_phantom(shape_zyx=(12, 64, 64), spacing_zyx_mm=(10.0, 3.2, 3.2))
    assert phantom.truth.present_ids()
    round_trip_every_format(tmp_path, phantom.volume, phantom.truth)


@pytest.mark.realdata
def test_real_labelled_ct_round_trip(tmp_path):
    from annotator.io import load_volume, read_labels_onto

    case = shared_data_or_skip() / "labelled" / "ct_totalseg_abdomen_3mm"
    volume = load_volume(case / "image.nii.gz")
    label_map = read_labels_onto(volume, case / "labels.nii.gz")
    assert len(label_map.present_ids()) == 41
    round_trip_every_format(tmp_path, volume, label_map)
