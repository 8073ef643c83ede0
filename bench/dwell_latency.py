"""Box released -> mask shown in the real window, for a user who moves to a slice, looks at it for
--dwell seconds and then draws a box (issue 15's case that matters), against a box drawn at once
(cold). The window embeds the visible slice as soon as the user stops on it; a box arriving during
that embedding waits for it. The demo phantom's liver on slices the cache has not seen.

Run: QT_QPA_PLATFORM=offscreen .venv/bin/python bench/dwell_latency.py [--dwell 1.0] [--slices 8]
Prints JSON as its last line: dwell_ms (median; goal <= 100 on an AVX2 laptop), cold_ms, cpu_class.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dwell", type=float, default=1.0, help="seconds the user looks before drawing")
    parser.add_argument("--slices", type=int, default=8, help="slices measured per case (dwell and cold)")
    parser.add_argument("--runtime", default="torch",
                        help="engine runtime: torch (the fp32 reference, default) or a variant such as openvino-bf16mix")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="annotator-dwell-")
    for var in ("ANNOTATOR_CACHE_DIR", "ANNOTATOR_CONFIG_DIR", "ANNOTATOR_DATA_DIR"):
        os.environ[var] = os.path.join(tmp, var.lower())  # a fresh user: nothing embedded yet

    import numpy as np
    from PySide6.QtWidgets import QApplication

    from annotator.core.phantom import make_phantom
    from annotator.core.prompts import BoxPrompt
    from annotator.engine.factory import create_engine
    from annotator.engine.runtime.cpu import cpu_class
    from annotator.qt.main_window import MainWindow
    from annotator.settings import Settings

    app = QApplication.instance() or QApplication([])
    engine = create_engine("lite-medsam", runtime=args.runtime)
    win = MainWindow(Settings(), engine=engine)  # the app as shipped: prefetch radius 3
    win.show()
    phantom = make_phantom()
    win.doc.set_volume(phantom.volume)
    bridge = win.bridge

    def spin(condition, timeout: float = 120.0) -> None:
        end = time.perf_counter() + timeout
        while not condition():
            if time.perf_counter() > end:
                raise TimeoutError("dwell bench: waited too long")
            app.processEvents()
            time.sleep(0.001)

    spin(lambda: bridge.ready)
    liver = phantom.truth.array == 1
    rows_with = [int(z) for z in np.flatnonzero(liver.any(axis=(1, 2)))]
    picks = rows_with[:: max(1, len(rows_with) // (2 * args.slices))][: 2 * args.slices]
    done: list[float] = []
    bridge.prediction_ready.connect(lambda: done.append(time.perf_counter()))

    def box_on(z: int, dwell: float) -> float:
        doc = win.doc
        doc.set_slice(0, z)  # the user stops here: the window starts embedding it
        t_end = time.perf_counter() + dwell
        while time.perf_counter() < t_end:
            app.processEvents()
            time.sleep(0.002)
        rows, cols = np.nonzero(liver[z])
        before = len(done)
        released = time.perf_counter()
        doc.set_box(0, z, BoxPrompt(float(cols.min()), float(rows.min()), float(cols.max()), float(rows.max())))
        bridge.request_prediction(0, z, at_once=True)  # as the box tool does on release
        spin(lambda: len(done) > before and win.doc.preview is not None)
        app.processEvents()  # the views paint the mask
        doc.discard_preview()
        return (time.perf_counter() - released) * 1000

    dwell = [box_on(z, args.dwell) for z in picks[0::2]]
    cold = [box_on(z, 0.0) for z in picks[1::2]]
    summary = bridge.summary()
    win.close()
    win.shutdown()
    result = {"bench": "dwell_latency", "cpu_class": cpu_class(), "cores": os.cpu_count(), "engine": summary, "dwell_s": args.dwell,
              "dwell_ms": round(statistics.median(dwell), 1), "dwell_all_ms": [round(v, 1) for v in dwell],
              "cold_ms": round(statistics.median(cold), 1), "cold_all_ms": [round(v, 1) for v in cold]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
