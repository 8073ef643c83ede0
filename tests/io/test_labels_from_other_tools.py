"""Labels made elsewhere: a DICOM SEG (ours, read back by frame UIDs onto its series) and a 3D Slicer
.seg.nrrd (segment names, colours, values)."""

from __future__ import annotations

import numpy as np
import pytest
from support.export_cases import labels_for, shared_data_or_skip, write_synthetic_ct_series

from annotator.core.errors import InputError
from annotator.export.api import ExportSpec, export_volume
from annotator.io import load_volume, read_labels_onto


def _round_trip(volume, tmp_path):
    labels = labels_for(volume)
    out = tmp_path / "seg"
    result = export_volume("dicom-seg", volume, labels, out, ExportSpec(case_id="c1"))
    back = read_labels_onto(volume, result.files[0])
    assert np.array_equal(back.array, labels.array)  # same values on the same voxels
    assert [(lab.id, lab.name) for lab in back.table] == [(2, "liver"), (5, "lesion")]
    for lab in back.table:  # CIELab in the file: the colour comes back within rounding
        assert np.abs(np.subtract(lab.color, labels.table[lab.id].color)).max() <= 2
    return result.files[0]


def test_our_dicom_seg_opens_back_as_the_same_labels(tmp_path):
    write_synthetic_ct_series(tmp_path / "src", n_slices=5)
    volume = load_volume(tmp_path / "src")
    _round_trip(volume, tmp_path)


def test_real_scanner_series_seg_round_trip(tmp_path):
    series = shared_data_or_skip() / "dicom" / "ct_philips_ingenuity_axial_5mm" / "dcm"
    volume = load_volume(series)
    seg = _round_trip(volume, tmp_path)
    write_synthetic_ct_series(tmp_path / "other", n_slices=3)
    with pytest.raises(InputError, match="references none of the open series' images"):
        read_labels_onto(load_volume(tmp_path / "other"), seg)


def test_seg_onto_a_nifti_and_a_broken_seg(tmp_path):
    write_synthetic_ct_series(tmp_path / "src", n_slices=4)
    volume = load_volume(tmp_path / "src")
    seg = _round_trip(volume, tmp_path)
    from annotator.io import write_volume

    write_volume(volume, tmp_path / "image.nii.gz")
    with pytest.raises(InputError, match="opens onto the DICOM series it segments"):
        read_labels_onto(load_volume(tmp_path / "image.nii.gz"), seg)
    broken = tmp_path / "broken_seg.dcm"
    data = seg.read_bytes()
    broken.write_bytes(data[: len(data) - 200])
    with pytest.raises(InputError, match="broken_seg.dcm"):
        read_labels_onto(volume, broken)


def _slicer_seg(path, array, volume, segments):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(tuple(float(s) for s in volume.spacing_zyx_mm[::-1]))
    image.SetOrigin(volume.origin_lps_mm)
    image.SetDirection(tuple(float(v) for v in np.asarray(volume.direction_lps).ravel()))
    for i, (name, colour, value, layer) in enumerate(segments):
        image.SetMetaData(f"Segment{i}_Name", name)
        image.SetMetaData(f"Segment{i}_Color", " ".join(str(c) for c in colour))
        image.SetMetaData(f"Segment{i}_LabelValue", str(value))
        image.SetMetaData(f"Segment{i}_Layer", str(layer))
        image.SetMetaData(f"Segment{i}_ID", f"Segment_{i + 1}")
    sitk.WriteImage(image, str(path))


def test_slicer_seg_nrrd_names_colours_values(tmp_path):
    write_synthetic_ct_series(tmp_path / "src", n_slices=4)
    volume = load_volume(tmp_path / "src")
    array = np.zeros(volume.shape_zyx, np.uint8)
    array[1, 2:6, 3:8] = 3
    array[2, 1:3, 1:3] = 1
    path = tmp_path / "Segmentation.seg.nrrd"
    _slicer_seg(path, array, volume, [("tumour", (1.0, 0.5, 0.0), 3, 0), ("vessel", (0.0, 0.0, 1.0), 1, 0)])
    back = read_labels_onto(volume, path)
    assert np.array_equal(back.array, array)
    assert {lab.id: (lab.name, lab.color) for lab in back.table} == {
        3: ("tumour", (255, 128, 0)), 1: ("vessel", (0, 0, 255))}
    _slicer_seg(path, array, volume, [("a", (1, 0, 0), 3, 0), ("b", (0, 1, 0), 1, 1)])
    from importlib.metadata import EntryPoint

    from annotator.plugin_host.manager import ENTRY_POINT_GROUP, using_registry

    # the core alone refuses layers (plugins/slicer_seg merges them when installed)
    with using_registry([EntryPoint("builtins", "annotator.builtins:manifest", ENTRY_POINT_GROUP)]), \
            pytest.raises(InputError, match="overlapping segments in 2 layers"):
        read_labels_onto(volume, path)
