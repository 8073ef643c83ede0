"""See the window as a clinician does: open a scan, draw a box on a labelled structure, click where
the preview is most wrong, Enter, P; a screenshot of the X screen after each step. Run on purpose
(not in CI), under a real X server so the capture is what a user would see:

    xvfb-run -a -s "-screen 0 1600x900x24" .venv/bin/python bench/gui_screenshots.py \\
        --image ../shared/data/labelled/ct_totalseg_abdomen_3mm/image.nii.gz \\
        --labels ../shared/data/labelled/ct_totalseg_abdomen_3mm/labels.nii.gz --label-value 7 --out shots

(Debian: `apt-get install xvfb libxcb-cursor0` for Qt's xcb plugin.) Settings, autosaves and the
embedding cache go to a fresh temporary directory (ANNOTATOR_CONFIG_DIR, _DATA_DIR, _CACHE_DIR)
unless --keep-home, so a leftover autosave's restore question cannot block the run. Prints each screenshot's path and the Dice after each step.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", required=True, help="a volume the app opens (NIfTI, NRRD, DICOM folder)")
    parser.add_argument("--labels", required=True, help="a label map on the same grid: where to draw the box")
    parser.add_argument("--label-value", type=int, required=True, help="the structure to box (its value in --labels)")
    parser.add_argument("--plane", default="axial", choices=("axial", "coronal", "sagittal"))
    parser.add_argument("--out", default="shots", help="folder for the PNG files")
    parser.add_argument("--keep-home", action="store_true", help="use the user's own settings and cache")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each step")
    args = parser.parse_args()

    if not args.keep_home:
        home = Path(tempfile.mkdtemp(prefix="annotator-shots-"))
        for name in ("ANNOTATOR_CONFIG_DIR", "ANNOTATOR_DATA_DIR", "ANNOTATOR_CACHE_DIR"):
            os.environ[name] = str(home / name.lower())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import numpy as np
    from PySide6.QtCore import QEventLoop, Qt, QTimer
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from annotator.core.geometry import plane_array_axis, slice_2d
    from annotator.evaluate import protocol
    from annotator.io import read_labels_onto
    from annotator.qt.main_window import MainWindow
    from annotator.settings import Settings

    app = QApplication.instance() or QApplication(sys.argv)
    win = MainWindow(Settings())
    win.resize(1500, 850)
    win.show()

    def pump(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.02)

    def wait_for(signal) -> bool:
        loop, fired = QEventLoop(), []
        def done(*_args) -> None:
            fired.append(True)
            loop.quit()
        signal.connect(done)
        QTimer.singleShot(int(args.timeout * 1000), loop.quit)
        loop.exec()
        signal.disconnect(done)
        return bool(fired)

    def shot(name: str) -> None:
        pump(0.5)
        path = out / f"{name}.png"
        app.primaryScreen().grabWindow(0).save(str(path))
        print(path, flush=True)

    try:
        win.open_path(args.image)
        start = time.monotonic()
        while not win.doc.has_volume and time.monotonic() - start < args.timeout:
            pump(0.1)
        if not win.doc.has_volume:
            print(f"{args.image}: the window did not open it (last message: {win.last_error})", file=sys.stderr)
            return 1
        doc = win.doc
        reference = read_labels_onto(doc.volume, args.labels).array == args.label_value
        axis = plane_array_axis(doc.volume, args.plane)
        other = tuple(a for a in range(3) if a != axis)
        if not reference.any():
            print(f"{args.labels}: no voxel has the value {args.label_value}", file=sys.stderr)
            return 1
        index = int(np.argmax(reference.sum(axis=other)))
        doc.set_slice(axis, index)
        truth = slice_2d(reference, axis, index)
        rows, cols = np.nonzero(truth)
        doc.set_active_label(doc.add_label(f"structure {args.label_value}"))
        view = next(v for v in win.views if v.plane == args.plane)
        shot("0_opened")

        win.tools.set_tool("box")
        a = view.raw_to_viewport(rows.min(), cols.min()).toPoint()
        b = view.raw_to_viewport(rows.max(), cols.max()).toPoint()
        QTest.mousePress(view.viewport(), Qt.MouseButton.LeftButton, pos=a)
        QTest.mouseMove(view.viewport(), (a + b) / 2)
        QTest.mouseMove(view.viewport(), b)
        QTest.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=b)
        if not wait_for(win.bridge.prediction_ready) or doc.preview is None:
            shot("1_box_failed")
            print(f"no preview for the box (last message: {win.last_error})", file=sys.stderr)
            return 1
        print(f"box: Dice {protocol.dice(doc.preview.mask, truth):.3f}", flush=True)
        shot("1_box")

        click = protocol.next_click(doc.preview.mask, truth)
        if click is not None:
            x, y, positive = click
            win.tools.set_tool("point")
            button = Qt.MouseButton.LeftButton if positive else Qt.MouseButton.RightButton
            QTest.mouseClick(view.viewport(), button, pos=view.raw_to_viewport(y, x).toPoint())
            if wait_for(win.bridge.prediction_ready) and doc.preview is not None:
                print(f"{'positive' if positive else 'negative'} click at ({x}, {y}): "
                      f"Dice {protocol.dice(doc.preview.mask, truth):.3f}", flush=True)
            shot("2_click")

        view.setFocus()
        QTest.keyClick(view, Qt.Key.Key_Return)
        label_id = doc.active_label
        win.actions_by_name["propagate"].trigger()
        wait_for(win.bridge.propagation_finished)
        print(f"propagated: 3-D Dice {protocol.dice(doc.labels.array == label_id, reference):.3f}", flush=True)
        shot("3_propagated")
        return 0
    finally:
        win.shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
