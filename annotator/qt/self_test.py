"""`annotator --self-test`: the whole app end to end without a user, for a packaged build.

Opens the window on the demo phantom, waits for the engine, draws a box around the liver on the
middle slice, and checks the model's mask against the phantom's own liver; prints one JSON line
and exits 0 when the mask matches (Dice >= 0.8), 1 otherwise, 2 when something did not happen
within the time limit."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from annotator.core.geometry import slice_2d
from annotator.core.phantom import make_phantom
from annotator.core.prompts import BoxPrompt
from annotator.qt.main_window import MainWindow

LIVER = 1


def run_self_test(app: QApplication, window: MainWindow, timeout_s: float = 300.0) -> int:
    start = time.perf_counter()
    result: dict = {"self_test": "box on the demo liver"}

    def wait(condition: Callable[[], bool], what: str) -> bool:
        while not condition():
            if time.perf_counter() - start > timeout_s:
                result["error"] = f"timed out waiting for {what}"
                return False
            app.processEvents()
            time.sleep(0.01)
        return True

    def finish(code: int) -> int:
        result["seconds"] = round(time.perf_counter() - start, 2)
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
        window.close()
        return code

    window.open_demo()
    bridge = window.bridge
    if bridge is None or not wait(lambda: window.doc.has_volume, "the demo volume"):
        return finish(2)
    if not wait(lambda: bridge.engine is not None, "the engine to load"):
        return finish(2)
    result["engine"] = bridge.summary()
    truth = make_phantom().truth.array == LIVER
    z = int(np.argmax(truth.sum(axis=(1, 2))))
    rows, cols = np.nonzero(slice_2d(truth, 0, z))
    doc = window.doc
    doc.set_slice(0, z)
    doc.set_box(0, z, BoxPrompt(float(cols.min()), float(rows.min()), float(cols.max()), float(rows.max())))
    done: list[bool] = []
    bridge.prediction_ready.connect(lambda: done.append(True))
    bridge.request_prediction(0, z, at_once=True)
    if not wait(lambda: bool(done) and doc.preview is not None, "the mask"):
        return finish(2)
    assert doc.preview is not None
    mask, target = doc.preview.mask, slice_2d(truth, 0, z)
    dice = 2.0 * float(np.logical_and(mask, target).sum()) / max(float(mask.sum() + target.sum()), 1.0)
    result["dice"] = round(dice, 3)
    return finish(0 if dice >= 0.8 else 1)


def schedule_self_test(app: QApplication, window: MainWindow) -> None:
    """Run the self-test once the event loop runs; its exit code ends the application."""
    QTimer.singleShot(0, lambda: app.exit(run_self_test(app, window)))
