"""Slice change with label overlay on a 512x512 slice, offscreen: time from the document's slice
change to a finished repaint of the view (windowing LUT, overlay LUT, QImage, paint).

Run: QT_QPA_PLATFORM=offscreen .venv/bin/python bench/view_render.py [--steps 200]
Prints JSON with the median and p95 milliseconds as its last line (goal: median <= 8 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--slices", type=int, default=48)
    parser.add_argument("--view-size", type=int, default=800)
    args = parser.parse_args()

    import numpy as np
    from PySide6.QtWidgets import QApplication

    from annotator.core.document import AnnotationDocument
    from annotator.core.phantom import make_phantom
    from annotator.qt.canvas.slice_view import SliceView

    app = QApplication.instance() or QApplication([])
    phantom = make_phantom((args.slices, 512, 512), (2.5, 0.4, 0.4))
    doc = AnnotationDocument(phantom.volume, phantom.truth)
    view = SliceView(doc, "axial")
    view.resize(args.view_size, args.view_size)
    view.show()
    app.processEvents()
    times_ms = []
    index = 0
    for step in range(args.steps + 10):
        index = (index + 1) % args.slices  # every step is a new slice (the overlay cache keeps 16)
        start = time.perf_counter()
        doc.set_slice(0, index)
        view.viewport().repaint()
        elapsed = (time.perf_counter() - start) * 1000
        if step >= 10:  # warm-up: first LUTs and pixmaps
            times_ms.append(elapsed)
    labelled = int(np.count_nonzero(phantom.truth.array)) / phantom.truth.array.size
    result = {
        "bench": "view_render",
        "slice": [512, 512],
        "overlay_labels": len(phantom.truth.table),
        "labelled_fraction": round(labelled, 3),
        "view_px": args.view_size,
        "steps": len(times_ms),
        "median_ms": round(statistics.median(times_ms), 3),
        "p95_ms": round(float(np.percentile(times_ms, 95)), 3),
        "goal_median_ms": 8.0,
        "python": platform.python_version(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
