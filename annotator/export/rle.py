"""COCO run-length encoding: pycocotools compresses the column-major counts of components."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from annotator.export.components import SliceRuns


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
