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
    """Rasterise YOLO polygons exactly as Ultralytics does: its label loader parses the coordinates
    as float32 and scales them by the image size, then ultralytics.data.utils.polygon2mask casts
    them to int32 and fills with cv2.fillPoly."""
    import cv2

    masks: dict[int, np.ndarray] = {}
    for line in txt_path.read_text().splitlines():
        values = line.split()
        cls = int(values[0])
        segment = np.array(values[1:], dtype=np.float32).reshape(-1, 2) * np.array([width, height], np.float32)
        mask = np.zeros((height, width), dtype=np.uint8)
        cv2.fillPoly(mask, np.asarray([segment], dtype=np.int32), color=1)
        masks[cls] = masks.get(cls, np.zeros((height, width), bool)) | mask.astype(bool)
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


@pytest.mark.parametrize("seed", range(6))
def test_small_random_structures_round_trip_exactly_through_ultralytics_rasterisation(tmp_path, seed):
    """Small, thin and ragged shapes (where a one-pixel ring cost Dice 0.87-0.94) come back
    pixel for pixel, holes filled, on images of odd sizes."""
    from annotator.export.yolo import yolo_lines

    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(20, 700)), int(rng.integers(20, 700))
    label_slice = np.zeros((height, width), np.uint16)
    for label in (1, 2, 3):
        for _ in range(4):
            r, c = int(rng.integers(0, height - 6)), int(rng.integers(0, width - 6))
            blob = ndimage.binary_opening(rng.random((6, 6)) < 0.6) if rng.random() < 0.5 else rng.random((6, 6)) < 0.5
            label_slice[r:r + 6, c:c + 6][blob] = label
    label_slice[0, :5] = 3  # a one-pixel line along the border
    label_slice[height - 1, width - 1] = 2  # one pixel in the far corner
    lines, _ = yolo_lines(label_slice, {1: 0, 2: 1, 3: 2})
    txt = tmp_path / "s.txt"
    txt.write_text("\n".join(lines) + "\n")
    masks = read_yolo_masks(txt, height, width)
    for cls, label in ((0, 1), (1, 2), (2, 3)):
        expected = np.zeros((height, width), bool)
        labelled, n = ndimage.label(label_slice == label, structure=np.ones((3, 3)))
        for k in range(1, n + 1):
            expected |= ndimage.binary_fill_holes(labelled == k)
        np.testing.assert_array_equal(masks.get(cls, np.zeros_like(expected)), expected)
