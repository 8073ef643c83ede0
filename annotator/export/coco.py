"""COCO instance segmentation: one 8-bit PNG per exported slice, one annotation per label and component.

RLE: each slice's label runs are found in one pass and grouped into components, and pycocotools
compresses their counts (byte-identical to encoding each component's full mask, without building
one). Polygons follow pixel edges and pycocotools rasterises them back to exactly the same pixels;
polygons cannot hold holes, so such a component is written as RLE instead (counted in warnings).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from annotator.core.geometry import apply_window, array_axis_plane, slice_2d
from annotator.core.labels import LabelMap, LabelTable
from annotator.core.volume import Volume
from annotator.export.api import (
    BaseExporter,
    ExportResult,
    ExportSpec,
    check_label_meanings,
    export_axis,
    read_index_json,
    refuse_existing,
    require_label_map_on_grid,
    safe_case_id,
    selected_slices,
    slice_window,
    write_json,
)
from annotator.export.components import stack_runs
from annotator.export.polygons import exact_polygons
from annotator.export.rle import compress_rles
from annotator.export.slice_images import slice_image_name, write_png

ANNOTATIONS_FILE = "annotations.json"
IMAGES_DIR = "images"


# ---- annotations ---------------------------------------------------------------------------------

def stack_annotations(label_slices: np.ndarray, *, encoding: str = "rle",
                      connectivity: int = 2) -> tuple[list[list[dict[str, Any]]], int]:
    """COCO annotation dicts (no ids yet) per slice of a (n, H, W) stack, and how many polygons
    fell back to RLE."""
    from pycocotools import mask as mask_utils

    runs = stack_runs(label_slices, connectivity)
    per_slice = []
    fallbacks = 0
    for slice_run, rles in zip(runs, compress_rles(runs), strict=True):
        annotations = []
        for label_id, rle, area, box in zip(slice_run.labels, rles, slice_run.areas,
                                            slice_run.boxes_xywh, strict=True):
            segmentation: Any = rle
            if encoding == "polygon":
                mask = mask_utils.decode({"counts": rle["counts"].encode("ascii"), "size": rle["size"]})
                polygons = exact_polygons(mask.astype(bool))
                if polygons is None:
                    fallbacks += 1
                else:
                    segmentation = polygons
            annotations.append({
                "category_id": label_id,
                "segmentation": segmentation,
                "area": area,
                "bbox": box,
                "iscrowd": 0,
            })
        per_slice.append(annotations)
    return per_slice, fallbacks


def slice_annotations(label_slice: np.ndarray, *, encoding: str = "rle",
                      connectivity: int = 2) -> tuple[list[dict[str, Any]], int]:
    """COCO annotation dicts (no ids yet) for one slice, and how many polygons fell back to RLE."""
    per_slice, fallbacks = stack_annotations(np.asarray(label_slice)[np.newaxis], encoding=encoding,
                                             connectivity=connectivity)
    return per_slice[0], fallbacks


def annotations_along(label_array: np.ndarray, axis: int, indices: Sequence[int], *,
                      encoding: str = "rle", connectivity: int = 2,
                      chunk_pixels: int = 1 << 22) -> tuple[list[list[dict[str, Any]]], int]:
    """stack_annotations of the slices `indices` along `axis` (as core.geometry.slice_2d cuts
    them), a few million pixels at a time so the scratch arrays stay small."""
    slices = np.moveaxis(np.asarray(label_array), axis, 0)
    per_chunk = max(1, chunk_pixels // max(1, slices.shape[1] * slices.shape[2]))
    per_slice: list[list[dict[str, Any]]] = []
    fallbacks = 0
    for first in range(0, len(indices), per_chunk):
        chunk = [int(i) for i in indices[first: first + per_chunk]]
        if chunk == list(range(chunk[0], chunk[0] + len(chunk))):
            stack = slices[chunk[0]: chunk[0] + len(chunk)]  # a view, no copy
        else:
            stack = slices[chunk]
        annotations, n_fallback = stack_annotations(stack, encoding=encoding, connectivity=connectivity)
        per_slice.extend(annotations)
        fallbacks += n_fallback
    return per_slice, fallbacks


class CocoExporter(BaseExporter):
    """OUT/images/{case}_{plane}_{index}.png + OUT/annotations.json (categories = label table)."""

    name = "coco"

    def case_files(self, out_dir: Path, case_id: str, spec: ExportSpec) -> list[tuple[Path, str]]:
        return [(Path(out_dir) / IMAGES_DIR, f"{case_id}_*.png")]

    def index_files(self, out_dir: Path) -> list[Path]:
        return [Path(out_dir) / ANNOTATIONS_FILE]

    def check_append(self, out_dir: Path, table: LabelTable) -> None:
        path = Path(out_dir) / ANNOTATIONS_FILE
        check_label_meanings(path, category_names(read_index_json(path), path), table)

    def export_case(self, volume: Volume, labels: LabelMap | Volume, out_dir: Path,
                    spec: ExportSpec) -> ExportResult:
        label_map = require_label_map_on_grid(volume, labels)
        out_dir = Path(out_dir)
        case_id = safe_case_id(spec.case_id, volume, spec)
        axis = export_axis(volume, spec)
        plane = array_axis_plane(volume, axis)
        window = slice_window(volume, spec)
        indices = selected_slices(label_map.array, axis, spec)
        image_paths = [out_dir / IMAGES_DIR / slice_image_name(case_id, plane, i) for i in indices]
        refuse_existing([*image_paths, *([] if spec.append else [out_dir / ANNOTATIONS_FILE])], spec)
        result = ExportResult(case_id)
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        per_slice, fallbacks = annotations_along(label_map.array, axis, indices,
                                                 encoding=spec.coco_encoding,
                                                 connectivity=spec.connectivity)
        for local_id, (index, path, anns) in enumerate(zip(indices, image_paths, per_slice, strict=True)):
            image = apply_window(slice_2d(volume.array, axis, index), window)
            height, width = image.shape
            write_png(image, path, overwrite=spec.overwrite)
            result.files.append(path)
            images.append({"local_id": local_id, "file_name": f"{IMAGES_DIR}/{path.name}",
                           "width": int(width), "height": int(height), "case_id": case_id,
                           "plane": plane, "slice_index": int(index)})
            for ann in anns:
                ann["local_image_id"] = local_id
            annotations.extend(anns)
        if fallbacks:
            result.warnings.append(f"{fallbacks} component(s) with holes written as RLE (polygons cannot hold holes)")
        result.records = {"images": images, "annotations": annotations,
                          "table": label_map.table.to_json()}
        return result

    def finalize(self, results: Sequence[ExportResult], out_dir: Path, spec: ExportSpec,
                 table: LabelTable) -> list[Path]:
        """Merge every case into one annotations.json with dataset-wide image/annotation ids; with
        spec.append, after the images, annotations and categories already in it."""
        path = Path(out_dir) / ANNOTATIONS_FILE
        existing = read_index_json(path) if spec.append else {}
        images: list[dict[str, Any]] = list(existing.get("images", []))
        annotations: list[dict[str, Any]] = list(existing.get("annotations", []))
        next_image_id = max((int(i["id"]) for i in images), default=0) + 1
        next_ann_id = max((int(a["id"]) for a in annotations), default=0) + 1
        for result in results:
            first_image_id = next_image_id
            for image in result.records.get("images", []):
                entry = {k: v for k, v in image.items() if k != "local_id"}
                entry["id"] = first_image_id + image["local_id"]
                next_image_id = max(next_image_id, entry["id"] + 1)
                images.append(entry)
            for ann in result.records.get("annotations", []):
                entry = {k: v for k, v in ann.items() if k != "local_image_id"}
                entry["image_id"] = first_image_id + ann["local_image_id"]
                entry["id"] = next_ann_id
                next_ann_id += 1
                annotations.append(entry)
        present = {ann["category_id"] for ann in annotations}
        if existing:
            check_label_meanings(path, category_names(existing, path), table)
        categories = [c for c in existing.get("categories", []) if int(c["id"]) not in table]
        categories += [{"id": lab.id, "name": lab.name, "supercategory": "label", "color": list(lab.color)}
                       for lab in table]
        named = {int(c["id"]) for c in categories}
        categories += [{"id": v, "name": f"label {v}", "supercategory": "label"} for v in sorted(present - named)]
        categories.sort(key=lambda c: int(c["id"]))
        data = {
            "info": {"description": "exported by annotator", "version": "1.0"},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        return [write_json(path, data, overwrite=spec.overwrite or spec.append)]


def category_names(data: dict[str, Any], path: Path) -> dict[int, str]:
    from annotator.core.errors import InputError

    try:
        for entry in [*data.get("images", []), *data.get("annotations", [])]:
            int(entry["id"])  # appending numbers new entries after these
        return {int(c["id"]): str(c["name"]) for c in data.get("categories", [])}
    except (TypeError, ValueError, KeyError) as exc:
        raise InputError(path, f"its categories are not COCO categories ({exc})") from exc
