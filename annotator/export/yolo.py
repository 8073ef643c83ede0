"""YOLO segmentation: one PNG per slice and a .txt of normalised polygons per image, plus data.yaml.

Each line is `class x1 y1 x2 y2 ...` with coordinates in 0..1 of the image width/height; class
numbers are the label table renumbered 0..N-1 (names in data.yaml).

The consumer decides what a polygon means. Ultralytics rasterises a label by scaling the
coordinates to pixels, truncating them to integers and filling with cv2.fillPoly, which paints
the pixels whose centres lie on or inside the polygon (ultralytics.data.utils.polygon2mask).
So the polygons here run through the centres of a component's boundary pixels (its OpenCV
contour), nudged 0.01 px up so that truncation lands on the intended pixel: filled that way they
give back exactly our mask. (Pixel-edge polygons, right for COCO/pycocotools, grow every mask by
a ring of pixels there.) YOLO polygons cannot hold holes, so a hole is filled (the result's
warnings count them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from annotator.core.atomic import atomic_write_text
from annotator.core.geometry import apply_window, array_axis_plane, slice_2d
from annotator.core.labels import LabelMap, LabelTable
from annotator.core.volume import Volume
from annotator.export.api import (
    BaseExporter,
    ExportResult,
    ExportSpec,
    consecutive_id_map,
    export_axis,
    refuse_existing,
    require_label_map_on_grid,
    safe_case_id,
    selected_slices,
    slice_window,
)
from annotator.export.components import label_components_2d
from annotator.export.slice_images import slice_image_name, write_png

# Written coordinates are rounded up to 6 decimals after this nudge, so that scaling back to
# pixels (float32 in Ultralytics) and truncating gives the pixel itself, never the one before it.
_NUDGE_PX = 0.01


def _normalised(value: float, size: int) -> str:
    return f"{math.ceil((value + _NUDGE_PX) / size * 1e6) / 1e6:.6f}"


def yolo_lines(label_slice: np.ndarray, class_of: dict[int, int], connectivity: int = 2) -> tuple[list[str], int]:
    """YOLO polygon lines for one slice (one per connected component), and how many holes were filled."""
    import cv2

    height, width = label_slice.shape
    lines, holes = [], 0
    for label_id, stack in label_components_2d(label_slice, connectivity):
        for k in range(stack.shape[2]):
            component = np.ascontiguousarray(stack[:, :, k])
            contours, hierarchy = cv2.findContours(component, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
            for contour, links in zip(contours, hierarchy[0], strict=True):
                if links[3] >= 0:  # a hole's contour: YOLO cannot hold it, the fill covers it
                    holes += 1
                    continue
                points = contour.reshape(-1, 2).tolist()
                points += [points[0]] * (3 - len(points))  # a line needs 3 points to read as a polygon
                coords = " ".join(f"{_normalised(x, width)} {_normalised(y, height)}" for x, y in points)
                lines.append(f"{class_of[label_id]} {coords}")
    return lines, holes


class YoloExporter(BaseExporter):
    """OUT/images/*.png, OUT/labels/*.txt (same stems), OUT/data.yaml."""

    name = "yolo"

    def case_files(self, out_dir: Path, case_id: str, spec: ExportSpec) -> list[tuple[Path, str]]:
        return [(Path(out_dir) / "images", f"{case_id}_*.png"), (Path(out_dir) / "labels", f"{case_id}_*.txt")]

    def index_files(self, out_dir: Path) -> list[Path]:
        return [Path(out_dir) / "data.yaml"]

    def check_append(self, out_dir: Path, table: LabelTable) -> None:
        read_class_names(Path(out_dir) / "data.yaml")  # classes are matched by name: indices never move

    def prepare(self, out_dir: Path, table: LabelTable, case_ids: Sequence[str],
                spec: ExportSpec) -> tuple[ExportSpec, list[str]]:
        path = Path(out_dir) / "data.yaml"
        existing = read_class_names(path) if spec.append and path.exists() else {}
        return replace(spec, label_id_map=class_indices(existing, table)), list(case_ids)

    def export_case(self, volume: Volume, labels: LabelMap | Volume, out_dir: Path,
                    spec: ExportSpec) -> ExportResult:
        label_map = require_label_map_on_grid(volume, labels)
        out_dir = Path(out_dir)
        case_id = safe_case_id(spec.case_id, volume, spec)
        class_of = dict(spec.label_id_map) or dict(consecutive_id_map(label_map.table, start=0))
        axis = export_axis(volume, spec)
        plane = array_axis_plane(volume, axis)
        window = slice_window(volume, spec)
        indices = selected_slices(label_map.array, axis, spec)
        names = [slice_image_name(case_id, plane, i) for i in indices]
        image_paths = [out_dir / "images" / n for n in names]
        text_paths = [out_dir / "labels" / (n[: -len(".png")] + ".txt") for n in names]
        refuse_existing([*image_paths, *text_paths], spec)
        result = ExportResult(case_id)
        holes = 0
        for index, image_path, text_path in zip(indices, image_paths, text_paths, strict=True):
            write_png(apply_window(slice_2d(volume.array, axis, index), window), image_path,
                      overwrite=spec.overwrite)
            lines, n_holes = yolo_lines(slice_2d(label_map.array, axis, index), class_of, spec.connectivity)
            holes += n_holes
            # An empty .txt marks a negative (background-only) image, as YOLO expects.
            atomic_write_text(text_path, "".join(line + "\n" for line in lines), overwrite=spec.overwrite)
            result.files += [image_path, text_path]
        if holes:
            result.warnings.append(f"{holes} hole(s) filled: YOLO polygons cannot hold holes")
        result.records = {"table": label_map.table.to_json()}
        return result

    def finalize(self, results: Sequence[ExportResult], out_dir: Path, spec: ExportSpec,
                 table: LabelTable) -> list[Path]:
        from annotator.export.api import OutputExistsError

        path = Path(out_dir) / "data.yaml"
        if path.exists() and not (spec.overwrite or spec.append):
            raise OutputExistsError(path)
        class_of = dict(spec.label_id_map) or dict(consecutive_id_map(table, start=0))
        names_by_index = read_class_names(path) if spec.append and path.exists() else {}
        names_by_index.update({class_of[lab.id]: lab.name for lab in table if lab.id in class_of})
        names = "".join(f"  {index}: {_yaml_str(name)}\n" for index, name in sorted(names_by_index.items()))
        text = f"path: .\ntrain: images\nval: images\nnames:\n{names}"
        atomic_write_text(path, text, overwrite=True)
        return [path]


def read_class_names(path: Path) -> dict[int, str]:
    """Class index -> name of an existing data.yaml (its `names` as a map or a list)."""
    import yaml

    from annotator.core.errors import InputError

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        names = data.get("names", {}) if isinstance(data, dict) else None
        if isinstance(names, list):
            return {i: str(n) for i, n in enumerate(names)}
        if isinstance(names, dict):
            return {int(k): str(v) for k, v in names.items()}
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise InputError(path, f"cannot read the existing YOLO data.yaml ({exc})") from exc
    raise InputError(path, "the existing YOLO data.yaml has no class names")


def class_indices(existing: dict[int, str], table: LabelTable) -> tuple[tuple[int, int], ...]:
    """Our label id -> YOLO class index: an existing class keeps its index (matched by name),
    new names take the next free indices (YOLO classes must be 0..N-1)."""
    index_of = {name: index for index, name in existing.items()}
    next_index = max(existing, default=-1) + 1
    pairs = []
    for lab in table:
        if lab.name not in index_of:
            index_of[lab.name] = next_index
            next_index += 1
        pairs.append((lab.id, index_of[lab.name]))
    return tuple(pairs)


def _yaml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
