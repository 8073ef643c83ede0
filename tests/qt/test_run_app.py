"""`annotator --demo` (what `make run` starts) opens the window on the generated phantom."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QApplication

from annotator.engine.testing import FakeEngine

pytestmark = pytest.mark.gui


def test_annotator_demo_opens_the_window_on_the_phantom(qtbot, monkeypatch):
    from annotator import app
    from annotator.engine import factory
    from annotator.qt import main_window

    monkeypatch.setattr(factory, "create_engine", lambda *a, **k: FakeEngine())  # no model load here
    seen = {}

    def fake_exec(self):
        # Windows of earlier tests are closed (hidden); run_app's is the one on screen.
        (win,) = [w for w in QApplication.topLevelWidgets()
                  if isinstance(w, main_window.MainWindow) and w.isVisible()]
        qtbot.waitUntil(lambda: win.doc.has_volume and win.bridge.ready, timeout=20000)
        seen["shape"] = win.doc.volume.shape_zyx
        seen["spacing"] = win.doc.volume.spacing_zyx_mm
        seen["title"] = win.windowTitle()
        seen["engine"] = win.engine_label.text()
        win.close()
        return 0

    monkeypatch.setattr(QApplication, "exec", fake_exec)
    assert app.main(["--demo"]) == 0
    assert seen["shape"] == (64, 256, 256)
    assert seen["spacing"] == (2.5, 0.8, 0.8)
    assert "phantom" in seen["title"].lower()
    assert "fake" in seen["engine"]
