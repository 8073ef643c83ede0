"""Connected components of a label slice, as masks (label_components_2d, slice_components) and as
column-major runs found in one vectorised pass over a stack of slices (stack_runs): what COCO RLE,
areas and boxes, YOLO polygons and the exporters' per-component annotations are built from."""

from __future__ import annotations

import numpy as np


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
