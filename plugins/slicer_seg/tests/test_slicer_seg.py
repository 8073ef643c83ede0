"""The Slicer plugin: installing it adds the format to the CLI, the window's export menu and Open
labels; without it they are gone. Round trip: our labels -> .seg.nrrd -> pynrrd and SimpleITK
read the same voxels, geometry and segment names; and back into annotator."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import numpy as np
import pytest

from annotator.core.labels import LabelMap, LabelTable
from annotator.core.volume import Volume
from annotator.export.api import ExportSpec, export_volume
from annotator.plugin_host.manager import ENTRY_POINT_GROUP, using_registry

WITH_PLUGIN = [EntryPoint("builtins", "annotator.builtins:manifest", ENTRY_POINT_GROUP),
               EntryPoint("slicer-seg", "annotator_slicer_seg:manifest", ENTRY_POINT_GROUP)]
WITHOUT_PLUGIN = WITH_PLUGIN[:1]


@pytest.fixture
def case():
    direction = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # oblique enough to matter
    volume = Volume(np.zeros((6, 9, 11), np.int16), (2.5, 0.8, 0.7), (-10.0, 20.0, 30.5), direction)
    table = LabelTable()
    table.add("liver", (200, 80, 60), label_id=2)
    table.add("tumour", (250, 250, 0), label_id=7)
    array = np.zeros(volume.shape_zyx, np.uint16)
    array[1:5, 2:7, 3:9] = 2
    array[2:4, 3:5, 4:6] = 7
    return volume, LabelMap(volume.shape_zyx, table, array=array)


def _cli_formats() -> list[str]:
    from annotator.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    fmt = next(a for a in sub.choices["export"]._actions if a.dest == "format")
    return list(fmt.choices)


def test_installing_adds_the_format_everywhere_and_uninstalling_removes_it():
    from annotator.io.labels import label_file_suffixes

    with using_registry(WITH_PLUGIN):
        assert "slicer-seg" in _cli_formats()
        assert ".seg.nrrd" in label_file_suffixes()
    with using_registry(WITHOUT_PLUGIN):
        assert "slicer-seg" not in _cli_formats()


def test_round_trip_read_by_pynrrd_sitk_and_annotator(tmp_path, case):
    nrrd = pytest.importorskip("nrrd")
    import SimpleITK as sitk

    from annotator.io import read_labels_onto

    volume, labels = case
    with using_registry(WITH_PLUGIN):
        result = export_volume("slicer-seg", volume, labels, tmp_path, ExportSpec(case_id="c1"))
        path = result.files[0]
        assert path.name == "c1.seg.nrrd"
        data, header = nrrd.read(str(path))  # pynrrd: (x, y, z) order
        np.testing.assert_array_equal(data.transpose(2, 1, 0), labels.array)
        names = {header[f"Segment{i}_LabelValue"]: header[f"Segment{i}_Name"] for i in range(2)}
        assert names == {"2": "liver", "7": "tumour"}
        assert {header[f"Segment{i}_Layer"] for i in range(2)} == {"0"}
        np.testing.assert_allclose(np.asarray(header["space directions"], float),
                                   (np.asarray(volume.direction_lps) * volume.spacing_xyz_mm).T, atol=1e-6)
        np.testing.assert_allclose(header["space origin"], volume.origin_lps_mm, atol=1e-6)
        image = sitk.ReadImage(str(path))
        assert image.GetSpacing() == pytest.approx(volume.spacing_xyz_mm)
        back = read_labels_onto(volume, path)
        np.testing.assert_array_equal(back.array, labels.array)
        assert {lab.id: (lab.name, lab.color) for lab in back.table} == {
            2: ("liver", (200, 80, 60)), 7: ("tumour", (250, 250, 0))}


def test_segments_in_two_layers_merge_unless_they_overlap(tmp_path, case):
    import SimpleITK as sitk

    from annotator.core.errors import InputError
    from annotator.io import read_labels_onto

    volume, labels = case
    layer0 = (labels.array == 2).astype(np.uint8)
    layer1 = (labels.array == 7).astype(np.uint8)
    layer0[labels.array == 7] = 0

    def write(l1):
        image = sitk.Compose(*(sitk.GetImageFromArray(a) for a in (layer0, l1)))
        image.SetSpacing(volume.spacing_xyz_mm)
        image.SetOrigin(volume.origin_lps_mm)
        image.SetDirection(tuple(np.asarray(volume.direction_lps).ravel()))
        for i, (name, layer) in enumerate((("liver", 0), ("tumour", 1))):
            image.SetMetaData(f"Segment{i}_Name", name)
            image.SetMetaData(f"Segment{i}_LabelValue", "1")
            image.SetMetaData(f"Segment{i}_Layer", str(layer))
            image.SetMetaData(f"Segment{i}_Color", "1 0 0")
        path = tmp_path / "layers.seg.nrrd"
        sitk.WriteImage(image, str(path))
        return path

    with using_registry(WITH_PLUGIN):
        back = read_labels_onto(volume, write(layer1))
        assert {lab.name for lab in back.table} == {"liver", "tumour"}
        liver = back.table.by_name("liver").id
        tumour = back.table.by_name("tumour").id
        np.testing.assert_array_equal(back.array == tumour, labels.array == 7)
        np.testing.assert_array_equal(back.array == liver, layer0.astype(bool))
        overlapping = layer1.copy()
        overlapping[2, 2, 3] = 1  # a liver voxel claimed by the tumour too
        with pytest.raises(InputError, match="overlap in 1 voxels"):
            read_labels_onto(volume, write(overlapping))
    with using_registry(WITHOUT_PLUGIN):  # without the plugin the core refuses layered files
        with pytest.raises(InputError, match="layers"):
            read_labels_onto(volume, tmp_path / "layers.seg.nrrd")
