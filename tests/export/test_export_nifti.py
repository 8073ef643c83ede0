"""NIfTI label export: nibabel and SimpleITK (readers we did not write) see the source grid exactly."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.core.errors import GeometryMismatchError
from annotator.core.labels import LabelMap, LabelTable
from annotator.export.api import ExportSpec, OutputExistsError
from annotator.export.nifti import NiftiExporter, write_label_nifti


def test_nibabel_and_simpleitk_read_the_source_geometry_and_voxels(tmp_path, volume, label_map):
    import nibabel as nib
    import SimpleITK as sitk

    result = NiftiExporter().export_case(volume, label_map, tmp_path, ExportSpec(case_id="c1"))
    path = result.files[0]
    img = nib.load(str(path))
    np.testing.assert_allclose(img.affine, volume.affine_ras(), atol=1e-4)
    assert img.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(img.dataobj).transpose(2, 1, 0), label_map.array)

    itk = sitk.ReadImage(str(path))
    np.testing.assert_allclose(itk.GetSpacing(), volume.spacing_xyz_mm, atol=1e-4)
    np.testing.assert_allclose(itk.GetOrigin(), volume.origin_lps_mm, atol=1e-4)
    np.testing.assert_allclose(np.reshape(itk.GetDirection(), (3, 3)), volume.direction_lps, atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(itk), label_map.array)


def test_labels_above_255_are_written_as_uint16(tmp_path, volume):
    import nibabel as nib

    array = np.zeros(volume.shape_zyx, np.uint16)
    array[2, 3, 4] = 300
    path = write_label_nifti(volume, LabelMap(volume.shape_zyx, array=array), tmp_path / "l.nii.gz",
                             overwrite=False)
    img = nib.load(str(path))
    assert img.get_data_dtype() == np.uint16
    assert np.asarray(img.dataobj)[4, 3, 2] == 300


def test_label_map_on_another_grid_is_refused_and_nothing_is_written(tmp_path, volume, label_map):
    shifted = volume.with_array(label_map.array, spacing_zyx_mm=(3.0, 0.8, 0.75))
    with pytest.raises(GeometryMismatchError, match=r"spacing .*0\.7000.* vs .*0\.7500"):
        NiftiExporter().export_case(volume, shifted, tmp_path / "out", ExportSpec())
    wrong_shape = LabelMap((6, 20, 23), LabelTable())
    with pytest.raises(GeometryMismatchError, match="shape"):
        NiftiExporter().export_case(volume, wrong_shape, tmp_path / "out", ExportSpec())
    assert not (tmp_path / "out").exists()


def test_label_volume_on_the_same_grid_is_accepted(tmp_path, volume, label_map):
    same = volume.with_array(label_map.array.astype(np.int32))
    result = NiftiExporter().export_case(volume, same, tmp_path, ExportSpec(case_id="c"))
    assert result.files[0].exists()


def test_existing_output_is_not_overwritten_without_the_flag(tmp_path, volume, label_map):
    import nibabel as nib

    NiftiExporter().export_case(volume, label_map, tmp_path, ExportSpec(case_id="c"))
    before = (tmp_path / "c_labels.nii.gz").read_bytes()
    other = LabelMap(volume.shape_zyx, label_map.table, array=np.zeros_like(label_map.array))
    with pytest.raises(OutputExistsError, match="--overwrite"):
        NiftiExporter().export_case(volume, other, tmp_path, ExportSpec(case_id="c"))
    assert (tmp_path / "c_labels.nii.gz").read_bytes() == before
    NiftiExporter().export_case(volume, other, tmp_path, ExportSpec(case_id="c", overwrite=True))
    assert not np.asarray(nib.load(str(tmp_path / "c_labels.nii.gz")).dataobj).any()


def test_case_id_carrying_the_patient_name_is_pseudonymised(tmp_path, volume, label_map):
    result = NiftiExporter().export_case(volume, label_map, tmp_path, ExportSpec(case_id="Doe_Jane_ct"))
    assert "doe" not in result.files[0].name.lower()
    kept = NiftiExporter().export_case(volume, label_map, tmp_path,
                                       ExportSpec(case_id="Doe_Jane_ct", keep_phi=True))
    assert kept.files[0].name == "Doe_Jane_ct_labels.nii.gz"
