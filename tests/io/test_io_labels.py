"""read_labels_onto: label files land on the image grid losslessly, or are refused with both grids named."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from annotator.core.errors import InputError
from annotator.core.volume import Volume
from annotator.io import load_volume, read_labels_onto, write_volume


@pytest.mark.realdata
def test_labelled_case_loads_with_names(shared_data):
    case = shared_data / "labelled" / "ct_totalseg_abdomen_3mm"
    image = load_volume(case / "image.nii.gz")
    labels = read_labels_onto(image, case / "labels.nii.gz")
    names = json.loads((case / "labels.json").read_text())["labels"]
    raw = np.asanyarray(nib.load(case / "labels.nii.gz").dataobj)
    np.testing.assert_array_equal(labels.array, raw.T)
    assert labels.array.dtype == np.uint16
    assert labels.present_ids() == sorted(int(k) for k in names)
    assert labels.table[5].name == names["5"] == "liver"


def _labels_like(image: Volume) -> Volume:
    array = np.zeros(image.shape_zyx, np.uint8)
    array[1:4, 2:6, 3:9] = 3
    array[5, 7, 10] = 7
    return image.with_array(array)


@pytest.mark.parametrize("axes_xyz", [(0, 1, 2), (2, 0, 1), (1, 2, 0)])
@pytest.mark.parametrize("flips", [(), (0,), (0, 2), (1,)])
def test_permuted_and_flipped_label_file_lands_on_image_grid(tmp_path, oblique_volume, axes_xyz, flips):
    """Re-store the same world-space labels with axes permuted/flipped; the result must not change."""
    labels = _labels_like(oblique_volume)
    data_xyz = labels.array.T
    affine = labels.affine_ras()
    # permute index axes: new axis n is old axis axes_xyz[n]
    data_xyz = np.transpose(data_xyz, axes_xyz)
    affine = affine[:, list(axes_xyz) + [3]]
    for axis in flips:
        n = data_xyz.shape[axis]
        data_xyz = np.flip(data_xyz, axis)
        affine = affine.copy()
        affine[:3, 3] += affine[:3, axis] * (n - 1)
        affine[:3, axis] *= -1
    path = tmp_path / "lab.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data_xyz), affine), path)
    result = read_labels_onto(oblique_volume, path)
    np.testing.assert_array_equal(result.array, labels.array)
    assert result.present_ids() == [3, 7]


def test_label_sub_box_is_padded_not_resampled(tmp_path, oblique_volume):
    full = _labels_like(oblique_volume)
    crop = full.array[1:5, 2:8, 3:11]
    origin = oblique_volume.index_zyx_to_world_lps(np.array([1, 2, 3]))
    cropped = Volume(crop.copy(), spacing_zyx_mm=full.spacing_zyx_mm, origin_lps_mm=tuple(origin),
                     direction_lps=full.direction_lps)
    write_volume(cropped, tmp_path / "crop.nrrd")
    result = read_labels_onto(oblique_volume, tmp_path / "crop.nrrd")
    expected = np.zeros_like(full.array)
    expected[1:5, 2:8, 3:11] = crop
    np.testing.assert_array_equal(result.array, expected)


def test_half_voxel_shift_is_refused_naming_both_grids(tmp_path, oblique_volume):
    labels = _labels_like(oblique_volume)
    shifted = Volume(labels.array, spacing_zyx_mm=labels.spacing_zyx_mm,
                     origin_lps_mm=tuple(np.add(labels.origin_lps_mm, labels.direction_lps[:, 0] * 0.35)),
                     direction_lps=labels.direction_lps)
    write_volume(shifted, tmp_path / "shift.nii.gz")
    with pytest.raises(InputError, match=r"labels: shape.*image: shape") as info:
        read_labels_onto(oblique_volume, tmp_path / "shift.nii.gz")
    assert "shift.nii.gz" in str(info.value)


def test_different_spacing_is_refused(tmp_path, oblique_volume):
    labels = _labels_like(oblique_volume)
    other = Volume(labels.array, spacing_zyx_mm=(2.0, 0.8, 0.7), origin_lps_mm=labels.origin_lps_mm,
                   direction_lps=labels.direction_lps)
    write_volume(other, tmp_path / "sp.nii.gz")
    with pytest.raises(InputError, match="not the image grid"):
        read_labels_onto(oblique_volume, tmp_path / "sp.nii.gz")


def test_non_integer_and_negative_labels_are_refused(tmp_path, oblique_volume):
    frac = oblique_volume.with_array(np.full(oblique_volume.shape_zyx, 0.5, np.float32))
    write_volume(frac, tmp_path / "prob.nii.gz")
    with pytest.raises(InputError, match="non-integer"):
        read_labels_onto(oblique_volume, tmp_path / "prob.nii.gz")
    neg = oblique_volume.with_array(np.full(oblique_volume.shape_zyx, -1, np.int16))
    write_volume(neg, tmp_path / "neg.nii.gz")
    with pytest.raises(InputError, match="negative"):
        read_labels_onto(oblique_volume, tmp_path / "neg.nii.gz")
    whole = oblique_volume.with_array(np.full(oblique_volume.shape_zyx, 2.0, np.float32))
    write_volume(whole, tmp_path / "whole.nii.gz")
    assert read_labels_onto(oblique_volume, tmp_path / "whole.nii.gz").present_ids() == [2]


def test_sidecar_names_are_used(tmp_path, oblique_volume):
    write_volume(_labels_like(oblique_volume), tmp_path / "seg.nii.gz")
    (tmp_path / "seg.json").write_text(json.dumps({"3": "liver"}))
    table = read_labels_onto(oblique_volume, tmp_path / "seg.nii.gz").table
    assert table[3].name == "liver"
    assert table[7].name == "label 7"
