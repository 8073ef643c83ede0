"""COCO instance segmentation: one 8-bit PNG per exported slice, one annotation per label and component.

RLE: each slice's label runs are found in one pass and grouped into components, and pycocotools
compresses their counts (byte-identical to encoding each component's full mask, without building
one). Polygons follow pixel edges and pycocotools rasterises them back to exactly the same pixels;
polygons cannot hold holes, so such a component is written as RLE instead (counted in warnings).
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


class SliceRuns:
    """Every label component of one slice as column-major runs: what COCO RLE, area and bbox need.

    Components are ordered as scipy.ndimage.label numbers them per label (label ascending, then
    by first pixel in row-major order), so the annotations keep the order they always had.
    """

    __slots__ = ("height", "width", "labels", "counts", "areas", "boxes_xywh")

    def __init__(self, height: int, width: int, labels: list[int], counts: list[np.ndarray],
                 areas: list[int], boxes_xywh: list[list[float]]) -> None:
        self.height, self.width = height, width
        self.labels, self.counts, self.areas, self.boxes_xywh = labels, counts, areas, boxes_xywh


def _label_runs(label_slices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(column, first row, end row (exclusive), label) of every vertical run of one nonzero label
    in a (n, H, W) stack, sorted column-major. Column k*W + c is column c of slice k; a run never
    crosses a column."""
    n, height, width = label_slices.shape
    # Where the value changes going down a column, with zero above row 0 and below the last row.
    # Computed row-major (contiguous, fast); only the few boundaries get sorted column-major.
    changes = np.empty((n, height + 1, width), dtype=bool)
    np.not_equal(label_slices[:, 0], 0, out=changes[:, 0])
    np.not_equal(label_slices[:, 1:], label_slices[:, :-1], out=changes[:, 1:height])
    np.not_equal(label_slices[:, -1], 0, out=changes[:, height])
    flat = np.flatnonzero(changes)
    in_slice, rows_cols = np.divmod(flat, (height + 1) * width)
    rows, cols = np.divmod(rows_cols, width)
    columns = in_slice * width + cols
    order = np.argsort(columns, kind="stable")  # row-major -> column-major (rows stay ascending)
    rows, cols, in_slice, columns = rows[order], cols[order], in_slice[order], columns[order]
    values = label_slices[in_slice, np.minimum(rows, height - 1), cols]
    values[rows == height] = 0
    first = np.flatnonzero(values)
    # A nonzero run always ends at the next change in its own column (at the latest the bottom).
    return columns[first], rows[first], rows[first + 1], values[first]


def _touching_runs(columns: np.ndarray, starts: np.ndarray, ends: np.ndarray, values: np.ndarray,
                   height: int, width: int, connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (a, b) of runs of the same label in neighbouring columns of one slice (b's column =
    a's + 1) whose rows touch: 8-neighbour, they overlap or meet at a corner; 4-neighbour, they
    share a row."""
    stride = height + 1
    # Keys sort like the runs (column-major, rows ascending) because every row value is < stride;
    # the runs of one column are disjoint, so their end keys are sorted too.
    start_keys, end_keys = columns * stride + starts, columns * stride + ends
    next_first, next_last = (columns + 1) * stride + starts, (columns + 1) * stride + ends
    if connectivity >= 2:  # start_b <= end_a and end_b >= start_a
        lo = np.searchsorted(end_keys, next_first, side="left")
        hi = np.searchsorted(start_keys, next_last, side="right")
    else:  # start_b < end_a and end_b > start_a
        lo = np.searchsorted(end_keys, next_first, side="right")
        hi = np.searchsorted(start_keys, next_last, side="left")
    n_pairs = np.maximum(hi - lo, 0)
    n_pairs[columns % width == width - 1] = 0  # the next column belongs to the next slice
    run_a = np.repeat(np.arange(len(columns)), n_pairs)
    run_b = np.repeat(lo - (np.cumsum(n_pairs) - n_pairs), n_pairs) + np.arange(int(n_pairs.sum()))
    same = values[run_a] == values[run_b]
    return run_a[same], run_b[same]


def _connected_runs(n_runs: int, run_a: np.ndarray, run_b: np.ndarray,
                    max_rounds: int = 32) -> tuple[int, np.ndarray]:
    """(number of components, component of each run) of the graph of touching runs.

    Vectorised union-find: each round hooks every tree's root onto the smallest root it touches,
    then points every run straight at its root. Slice shapes settle in a few rounds; scipy's
    connected_components (a fixed ~0.1 ms per call) takes over on a shape that needs more than
    max_rounds.
    """
    root = np.arange(n_runs)
    for _ in range(max_rounds):
        root_a, root_b = root[run_a], root[run_b]
        differ = root_a != root_b
        if not differ.any():
            is_root = root == np.arange(n_runs)
            return int(np.count_nonzero(is_root)), (np.cumsum(is_root) - 1)[root]
        root_a, root_b = root_a[differ], root_b[differ]
        low = np.minimum(root_a, root_b)
        np.minimum.at(root, root_a, low)  # roots only ever point at smaller roots: no cycles
        np.minimum.at(root, root_b, low)
        while True:
            up = root[root]
            if np.array_equal(up, root):
                break
            root = up
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(run_a), dtype=np.int8), (run_a, run_b)), shape=(n_runs, n_runs))
    n_comp, comp = connected_components(graph, directed=False)
    return int(n_comp), comp


def stack_runs(label_slices: np.ndarray, connectivity: int = 2) -> list[SliceRuns]:
    """Uncompressed COCO RLE counts, area and bbox of every label component, per slice of a
    (n, H, W) stack.

    One pass over the stack finds the vertical runs; everything after works on the runs alone
    (a few hundred per slice), so no per-component full-size mask is ever built, and the whole
    stack shares one set of numpy calls (their fixed cost dominated on small slices).
    """
    if connectivity < 1:
        raise ValueError(f"connectivity must be 1 (4-neighbour) or 2 (8-neighbour), not {connectivity}")
    label_slices = np.asarray(label_slices)
    n, height, width = label_slices.shape
    columns, starts, ends, values = _label_runs(label_slices)
    if len(columns) == 0:
        return [SliceRuns(height, width, [], [], [], []) for _ in range(n)]
    n_comp, comp = _connected_runs(
        len(columns), *_touching_runs(columns, starts, ends, values, height, width, connectivity))
    in_slice, cols = np.divmod(columns, width)

    # scipy's numbering within each slice: per label, by first pixel in row-major order.
    first_pixel = np.full(n_comp, height * width, dtype=np.int64)
    np.minimum.at(first_pixel, comp, starts * width + cols)
    comp_label = np.empty(n_comp, dtype=values.dtype)
    comp_label[comp] = values
    comp_slice = np.empty(n_comp, dtype=np.int64)
    comp_slice[comp] = in_slice
    ranked = np.lexsort((first_pixel, comp_label, comp_slice))
    renumber = np.empty(n_comp, dtype=np.int64)
    renumber[ranked] = np.arange(n_comp)
    comp = renumber[comp]
    comp_label, comp_slice = comp_label[ranked], comp_slice[ranked]

    order = np.argsort(comp, kind="stable")  # grouped by component, column-major inside
    comp, cols, starts, ends = comp[order], cols[order], starts[order], ends[order]
    group = np.searchsorted(comp, np.arange(n_comp))
    areas = np.add.reduceat(ends - starts, group)
    x0, x1 = np.minimum.reduceat(cols, group), np.maximum.reduceat(cols, group)
    y0, y1 = np.minimum.reduceat(starts, group), np.maximum.reduceat(ends, group)

    # Positions in the column-major flattening of the slice. A run reaching the bottom continues
    # in the next column's top row when the same component starts there: one RLE run.
    begin = cols * height + starts
    stop = cols * height + ends
    joined = np.zeros(len(comp), dtype=bool)
    joined[1:] = (comp[1:] == comp[:-1]) & (begin[1:] == stop[:-1])
    last_of_chain = np.ones(len(comp), dtype=bool)
    last_of_chain[:-1] = ~joined[1:]
    comp, begin, stop = comp[~joined], begin[~joined], stop[last_of_chain]

    first_run = np.searchsorted(comp, np.arange(n_comp))
    last_run = np.append(first_run[1:], len(comp)) - 1
    previous_stop = np.empty_like(stop)
    previous_stop[1:] = stop[:-1]
    previous_stop[first_run] = 0
    tail = height * width - stop[last_run]  # background after the last run (none: no count)
    n_counts = 2 * (last_run - first_run + 1) + (tail > 0)
    offset = np.cumsum(n_counts) - n_counts
    counts = np.empty(int(n_counts.sum()), dtype=np.uint32)
    slot = offset[comp] + 2 * (np.arange(len(comp)) - first_run[comp])
    counts[slot] = begin - previous_stop
    counts[slot + 1] = stop - begin
    has_tail = tail > 0
    counts[(offset + n_counts - 1)[has_tail]] = tail[has_tail]

    labels, areas_list = comp_label.tolist(), areas.tolist()
    boxes = np.stack([x0, y0, x1 - x0 + 1, y1 - y0], axis=1).astype(np.float64).tolist()
    ends_list = (offset + n_counts).tolist()
    counts_list = [counts[a:b] for a, b in zip([0, *ends_list[:-1]], ends_list, strict=True)]
    bounds = np.searchsorted(comp_slice, np.arange(n + 1)).tolist()
    return [SliceRuns(height, width, labels[a:b], counts_list[a:b], areas_list[a:b], boxes[a:b])
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def slice_runs(label_slice: np.ndarray, connectivity: int = 2) -> SliceRuns:
    """stack_runs of one (H, W) slice."""
    return stack_runs(np.asarray(label_slice)[np.newaxis], connectivity)[0]


def compress_rles(runs: Sequence[SliceRuns]) -> list[list[dict[str, Any]]]:
    """pycocotools' compressed RLEs (counts as str, JSON-ready) of each slice's components;
    pycocotools itself does the compression, from the uncompressed counts."""
    from pycocotools import mask as mask_utils

    out: list[list[dict[str, Any]]] = []
    uncompressed = [{"counts": c, "size": [r.height, r.width]} for r in runs for c in r.counts]
    if not uncompressed:
        return [[] for _ in runs]
    # One call for the stack: every slice of a stack has the same size.
    rles = mask_utils.frPyObjects(uncompressed, runs[0].height, runs[0].width)
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    start = 0
    for r in runs:
        out.append(rles[start: start + len(r.counts)])
        start += len(r.counts)
    return out


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


# ---- images -------------------------------------------------------------------------------------

def write_png(image_u8: np.ndarray, path: Path, *, overwrite: bool) -> Path:
    """Lossless 8-bit PNG, written atomically."""
    import cv2

    if not overwrite and path.exists():
        raise OutputExistsError(path)
    # zlib level 1, run-length strategy, no PNG row filters: choosing filters per row cost more
    # than the deflate itself. On the shared 512x512 Philips CT: 0.6 ms vs 2.2 ms per slice with
    # libpng's adaptive filters, files 6% larger (16.9 vs 16.0 kB); still lossless.
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image_u8),
                               [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
                                cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE])
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
        images, annotations = [], []
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
