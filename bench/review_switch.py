"""Dataset review: time from "next case" to the next case's first slice painted in the window, for
512² × 300 CT cases (nnU-Net layout, .nii.gz), when the next case was prefetched and when it was not.

Run: QT_QPA_PLATFORM=offscreen .venv/bin/python bench/review_switch.py [--cases 4] [--slices 300]
Prints JSON as its last line: prefetched_ms (median, goal <= 500), cold_ms (median).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")




def _write_dataset(root: Path, n_cases: int, slices: int) -> None:
    import numpy as np

    from annotator.core.phantom import make_phantom
    from annotator.io import write_volume

    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    phantom = make_phantom((slices, 512, 512), (1.0, 0.7, 0.7))
    for i in range(n_cases):
        volume = phantom.volume.with_array(np.roll(phantom.volume.array, i * 3, axis=2))
        write_volume(volume, root / "imagesTr" / f"case_{i:03d}_0000.nii.gz")
        write_volume(volume.with_array(np.roll(phantom.truth.array, i * 3, axis=2).astype(np.uint8)),
                     root / "labelsTr" / f"case_{i:03d}.nii.gz")
    names = {lab.name: lab.id for lab in phantom.truth.table}
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "file_ending": ".nii.gz",
                                                   "labels": {"background": 0, **names}, "numTraining": n_cases}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--slices", type=int, default=300)
    args = parser.parse_args()

    from PySide6.QtWidgets import QApplication

    from annotator.engine.runtime.cpu import cpu_class
    from annotator.qt.main_window import MainWindow
    from annotator.settings import Settings

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        t0 = time.perf_counter()
        _write_dataset(root, args.cases, args.slices)
        print(f"wrote {args.cases} cases of 512x512x{args.slices} in {time.perf_counter() - t0:.1f} s", flush=True)
        win = MainWindow(Settings(), start_engine=False)
        win.resize(1400, 820)
        win.show()
        review = win.review

        def wait(cond, timeout: float = 300.0) -> None:
            end = time.perf_counter() + timeout
            while not cond():
                if time.perf_counter() > end:
                    raise TimeoutError("review bench: waited too long")
                app.processEvents()
                time.sleep(0.002)

        win.open_dataset(str(root))
        wait(lambda: review.current == "case_000")
        prefetched, cold = [], []
        for i in range(1, args.cases):
            following = f"case_{i:03d}"
            wait(lambda f=following: f in review._prefetched)
            wait(lambda: not win.background.busy)
            start = time.perf_counter()
            review.step(1)
            wait(lambda f=following: review.current == f)
            app.processEvents()  # the views repaint the new first slice
            win.views[0].viewport().repaint()
            prefetched.append((time.perf_counter() - start) * 1000)
            print(f"{following}: prefetched switch {prefetched[-1]:.0f} ms", flush=True)
        # cold: jump back to the first case (never prefetched backwards)
        review._prefetched.clear()
        wait(lambda: review._prefetching is None)
        start = time.perf_counter()
        review.go_to("case_000")
        wait(lambda: review.current == "case_000")
        app.processEvents()
        win.views[0].viewport().repaint()
        cold.append((time.perf_counter() - start) * 1000)
        print(f"case_000: cold switch {cold[-1]:.0f} ms", flush=True)
        win.close()
        win.shutdown()
    print(json.dumps({"bench": "review_switch", "cpu": cpu_class(), "cores": os.cpu_count(),
                      "shape": [args.slices, 512, 512], "prefetched_ms": round(statistics.median(prefetched), 1),
                      "prefetched_all_ms": [round(v, 1) for v in prefetched], "cold_ms": round(cold[0], 1)}))


if __name__ == "__main__":
    main()
