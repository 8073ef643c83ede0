"""The window with its engine on `annotator serve`: the status bar names the server, a box gives the
local engine's mask, accepting and propagating work; killing the server mid-propagation leaves the
label map as it was, with a message; *This computer* brings the local engine back."""

from __future__ import annotations

import numpy as np
import pytest
from server_fixture import TOKEN, start_server

# the offscreen platform plugin warns that it cannot propagate size hints; that is not ours
pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.realdata, pytest.mark.qt_log_ignore("propagateSizeHints")]


@pytest.fixture
def remote_window(qtbot, tmp_path_factory, monkeypatch):
    from pathlib import Path

    case = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "labelled" / "ct_totalseg_abdomen_3mm"
    if not (case / "image.nii.gz").is_file():
        pytest.skip("shared data not available")
    pytest.importorskip("torch")
    url, proc = start_server(tmp_path_factory.mktemp("srv"))
    monkeypatch.setenv("ANNOTATOR_SERVER_TOKEN", TOKEN)
    from annotator.io import load_volume, read_labels_onto
    from annotator.qt.main_window import MainWindow
    from annotator.settings import Settings

    win = MainWindow(Settings(prefetch_radius=0, server_url=url))
    qtbot.addWidget(win)
    win.resize(1400, 800)
    win.show()
    qtbot.waitExposed(win)
    volume = load_volume(case / "image.nii.gz")
    win.doc.set_volume(volume)
    win.reference = read_labels_onto(volume, case / "labels.nii.gz").array
    win.server = (url, proc)
    yield win
    win.shutdown()
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=30)


def test_box_accept_then_server_dies_mid_propagation(remote_window, qtbot):
    from annotator.core.geometry import slice_2d
    from annotator.core.prompts import BoxPrompt
    from annotator.engine.remote import RemoteEngine

    win = remote_window
    url, proc = win.server
    qtbot.waitUntil(lambda: win.bridge.ready, timeout=120000)
    assert isinstance(win.bridge.engine, RemoteEngine)
    assert url in win.engine_label.text()
    doc = win.doc
    spleen = win.reference == 1
    z = int(np.argmax(spleen.sum(axis=(1, 2))))
    rows, cols = np.nonzero(spleen[z])
    label_id = doc.add_label("spleen")
    doc.set_active_label(label_id)
    doc.set_slice(0, z)
    doc.set_box(0, z, BoxPrompt(float(cols.min()), float(rows.min()), float(cols.max()), float(rows.max())))
    with qtbot.waitSignal(win.bridge.prediction_ready, timeout=120000):
        win.bridge.request_prediction(0, z)
    mask = doc.preview.mask
    dice = 2 * np.logical_and(mask, spleen[z]).sum() / (mask.sum() + spleen[z].sum())
    assert dice >= 0.85
    doc.accept_preview()
    before = doc.labels.array.copy()
    assert slice_2d(before, 0, z).any()

    # propagate, and kill the server as soon as the first slice is under way
    axial = next(v for v in win.views if v.plane == "axial")
    axial.setFocus()
    with qtbot.waitSignal(win.bridge.propagation_progress, timeout=60000):
        win.actions_by_name["propagate"].trigger()
    proc.kill()
    proc.wait(timeout=30)
    with qtbot.waitSignal(win.bridge.propagation_finished, timeout=120000) as finished:
        pass
    assert finished.args[0] not in ("", "cancelled")
    assert np.array_equal(doc.labels.array, before)  # nothing half-written
    qtbot.waitUntil(lambda: win.last_error is not None, timeout=10000)
    assert "unreachable" in win.last_error

    # back to this computer: the local engine loads and segments
    win.engine_panel.use_server(None)
    qtbot.waitUntil(lambda: win.bridge.ready and not isinstance(win.bridge.engine, RemoteEngine), timeout=120000)
    assert url not in win.engine_label.text()
