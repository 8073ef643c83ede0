"""COCO instance segmentation: one 8-bit PNG per exported slice, one annotation per label and component.

Masks are encoded with pycocotools itself (RLE), or as pixel-edge polygons that pycocotools
rasterises back to exactly the same pixels; polygons cannot hold holes, so such a component is
written as RLE instead (and counted in the result's warnings).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from annotator.core.atomic import atomic_path
from annotator.core.geometry import apply_window, array_axis_plane, slice_2d
from annotator.core.labels import LabelMap, LabelTable
from annotator.core.volume import Volume
from annotator.export.api import (
    BaseExporter,
    ExportResult,
    ExportSpec,
    OutputExistsError,
    export_axis,
    refuse_existing,
    require_label_map_on_grid,
    safe_case_id,
    selected_slices,
    slice_window,
    write_json,
)

ANNOTATIONS_FILE = "annotations.json"
IMAGES_DIR = "images"


# ---- masks -> components -> RLE / polygons ------------------------------------------------------

def label_components_2d(label_slice: np.ndarray, connectivity: int = 2) -> list[tuple[int, np.ndarray]]:
    """(label id, (H, W, N) Fortran uint8 stack of its connected components) per label on the slice."""
    height, width = label_slice.shape
    out = []
    for label_id, components in slice_components(label_slice, connectivity):
        stack = np.zeros((height, width, len(components)), dtype=np.uint8, order="F")
        for k, component in enumerate(components):
            stack[component.rows, component.cols, k] = component.mask
        out.append((label_id, stack))
    return out


class Component:
    """One connected piece of one label on a slice: a tight crop and where it sits."""

    __slots__ = ("mask", "row0", "col0")

    def __init__(self, mask: np.ndarray, row0: int, col0: int) -> None:
        self.mask, self.row0, self.col0 = mask, row0, col0

    @property
    def rows(self) -> slice:
        return slice(self.row0, self.row0 + self.mask.shape[0])

    @property
    def cols(self) -> slice:
        return slice(self.col0, self.col0 + self.mask.shape[1])

    def full_mask(self, shape_hw: tuple[int, int]) -> np.ndarray:
        out = np.zeros(shape_hw, dtype=bool)
        out[self.rows, self.cols] = self.mask
        return out


def slice_components(label_slice: np.ndarray, connectivity: int = 2) -> list[tuple[int, list[Component]]]:
    """Per label present on the slice, its connected components as tight crops.

    Works inside each label's bounding box (scipy's find_objects gives them all in one pass), so
    the cost follows the annotated area, not the image size.
    """
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(2, connectivity)
    label_slice = np.asarray(label_slice)
    # Cheap first cut to the annotated rectangle: most slices are mostly background.
    rows, cols = np.flatnonzero(label_slice.any(axis=1)), np.flatnonzero(label_slice.any(axis=0))
    if rows.size == 0:
        return []
    row0, col0 = int(rows[0]), int(cols[0])
    annotated = label_slice[row0: int(rows[-1]) + 1, col0: int(cols[-1]) + 1]
    out = []
    for index, box in enumerate(ndimage.find_objects(annotated)):
        if box is None:
            continue
        label_id = index + 1
        crop = annotated[box] == label_id
        pieces, _ = ndimage.label(crop, structure=structure)
        components = []
        for k, piece_box in enumerate(ndimage.find_objects(pieces), start=1):
            components.append(Component(pieces[piece_box] == k, row0 + box[0].start + piece_box[0].start,
                                        col0 + box[1].start + piece_box[1].start))
        out.append((label_id, components))
    return out


def component_rle_counts(component: Component, height: int, width: int) -> np.ndarray:
    """Uncompressed COCO RLE counts (column-major runs, starting with background) of a component
    on the full (height, width) image, computed from its crop alone."""
    h, w = component.mask.shape
    padded = np.zeros((w, h + 2), dtype=np.int8)
    padded[:, 1:-1] = component.mask.T  # one row per image column: column-major order
    steps = np.diff(padded, axis=1)
    start_col, start_row = np.nonzero(steps == 1)
    end_col, end_row = np.nonzero(steps == -1)
    base = (component.col0 + start_col) * height + component.row0
    starts = base + start_row
    ends = (component.col0 + end_col) * height + component.row0 + end_row
    if h == height and len(starts) > 1:
        # A full-height crop: a run may continue from the bottom of one column into the next.
        joined = ends[:-1] == starts[1:]
        if joined.any():
            starts = np.concatenate([starts[:1], starts[1:][~joined]])
            ends = np.concatenate([ends[:-1][~joined], ends[-1:]])
    edges = np.empty(2 * len(starts) + 2, dtype=np.int64)
    edges[0], edges[-1] = 0, height * width
    edges[1:-1:2], edges[2:-1:2] = starts, ends
    counts = np.diff(edges)
    # pycocotools ends with the last run; a component touching the image's last pixel has no
    # trailing background run.
    return counts[:-1] if len(counts) > 1 and counts[-1] == 0 else counts


def encode_rle(stack_hwn: np.ndarray) -> list[dict[str, Any]]:
    """pycocotools RLEs (counts as str, JSON-ready) of each (H, W, N) mask."""
    from pycocotools import mask as mask_utils

    rles = mask_utils.encode(np.asfortranarray(stack_hwn, dtype=np.uint8))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def encode_components(components: Sequence[Component], height: int, width: int) -> list[dict[str, Any]]:
    """Compressed COCO RLEs (JSON-ready) of components; pycocotools does the compression."""
    from pycocotools import mask as mask_utils

    uncompressed = [{"counts": component_rle_counts(c, height, width).tolist(), "size": [height, width]}
                    for c in components]
    rles = mask_utils.frPyObjects(uncompressed, height, width)
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def pixel_edge_loops(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """Closed loops of (x, y) pixel corners along the boundary of a 2-D mask.

    Pixel (row r, col c) covers x in [c, c+1], y in [r, r+1]. Outer boundaries run clockwise
    on screen (positive shoelace area with y down), hole boundaries the other way. Where two
    pixels touch only at a corner the loops are kept apart, so every loop is a simple polygon.
    """
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    inner = m[1:-1, 1:-1]
    outgoing: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    sides = (
        (inner & ~m[:-2, 1:-1], (0, 0), (1, 0)),   # top: (c, r) -> (c+1, r)
        (inner & ~m[1:-1, 2:], (1, 0), (1, 1)),    # right: (c+1, r) -> (c+1, r+1)
        (inner & ~m[2:, 1:-1], (1, 1), (0, 1)),    # bottom: (c+1, r+1) -> (c, r+1)
        (inner & ~m[1:-1, :-2], (0, 1), (0, 0)),   # left: (c, r+1) -> (c, r)
    )
    for side, (sx, sy), (ex, ey) in sides:
        rows, cols = np.nonzero(side)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            outgoing[(c + sx, r + sy)].append((c + ex, r + ey))
    loops = []
    while outgoing:
        start = next(iter(outgoing))
        loop = [start]
        prev, cur = start, _pop_edge(outgoing, start, None)
        while cur != start:
            loop.append(cur)
            nxt = _pop_edge(outgoing, cur, (cur[0] - prev[0], cur[1] - prev[1]))
            prev, cur = cur, nxt
        loops.append(_drop_collinear(loop))
    return loops


def _pop_edge(outgoing: dict, vertex: tuple[int, int], incoming: tuple[int, int] | None) -> tuple[int, int]:
    ends = outgoing[vertex]
    pick = 0
    if incoming is not None and len(ends) > 1:
        # Prefer the right turn (y down): it keeps corner-touching pixels in separate loops.
        dx, dy = incoming
        right = (-dy, dx)
        for i, (x, y) in enumerate(ends):
            if (np.sign(x - vertex[0]), np.sign(y - vertex[1])) == right:
                pick = i
                break
    end = ends.pop(pick)
    if not ends:
        del outgoing[vertex]
    return end


def _drop_collinear(loop: list[tuple[int, int]]) -> list[tuple[int, int]]:
    n = len(loop)
    keep = []
    for i in range(n):
        a, b, c = loop[i - 1], loop[i], loop[(i + 1) % n]
        if (b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0]) != 0:
            keep.append(b)
    return keep


def loop_area(loop: Sequence[tuple[int, int]]) -> float:
    xs = np.array([p[0] for p in loop], dtype=np.float64)
    ys = np.array([p[1] for p in loop], dtype=np.float64)
    return float(np.sum(xs * np.roll(ys, -1) - np.roll(xs, -1) * ys) / 2.0)


def exact_polygons(mask: np.ndarray) -> list[list[float]] | None:
    """COCO polygons ([x1, y1, x2, y2, ...] each) that pycocotools rasterises to exactly `mask`.

    None when no such polygon list exists (the mask has holes) or pycocotools disagrees.
    """
    from pycocotools import mask as mask_utils

    loops = pixel_edge_loops(mask)
    if not loops or any(loop_area(loop) <= 0 for loop in loops):
        return None
    polygons = [[float(v) for point in loop for v in point] for loop in loops]
    height, width = mask.shape
    # Check with the reader itself: polygon rasterisation conventions are easy to get half a
    # pixel wrong, and an annotation that does not round-trip must not be written.
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    if not np.array_equal(mask_utils.decode(rle).astype(bool), np.asarray(mask, dtype=bool)):
        return None
    return polygons


def slice_annotations(label_slice: np.ndarray, *, encoding: str = "rle",
                      connectivity: int = 2) -> tuple[list[dict[str, Any]], int]:
    """COCO annotation dicts (no ids yet) for one slice, and how many polygons fell back to RLE."""
    height, width = label_slice.shape
    annotations = []
    fallbacks = 0
    for label_id, components in slice_components(label_slice, connectivity):
        rles = encode_components(components, height, width)
        for component, rle in zip(components, rles, strict=True):
            segmentation: Any = rle
            if encoding == "polygon":
                polygons = exact_polygons(component.full_mask((height, width)))
                if polygons is None:
                    fallbacks += 1
                else:
                    segmentation = polygons
            h, w = component.mask.shape
            annotations.append({
                "category_id": label_id,
                "segmentation": segmentation,
                "area": int(np.count_nonzero(component.mask)),
                "bbox": [float(component.col0), float(component.row0), float(w), float(h)],
                "iscrowd": 0,
            })
    return annotations, fallbacks


# ---- images -------------------------------------------------------------------------------------

def write_png(image_u8: np.ndarray, path: Path, *, overwrite: bool) -> Path:
    """Lossless 8-bit PNG, written atomically."""
    import cv2

    if not overwrite and path.exists():
        raise OutputExistsError(path)
    # zlib level 1 with the run-length strategy: about twice as fast as PIL's default for CT
    # slices at a slightly smaller size (measured in bench/export_speed.py's setting).
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image_u8),
                               [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE])
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(encoded.tobytes())
    return path


def slice_image_name(case_id: str, plane: str, index: int) -> str:
    return f"{case_id}_{plane}_{index:04d}.png"


# ---- exporter -----------------------------------------------------------------------------------

class CocoExporter(BaseExporter):
    """OUT/images/{case}_{plane}_{index}.png + OUT/annotations.json (categories = label table)."""

    name = "coco"

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
        refuse_existing([*image_paths, out_dir / ANNOTATIONS_FILE], spec)
        result = ExportResult(case_id)
        images, annotations, fallbacks = [], [], 0
        for local_id, (index, path) in enumerate(zip(indices, image_paths, strict=True)):
            label_slice = slice_2d(label_map.array, axis, index)
            height, width = label_slice.shape
            write_png(apply_window(slice_2d(volume.array, axis, index), window), path,
                      overwrite=spec.overwrite)
            result.files.append(path)
            images.append({"local_id": local_id, "file_name": f"{IMAGES_DIR}/{path.name}",
                           "width": int(width), "height": int(height), "case_id": case_id,
                           "plane": plane, "slice_index": int(index)})
            anns, n_fallback = slice_annotations(label_slice, encoding=spec.coco_encoding,
                                                 connectivity=spec.connectivity)
            fallbacks += n_fallback
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
        """Merge every case into one annotations.json with dataset-wide image/annotation ids."""
        images, annotations = [], []
        for result in results:
            first_image_id = len(images) + 1
            for image in result.records.get("images", []):
                entry = {k: v for k, v in image.items() if k != "local_id"}
                entry["id"] = first_image_id + image["local_id"]
                images.append(entry)
            for ann in result.records.get("annotations", []):
                entry = {k: v for k, v in ann.items() if k != "local_image_id"}
                entry["image_id"] = first_image_id + ann["local_image_id"]
                entry["id"] = len(annotations) + 1
                annotations.append(entry)
        present = {ann["category_id"] for ann in annotations}
        categories = [{"id": lab.id, "name": lab.name, "supercategory": "label", "color": list(lab.color)}
                      for lab in table]
        categories += [{"id": v, "name": f"label {v}", "supercategory": "label"}
                       for v in sorted(present - set(table.ids()))]
        data = {
            "info": {"description": "exported by annotator", "version": "1.0"},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        return [write_json(Path(out_dir) / ANNOTATIONS_FILE, data, overwrite=spec.overwrite)]
