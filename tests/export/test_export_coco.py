"""COCO export: pycocotools loads the file and annToMask of every annotation equals our mask."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from annotator.core.geometry import Window, apply_window
from annotator.export.api import ExportSpec, OutputExistsError, export_volume
from annotator.export.polygons import exact_polygons, pixel_edge_loops


def expected_components(label_array: np.ndarray, index: int) -> list[tuple[int, np.ndarray]]:
    """(label, mask) per 8-connected component of each label on slice `index` (computed here)."""
    out = []
    for label_id in sorted(set(np.unique(label_array[index])) - {0}):
        comps, n = ndimage.label(label_array[index] == label_id, structure=np.ones((3, 3)))
        out += [(int(label_id), comps == k) for k in range(1, n + 1)]
    return out


def check_every_annotation_with_pycocotools(out_dir, label_array):
    from pycocotools.coco import COCO

    coco = COCO(str(out_dir / "annotations.json"))
    seen = 0
    for image in coco.dataset["images"]:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        expected = expected_components(label_array, image["slice_index"])
        assert len(anns) == len(expected)
        remaining = list(expected)
        for ann in anns:
            mask = coco.annToMask(ann).astype(bool)
            match = [i for i, (lab, m) in enumerate(remaining) if lab == ann["category_id"] and np.array_equal(m, mask)]
            assert match, f"annotation {ann['id']} matches none of our masks on slice {image['slice_index']}"
            remaining.pop(match[0])
            assert ann["area"] == int(mask.sum())
            ys, xs = np.nonzero(mask)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            seen += 1
    return coco, seen


@pytest.mark.parametrize("encoding", ["rle", "polygon"])
def test_pycocotools_reads_back_every_mask(tmp_path, volume, label_map, encoding):
    spec = ExportSpec(case_id="c1", coco_encoding=encoding, window=Window(0, 1000))
    result = export_volume("coco", volume, label_map, tmp_path, spec)
    coco, seen = check_every_annotation_with_pycocotools(tmp_path, label_map.array)
    assert seen == 4  # two rectangles of label 1, the holed square and the border square of label 3
    assert {c["id"]: c["name"] for c in coco.dataset["categories"]} == {1: "liver", 3: "kidney"}
    assert sorted(img["slice_index"] for img in coco.dataset["images"]) == [1, 3, 4]
    kinds = {type(a["segmentation"]).__name__ for a in coco.dataset["annotations"]}
    if encoding == "rle":
        assert kinds == {"dict"}
    else:
        # the square with a hole cannot be a polygon: it alone stays RLE
        assert kinds == {"dict", "list"}
        assert sum(isinstance(a["segmentation"], dict) for a in coco.dataset["annotations"]) == 1
        assert any("holes" in w for w in result.warnings)


def test_slice_images_are_windowed_pngs(tmp_path, volume, label_map):
    from PIL import Image

    window = Window(100, 600)
    export_volume("coco", volume, label_map, tmp_path, ExportSpec(case_id="c1", window=window))
    data = json.loads((tmp_path / "annotations.json").read_text())
    for image in data["images"]:
        pixels = np.asarray(Image.open(tmp_path / image["file_name"]))
        np.testing.assert_array_equal(pixels, apply_window(volume.array[image["slice_index"]], window))
        assert (image["width"], image["height"]) == (24, 20)


def test_slice_selection_all_and_every_kth_with_empty_negatives(tmp_path, volume, label_map):
    export_volume("coco", volume, label_map, tmp_path / "all", ExportSpec(slices="all"))
    data = json.loads((tmp_path / "all" / "annotations.json").read_text())
    assert [img["slice_index"] for img in data["images"]] == [0, 1, 2, 3, 4, 5]
    export_volume("coco", volume, label_map, tmp_path / "k", ExportSpec(slices="every", every_k=2))
    data = json.loads((tmp_path / "k" / "annotations.json").read_text())
    # every 2nd slice (0, 2, 4) plus every annotated slice (1, 3, 4)
    assert [img["slice_index"] for img in data["images"]] == [0, 1, 2, 3, 4]
    annotated_images = {a["image_id"] for a in data["annotations"]}
    negatives = [img for img in data["images"] if img["id"] not in annotated_images]
    assert [img["slice_index"] for img in negatives] == [0, 2]
    check_every_annotation_with_pycocotools(tmp_path / "k", label_map.array)


def test_other_planes_export_raw_slices_along_that_axis(tmp_path, volume, label_map):
    export_volume("coco", volume, label_map, tmp_path, ExportSpec(axis=2))
    data = json.loads((tmp_path / "annotations.json").read_text())
    assert all(img["height"] == 6 and img["width"] == 20 for img in data["images"])
    from pycocotools.coco import COCO

    coco = COCO(str(tmp_path / "annotations.json"))
    total = sum(coco.annToMask(a).sum() for a in coco.dataset["annotations"])
    assert total == np.count_nonzero(label_map.array)


def test_existing_export_is_not_overwritten(tmp_path, volume, label_map):
    export_volume("coco", volume, label_map, tmp_path, ExportSpec(case_id="c1"))
    before = (tmp_path / "annotations.json").read_bytes()
    with pytest.raises(OutputExistsError):
        export_volume("coco", volume, label_map, tmp_path, ExportSpec(case_id="c1"))
    assert (tmp_path / "annotations.json").read_bytes() == before


def test_polygons_are_exact_for_random_hole_free_shapes():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(40):
        mask = ndimage.binary_opening(rng.random((30, 33)) > 0.55) | (rng.random((30, 33)) > 0.97)
        comps, n = ndimage.label(mask, structure=np.ones((3, 3)))
        for k in range(1, n + 1):
            comp = comps == k
            filled = ndimage.binary_fill_holes(comp)
            polygons = exact_polygons(comp)
            if np.array_equal(filled, comp):
                assert polygons is not None, "a hole-free component must become polygons"
            if polygons is not None:  # whatever is returned must rasterise back exactly
                rle = mask_utils.merge(mask_utils.frPyObjects(polygons, *comp.shape))
                assert np.array_equal(mask_utils.decode(rle).astype(bool), comp)
                checked += 1
    assert checked > 50


def test_pixel_edge_loop_of_one_pixel_is_its_square():
    mask = np.zeros((3, 3), bool)
    mask[1, 2] = True
    assert pixel_edge_loops(mask) == [[(2, 1), (3, 1), (3, 2), (2, 2)]]


def scipy_and_pycocotools_annotations(label_slice: np.ndarray, connectivity: int) -> list[tuple]:
    """The reference, built the obvious way: scipy labels each label's full mask, pycocotools
    encodes each component's full-size Fortran mask; area and bbox from the mask's pixels."""
    from pycocotools import mask as mask_utils

    out = []
    structure = ndimage.generate_binary_structure(2, connectivity)
    for label_id in sorted(set(np.unique(label_slice).tolist()) - {0}):
        pieces, _ = ndimage.label(label_slice == label_id, structure=structure)
        for k, box in enumerate(ndimage.find_objects(pieces), start=1):
            mask = np.zeros(label_slice.shape, dtype=bool)
            mask[box] = pieces[box] == k
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            ys, xs = np.nonzero(mask)
            bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
            out.append((label_id, rle["counts"], list(rle["size"]), int(mask.sum()), bbox))
    return out


def our_annotations(label_slice: np.ndarray, connectivity: int) -> list[tuple]:
    from annotator.export.coco import slice_annotations

    anns, _ = slice_annotations(label_slice, connectivity=connectivity)
    return [(a["category_id"], a["segmentation"]["counts"].encode("ascii"), a["segmentation"]["size"],
             a["area"], a["bbox"]) for a in anns]


def random_label_slices():
    """Label images that stress run bookkeeping: noise (many components, holes, corner contacts),
    blobs of several labels touching each other, full-height columns (runs that continue into
    the next column), components on the first/last pixel and every edge, thin shapes, empty."""
    rng = np.random.default_rng(11)
    for shape in [(7, 5), (30, 33), (1, 9), (12, 1), (1, 1), (64, 48)]:
        for trial in range(12):
            labels = (rng.random(shape) > (0.3 if trial % 2 else 0.7)).astype(np.uint16)
            labels[rng.random(shape) > 0.8] = 2
            labels[rng.random(shape) > 0.95] = 7
            if trial % 3 == 0:
                labels[:, rng.integers(shape[1])] = 3
            if trial % 4 == 1:
                labels = ndimage.binary_closing(labels > 0, iterations=2).astype(np.uint16) * (1 + trial % 3)
                labels[rng.random(shape) > 0.9] = 0  # holes
            yield labels
    big = np.zeros((96, 80), np.uint16)
    yy, xx = np.mgrid[:96, :80]
    big[(yy - 40) ** 2 + (xx - 30) ** 2 < 600] = 1
    big[(yy - 40) ** 2 + (xx - 30) ** 2 < 100] = 0       # a hole
    big[(yy - 20) ** 2 + (xx - 60) ** 2 < 200] = 2       # touches label 1? no: its own blob
    big[:, 75:] = 5                                       # full-height band on the right edge
    big[0, 0], big[-1, -1], big[-1, 0], big[0, -7] = 4, 4, 4, 4  # corner pixels
    big[50:52, 0:80] = 6                                  # a row band through label 1 and 5
    yield big
    yield np.zeros((10, 12), np.uint16)
    yield np.ones((10, 12), np.uint16)
    yield np.full((6, 4), 9, np.uint8)
    yield np.eye(9, dtype=np.int32)                       # diagonal: one piece (8) or nine (4)
    yield np.fliplr(np.eye(9, dtype=np.uint16)) * 3
    checker = (np.indices((11, 10)).sum(axis=0) % 2).astype(np.uint16)
    yield checker
    yield np.ascontiguousarray(checker.T)[::-1]           # a negative-stride view
    yield big.T                                           # a non-contiguous (transposed) view


@pytest.mark.parametrize("connectivity", [1, 2])
def test_rle_area_bbox_and_order_equal_scipy_plus_pycocotools_encode(connectivity):
    """Every annotation: byte-identical to pycocotools.mask.encode of its full-size mask, same
    area and bbox, same order as scipy numbers the components (label, then first pixel)."""
    checked = 0
    for labels in random_label_slices():
        expected = scipy_and_pycocotools_annotations(labels, connectivity)
        assert our_annotations(labels, connectivity) == expected
        checked += len(expected)
    assert checked > 2000


@pytest.mark.parametrize("connectivity", [1, 2])
def test_a_stack_of_slices_gives_each_slice_its_own_annotations(connectivity):
    """Slices are annotated a stack at a time: nothing may join across slices (a label on the
    last column of one slice beside the same label on the first column of the next) and every
    slice keeps its own order."""
    from annotator.export.coco import annotations_along, stack_annotations

    rng = np.random.default_rng(8)
    volume = (rng.random((9, 13, 11)) > 0.6).astype(np.uint16) * rng.integers(1, 4, size=(9, 13, 11)).astype(np.uint16)
    volume[:, :, 0] = 2                 # first and last columns of every slice: same label
    volume[:, :, -1] = 2
    volume[:, 0, :] = 1                 # ... and first/last rows along the other axes
    volume[:, -1, :] = 1
    volume[4] = 0                       # an empty slice in the middle
    per_slice, _ = stack_annotations(volume, connectivity=connectivity)
    assert len(per_slice) == 9
    for z in range(9):
        expected = scipy_and_pycocotools_annotations(volume[z], connectivity)
        got = [(a["category_id"], a["segmentation"]["counts"].encode("ascii"), a["segmentation"]["size"],
                a["area"], a["bbox"]) for a in per_slice[z]]
        assert got == expected
    for axis in range(3):
        indices = [0, 2, 3, 4, 5, 8][: volume.shape[axis]]
        # chunk_pixels small enough that chunks hold 1-2 slices, consecutive (views) or not (copies)
        along, _ = annotations_along(volume, axis, indices, connectivity=connectivity, chunk_pixels=250)
        for index, anns in zip(indices, along, strict=True):
            label_slice = np.take(volume, index, axis=axis)
            assert [a["segmentation"]["counts"].encode("ascii") for a in anns] == \
                [e[1] for e in scipy_and_pycocotools_annotations(label_slice, connectivity)]


def test_rle_for_a_slice_with_many_components_at_benchmark_size():
    rng = np.random.default_rng(5)
    labels = (ndimage.uniform_filter(rng.random((512, 512)), 15) > 0.54).astype(np.uint16)
    labels[rng.random(labels.shape) > 0.9995] = 2
    labels[:, 300] = 3
    expected = scipy_and_pycocotools_annotations(labels, 2)
    assert len(expected) > 100
    assert our_annotations(labels, 2) == expected


def test_many_touching_runs_still_settle_when_the_union_find_hands_over_to_scipy():
    from annotator.export.components import _connected_runs

    # a zigzag chain with edges listed so that the roots settle slowly, plus separate pieces
    n = 200
    run_a = np.arange(0, n - 1)[::-1].copy()
    run_b = run_a + 1
    keep = run_a % 17 != 0
    run_a, run_b = run_a[keep], run_b[keep]
    reference = _connected_runs(n, run_a, run_b, max_rounds=0)  # scipy alone
    assert reference[0] == 1 + int(np.count_nonzero(~keep))
    for rounds in (1, 2, 32):
        n_comp, comp = _connected_runs(n, run_a, run_b, max_rounds=rounds)
        assert n_comp == reference[0]
        # the same partition (component numbers may differ)
        pairs = set(zip(comp.tolist(), reference[1].tolist(), strict=True))
        assert len(pairs) == n_comp


def test_connectivity_below_one_is_refused():
    from annotator.export.components import slice_runs

    with pytest.raises(ValueError, match="connectivity"):
        slice_runs(np.ones((3, 3), np.uint16), connectivity=0)


@pytest.mark.realdata
def test_rle_equals_pycocotools_encode_on_every_slice_of_the_real_41_label_ct():
    from support.export_cases import shared_data_or_skip

    from annotator.core.geometry import slice_2d
    from annotator.io import load_volume, read_labels_onto

    case = shared_data_or_skip() / "labelled" / "ct_totalseg_abdomen_3mm"
    label_array = read_labels_onto(load_volume(case / "image.nii.gz"), case / "labels.nii.gz").array
    checked = 0
    for axis in range(3):
        for index in range(label_array.shape[axis]):
            label_slice = slice_2d(label_array, axis, index)
            expected = scipy_and_pycocotools_annotations(label_slice, 2)
            assert our_annotations(label_slice, 2) == expected, (axis, index)
            checked += len(expected)
    assert checked > 1000
