"""MONAI datalist (read by MONAI's own loaders) and YOLO segmentation (polygons rasterised by skimage)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from annotator.core.geometry import Window
from annotator.export.api import ExportSpec, export_volume


@pytest.mark.slow  # importing MONAI imports torch
def test_monai_loads_the_datalist_and_the_label_volumes_match(tmp_path, volume, label_map):
    monai_data = pytest.importorskip("monai.data")
    from monai.transforms import LoadImage

    export_volume("datalist", volume, label_map, tmp_path, ExportSpec(case_id="c1"))
    export_volume("datalist", volume, label_map, tmp_path, ExportSpec(case_id="c2", append=True))
    items = monai_data.load_decathlon_datalist(str(tmp_path / "datalist.json"), is_segmentation=True,
                                               data_list_key="training", base_dir=str(tmp_path))
    assert [p["image"] for p in items] == [str(tmp_path / "imagesTr" / f"c{i}.nii.gz") for i in (1, 2)]
    loader = LoadImage(image_only=True)
    label = loader(items[1]["label"])  # MONAI's (x, y, z) array with its affine
    np.testing.assert_array_equal(np.asarray(label).transpose(2, 1, 0), label_map.array)
    np.testing.assert_allclose(np.asarray(label.affine), volume.affine_ras(), atol=1e-4)
    data = json.loads((tmp_path / "datalist.json").read_text())
    assert data["labels"] == {"0": "background", "1": "liver", "3": "kidney"}
    assert data["numTraining"] == 2


def read_yolo_masks(txt_path, height, width) -> dict[int, np.ndarray]:
    """Rasterise YOLO polygons with skimage (pixel centres at integer coordinates)."""
    from skimage.draw import polygon2mask

    masks: dict[int, np.ndarray] = {}
    for line in txt_path.read_text().splitlines():
        values = line.split()
        cls, coords = int(values[0]), np.array(values[1:], float).reshape(-1, 2)
        rows_cols = np.column_stack([coords[:, 1] * height - 0.5, coords[:, 0] * width - 0.5])
        masks[cls] = masks.get(cls, np.zeros((height, width), bool)) | polygon2mask((height, width), rows_cols)
    return masks


def test_yolo_polygons_rasterise_to_our_masks_with_holes_filled(tmp_path, volume, label_map):
    result = export_volume("yolo", volume, label_map, tmp_path, ExportSpec(case_id="c", slices="all",
                                                                           window=Window(0, 500)))
    yaml_text = (tmp_path / "data.yaml").read_text()
    assert 'names:\n  0: "liver"\n  1: "kidney"\n' in yaml_text
    class_to_label = {0: 1, 1: 3}
    for index in range(volume.shape_zyx[0]):
        txt = tmp_path / "labels" / f"c_axial_{index:04d}.txt"
        assert (tmp_path / "images" / f"c_axial_{index:04d}.png").exists()
        masks = read_yolo_masks(txt, *volume.shape_zyx[1:])
        expected_labels = {class_to_label[c] for c in masks}
        assert expected_labels == set(np.unique(label_map.array[index])) - {0}
        for cls, mask in masks.items():
            ours = label_map.array[index] == class_to_label[cls]
            np.testing.assert_array_equal(mask, ndimage.binary_fill_holes(ours))
    assert any("hole" in w for w in result.warnings)
    assert (tmp_path / "labels" / "c_axial_0000.txt").read_text() == ""  # a negative
