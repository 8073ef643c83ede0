"""Polygons along pixel edges: closed loops of pixel corners around a mask, which pycocotools
rasterises back to exactly the same pixels (COCO); YOLO uses them too (yolo.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np


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


def _pop_edge(outgoing: dict[tuple[int, int], list[tuple[int, int]]], vertex: tuple[int, int], incoming: tuple[int, int] | None) -> tuple[int, int]:
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
