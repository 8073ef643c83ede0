"""Box/point tools through the engine bridge with a FakeEngine: previews, Enter/Esc, Tab, debounce,
'embedding…' with prompts kept, propagation with cancel, errors, and a UI that never blocks."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PySide6.QtCore import QElapsedTimer, Qt, QTimer
from PySide6.QtWidgets import QApplication, QPushButton

from annotator.engine.api import EngineError
from annotator.engine.testing import FakeEngine

pytestmark = pytest.mark.gui


def view_of(window, plane):
    return next(v for v in window.views if v.plane == plane)


def vp(view, row, col):
    return view.raw_to_viewport(row, col).toPoint()


@pytest.fixture
def make_window(qtbot, small_phantom):
    made = []

    def make(engine):
        from annotator.qt.main_window import MainWindow
        from annotator.settings import Settings

        win = MainWindow(Settings(prefetch_radius=1), engine=engine)
        qtbot.addWidget(win)
        win.resize(1200, 700)
        win.show()
        qtbot.waitExposed(win)
        win.doc.set_volume(small_phantom.volume)
        made.append(win)
        return win

    yield make
    for win in made:
        win.shutdown()


def drag_box(qtbot, view, r0, c0, r1, c1):
    qtbot.mousePress(view.viewport(), Qt.MouseButton.LeftButton, pos=vp(view, r0, c0))
    qtbot.mouseMove(view.viewport(), vp(view, (r0 + r1) // 2, (c0 + c1) // 2))
    qtbot.mouseMove(view.viewport(), vp(view, r1, c1))
    qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=vp(view, r1, c1))


def test_box_on_coronal_previews_then_enter_accepts_as_one_undo_step(make_window, qtbot):
    engine = FakeEngine()
    win = make_window(engine)
    doc = win.doc
    coronal = view_of(win, "coronal")
    with qtbot.waitSignal(win.bridge.prediction_ready, timeout=5000):
        drag_box(qtbot, coronal, 4, 10, 16, 40)
    box = doc.prompts(1, coronal.slice_index).box
    assert (box.x_min, box.y_min, box.x_max, box.y_max) == (10, 4, 40, 16)
    preview = doc.preview
    assert preview.axis == 1
    assert preview.mask[10, 25]
    assert not preview.mask[2, 25]
    assert not doc.labels.array.any()  # a preview is not an edit
    assert engine.threads == {"annotator-engine"}  # the model ran on the engine thread only
    win.actions_by_name["accept"].trigger()
    written = doc.labels.array[:, coronal.slice_index, :] == doc.active_label
    assert np.array_equal(written, preview.mask)
    assert int(np.count_nonzero(doc.labels.array)) == int(preview.mask.sum())
    win.actions_by_name["undo"].trigger()
    assert not doc.labels.array.any()
    win.actions_by_name["redo"].trigger()
    assert int(np.count_nonzero(doc.labels.array)) == int(preview.mask.sum())


def test_esc_discards_preview_and_labels_stay_untouched(make_window, qtbot):
    win = make_window(FakeEngine())
    axial = view_of(win, "axial")
    with qtbot.waitSignal(win.bridge.prediction_ready, timeout=5000):
        drag_box(qtbot, axial, 10, 10, 30, 30)
    win.actions_by_name["discard"].trigger()
    assert win.doc.preview is None
    assert not win.doc.labels.array.any()
    assert not win.doc.history.can_undo


def test_point_model_tab_cycles_candidates_and_shift_click_is_negative(make_window, qtbot):
    engine = FakeEngine(prompt_kind="points", radius_px=6)
    win = make_window(engine)
    doc = win.doc
    win.tools.set_tool("point")
    axial = view_of(win, "axial")
    with qtbot.waitSignal(win.bridge.prediction_ready, timeout=5000):
        qtbot.mouseClick(axial.viewport(), Qt.MouseButton.LeftButton, pos=vp(axial, 30, 30))
    assert doc.preview.candidate_count == 3
    first = doc.preview.mask.copy()
    win.actions_by_name["next_candidate"].trigger()
    assert doc.preview.chosen == 1
    assert not np.array_equal(doc.preview.mask, first)
    with qtbot.waitSignal(win.bridge.prediction_ready, timeout=5000):
        qtbot.mouseClick(axial.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier,
                         vp(axial, 30, 34))
    prompts = doc.prompts(0, axial.slice_index)
    assert [p.positive for p in prompts.points] == [True, False]
    assert not doc.preview.mask[30, 34]  # the negative click is respected


def test_clicks_in_a_burst_are_debounced_into_one_job(make_window, qtbot):
    engine = FakeEngine(prompt_kind="points")
    win = make_window(engine)
    win.tools.set_tool("point")
    axial = view_of(win, "axial")
    qtbot.waitUntil(lambda: win.bridge.executor.pending_count() == 0, timeout=5000)
    before = engine.predict_calls
    with qtbot.waitSignal(win.bridge.prediction_ready, timeout=5000):
        for col in (20, 24, 28):
            qtbot.mouseClick(axial.viewport(), Qt.MouseButton.LeftButton, pos=vp(axial, 30, col))
    qtbot.wait(150)
    assert len(win.doc.prompts(0, axial.slice_index).points) == 3
    # One click-strategy run for three clicks: far fewer decoder calls than three separate runs.
    burst = engine.predict_calls - before
    assert burst <= 3
    # ... and a click after the pause is a job of its own, so a second job would have been counted.
    with qtbot.waitSignal(win.bridge.prediction_ready, timeout=5000):
        qtbot.mouseClick(axial.viewport(), Qt.MouseButton.LeftButton, pos=vp(axial, 30, 32))
    assert engine.predict_calls - before > burst


def test_a_box_is_segmented_on_release_without_the_click_pause(make_window, qtbot):
    from annotator.qt.prompt_controller import CLICK_DEBOUNCE_MS

    engine = FakeEngine()
    win = make_window(engine)
    axial = view_of(win, "axial")
    qtbot.waitUntil(lambda: win.bridge.executor.pending_count() == 0, timeout=5000)
    clock = QElapsedTimer()
    clock.start()
    with qtbot.waitSignal(win.bridge.prediction_ready, timeout=5000):
        drag_box(qtbot, axial, 10, 10, 30, 30)
        assert win.bridge.prompts.pending is None  # handed to the engine on release, not queued
    assert clock.elapsed() < CLICK_DEBOUNCE_MS  # the FakeEngine answers at once


def test_event_loop_keeps_ticking_while_a_slow_engine_embeds(make_window, qtbot):
    engine = FakeEngine(embed_delay_s=0.6)
    win = make_window(engine)
    axial = view_of(win, "axial")
    ticks = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    clock = QElapsedTimer()
    clock.start()
    drag_box(qtbot, axial, 10, 10, 30, 30)  # slice not embedded yet: prompts must be kept
    assert clock.elapsed() < 300  # the drag returned at once
    qtbot.waitUntil(lambda: "Embedding" in axial.status_text, timeout=3000)
    with qtbot.waitSignal(win.bridge.prediction_ready, timeout=8000):
        pass
    timer.stop()
    assert win.doc.preview is not None
    assert win.doc.prompts(0, axial.slice_index).box is not None
    gaps = np.diff(ticks)
    assert len(ticks) >= 15
    assert gaps.max() < 0.25, f"GUI thread blocked for {gaps.max():.3f} s"
    assert axial.status_text == ""


def test_a_look_at_a_ct_slice_embeds_it_in_every_window_a_box_may_try_then_the_neighbours_ahead(make_window, qtbot):
    from annotator.core.geometry import slice_2d
    from annotator.engine.input_window import slice_windows

    engine = FakeEngine()
    win = make_window(engine)  # prefetch radius 1
    doc, bridge = win.doc, win.bridge
    qtbot.waitUntil(lambda: bridge.ready, timeout=5000)
    volume = doc.current_volume()
    start = doc.slice_index(0)
    windows = slice_windows(volume, slice_2d(volume.array, 0, start))
    assert len(windows) == 3  # the phantom holds air and bone: lung and bone presets too
    bridge.set_active_axis(0)
    qtbot.waitUntil(lambda: all(bridge.service.is_cached(volume, 0, start, w) for w in windows), timeout=5000)
    assert bridge.executor.wait_until_idle(5)
    # The user scrolls down two slices and stops: the slice below comes before the one above.
    bridge.executor.stats.order.clear()
    doc.set_slice(0, start - 1)
    doc.set_slice(0, start - 2)
    qtbot.waitUntil(lambda: bridge.service.is_cached(volume, 0, start - 3, windows[0]), timeout=5000)
    assert bridge.executor.wait_until_idle(5)
    order = [index for _, index in bridge.executor.stats.order]
    visible = [i for i, index in enumerate(order) if index == start - 2]
    assert len(visible) >= 3  # the visible slice in its windows first
    assert visible == list(range(len(visible)))
    assert order[len(visible):] == [start - 3, start - 1]
    assert all(bridge.service.is_cached(volume, 0, start - 2, w) for w in windows)


def test_engine_error_is_shown_not_raised(make_window, qtbot):
    engine = FakeEngine()
    engine.fail_predict = EngineError("decoder exploded")
    win = make_window(engine)
    axial = view_of(win, "axial")
    with qtbot.waitSignal(win.bridge.error, timeout=5000) as blocker:
        drag_box(qtbot, axial, 10, 10, 30, 30)
    assert "decoder exploded" in blocker.args[0]
    qtbot.waitUntil(lambda: win.last_error is not None, timeout=2000)
    assert win.doc.preview is None


def _uniform_volume():
    """A block of even soft tissue: propagation's stop checks pass on every slice for fake masks."""
    from annotator.core.volume import Volume

    rng = np.random.default_rng(0)
    array = (50 + rng.normal(0, 3, (12, 64, 64))).astype(np.int16)
    return Volume(array, (5.0, 3.2, 3.2), (10.0, -20.0, 30.0), modality="CT")


def _key_mask(engine, shape):
    from annotator.engine.api import ImageEmbedding

    emb = ImageEmbedding(np.zeros((1, 1, 1, 1), np.float32), shape, shape, engine.model_id)
    return engine.predict(emb, box_xyxy=np.array([24, 24, 40, 40]), multimask=False).best_mask


def test_propagation_lands_as_one_undo_step_and_views_follow(make_window, qtbot):
    engine = FakeEngine()
    win = make_window(engine)
    doc = win.doc
    doc.set_volume(_uniform_volume())
    key = 6
    doc.set_slice(0, key)
    doc.paint_slice_mask(0, key, _key_mask(engine, (64, 64)), doc.active_label, "paint key slice")
    before = doc.labels.array.copy()
    visited = []
    doc.cursor_changed.connect(lambda c: visited.append(c[0]))
    with qtbot.waitSignal(win.bridge.propagation_finished, timeout=20000) as blocker:
        win.actions_by_name["propagate"].trigger()
    assert blocker.args == [""]
    changed_slices = set(np.nonzero((doc.labels.array != before).any(axis=(1, 2)))[0].tolist())
    assert changed_slices == set(range(12)) - {key}
    assert set(visited) >= {0, 11}  # the views followed the propagation
    assert doc.history.descriptions()[-1].startswith("propagate")
    win.actions_by_name["undo"].trigger()
    assert np.array_equal(doc.labels.array, before)
    assert win.progress_dialog is None


def test_a_correction_past_where_propagation_stopped_reopens_it_there(make_window, qtbot):
    """The user paints the slice after the one where P stopped: the structure goes on there, so P
    again runs on past that key (the evaluation's simulated user does the same,
    engine.label_extent.structure_extent). A correction of the end slice itself keeps the end."""
    from annotator.core.volume import Volume

    engine = FakeEngine()
    win = make_window(engine)
    doc = win.doc
    array = _uniform_volume().array
    array[9:] += 400  # a different tissue from slice 9 on: the first run stops there
    doc.set_volume(Volume(array, (5.0, 3.2, 3.2), (10.0, -20.0, 30.0), modality="CT"))
    doc.set_slice(0, 6)
    label = doc.active_label
    key = _key_mask(engine, (64, 64))
    doc.paint_slice_mask(0, 6, key, label, "paint key slice")
    with qtbot.waitSignal(win.bridge.propagation_finished, timeout=20000) as blocker:
        win.actions_by_name["propagate"].trigger()
    assert blocker.args == [""]
    present = (doc.labels.array == label).any(axis=(1, 2))
    assert not present[9:].any()
    assert present[:9].all()
    # The end slice corrected (its own mask again): P keeps the end.
    doc.paint_slice_mask(0, 8, key, label, "brush end slice")
    with qtbot.waitSignal(win.bridge.propagation_finished, timeout=20000):
        win.actions_by_name["propagate"].trigger()
    assert not (doc.labels.array[9:] == label).any()
    # Slice 10, past the end: P reopens the run from it.
    doc.set_slice(0, 10)
    doc.paint_slice_mask(0, 10, key, label, "brush past the end")
    with qtbot.waitSignal(win.bridge.propagation_finished, timeout=20000):
        win.actions_by_name["propagate"].trigger()
    assert (doc.labels.array[11] == label).any()
    assert (doc.labels.array[9] == label).any()  # between the keys 8 and 10


def test_the_prefetch_count_is_the_visible_slices_round_not_propagations_slices(make_window, qtbot):
    """Propagation queues the slices ahead of it as prefetch work too; the engine panel's
    "prefetch done/total" counts only the round the visible slice asked for (it read 54/9)."""
    engine = FakeEngine()
    win = make_window(engine)
    doc = win.doc
    doc.set_volume(_uniform_volume())
    doc.set_slice(0, 6)
    seen = []
    win.bridge.status_changed.connect(lambda: seen.append((win.bridge.prefetch_done, win.bridge.prefetch_total)))
    qtbot.waitUntil(lambda: win.bridge.prefetch_total > 0 and win.bridge.prefetch_done == win.bridge.prefetch_total,
                    timeout=5000)
    doc.paint_slice_mask(0, 6, _key_mask(engine, (64, 64)), doc.active_label, "paint key slice")
    with qtbot.waitSignal(win.bridge.propagation_finished, timeout=20000):
        win.actions_by_name["propagate"].trigger()
    qtbot.wait(300)
    assert seen
    assert all(done <= total for done, total in seen), seen
    done, total = win.bridge.prefetch_done, win.bridge.prefetch_total
    assert win.engine_panel.fields["prefetch"].text() in (f"{done}/{total}", "idle")


def test_propagation_cancel_leaves_labels_untouched(make_window, qtbot):
    engine = FakeEngine(predict_delay_s=0.1)
    win = make_window(engine)
    doc = win.doc
    doc.set_volume(_uniform_volume())
    doc.set_slice(0, 6)
    doc.paint_slice_mask(0, 6, _key_mask(engine, (64, 64)), doc.active_label, "paint key slice")
    before = doc.labels.array.copy()
    with qtbot.waitSignal(win.bridge.propagation_finished, timeout=20000) as blocker:
        win.actions_by_name["propagate"].trigger()
        qtbot.waitUntil(lambda: win.progress_dialog is not None, timeout=5000)
        qtbot.mouseClick(win.progress_dialog.findChild(QPushButton), Qt.MouseButton.LeftButton)
    assert blocker.args == ["cancelled"]
    assert np.array_equal(doc.labels.array, before)


def test_engine_panel_and_status_bar_say_what_runs(make_window, qtbot):
    win = make_window(FakeEngine())
    qtbot.waitUntil(lambda: win.bridge.last_embed_s is not None or win.bridge.prefetch_done > 0, timeout=5000)
    assert "fake" in win.engine_label.text()
    assert win.engine_panel.fields["model"].text() == "fake"
    assert win.engine_panel.fields["device"].text() == "cpu"
    assert "slices" in win.engine_panel.fields["cache"].text()


def test_engine_load_failure_is_reported(qtbot, small_phantom, monkeypatch):
    from annotator.qt import engine_bridge
    from annotator.qt.main_window import MainWindow
    from annotator.settings import Settings

    def broken(name, checkpoint, runtime):
        raise EngineError("bad.pth: not a checkpoint")

    monkeypatch.setattr(engine_bridge, "_create_engine", broken)
    win = MainWindow(Settings())
    qtbot.addWidget(win)
    try:
        qtbot.waitUntil(lambda: win.last_error is not None, timeout=5000)
        assert "bad.pth" in win.last_error
        assert win.bridge.state == "failed"
    finally:
        win.shutdown()
    assert threading.active_count() >= 1


def _window_loading_until(qtbot, small_phantom, monkeypatch, release: threading.Event, fail: bool = False):
    """A window whose model loads until `release` is set (then loads, or fails when `fail`)."""
    from annotator.qt import engine_bridge
    from annotator.qt.main_window import MainWindow
    from annotator.settings import Settings

    def slow_create(name, checkpoint, runtime):
        release.wait(30)
        if fail:
            raise EngineError("lite_medsam.pth: truncated file")
        return FakeEngine()

    monkeypatch.setattr(engine_bridge, "_create_engine", slow_create)
    win = MainWindow(Settings(prefetch_radius=0))
    qtbot.addWidget(win)
    win.resize(1200, 700)
    win.show()
    qtbot.waitExposed(win)
    win.doc.set_volume(small_phantom.volume)
    assert win.bridge.state == "loading"
    return win


def test_a_box_drawn_while_the_model_loads_is_kept_and_segmented_once_it_is_ready(qtbot, small_phantom, monkeypatch):
    release = threading.Event()
    win = _window_loading_until(qtbot, small_phantom, monkeypatch, release)
    try:
        axial = view_of(win, "axial")
        busy = []
        win.bridge.busy_text_changed.connect(lambda axis, text: busy.append((axis, text)))
        drag_box(qtbot, axial, 10, 10, 30, 30)
        qtbot.wait(200)
        assert win.last_error is None                        # no "not ready" message for it
        assert win.doc.preview is None
        assert win.doc.prompts(0, win.doc.slice_index(0)).box is not None   # the box stays drawn
        assert any("Loading the segmentation model" in text for _, text in busy)
        with qtbot.waitSignal(win.bridge.prediction_ready, timeout=10000):
            release.set()
        assert win.doc.preview is not None
        assert win.doc.preview.index == win.doc.slice_index(0)
        assert busy[-1] == (0, "")                          # and the "loading" note is gone
    finally:
        release.set()
        win.shutdown()


def test_a_box_drawn_while_the_model_fails_to_load_gets_the_load_error_once(qtbot, small_phantom, monkeypatch):
    release = threading.Event()
    win = _window_loading_until(qtbot, small_phantom, monkeypatch, release, fail=True)
    try:
        axial = view_of(win, "axial")
        errors = []
        win.bridge.error.connect(errors.append)
        drag_box(qtbot, axial, 10, 10, 30, 30)
        qtbot.wait(200)
        assert errors == []
        release.set()
        qtbot.waitUntil(lambda: win.bridge.state == "failed", timeout=10000)
        qtbot.wait(200)
        assert len(errors) == 1
        assert "lite_medsam.pth" in errors[0]
        assert win.bridge.prompts.waiting_for_engine is None
        assert win.doc.preview is None
        assert not win.doc.labels.array.any()
    finally:
        release.set()
        win.shutdown()


def test_keyboard_shortcuts_reach_the_actions_from_a_focused_view(make_window, qtbot):
    engine = FakeEngine(prompt_kind="points")
    win = make_window(engine)
    axial = view_of(win, "axial")
    win.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=3000)  # shortcuts need it
    axial.setFocus()
    for key, tool in ((Qt.Key.Key_R, "brush"), (Qt.Key.Key_E, "eraser"), (Qt.Key.Key_F, "fill"),
                      (Qt.Key.Key_K, "point"), (Qt.Key.Key_B, "box")):
        qtbot.keyClick(axial, key)
        assert win.tools.active_name == tool
    radius = win.tools.brush_radius
    qtbot.keyClick(axial, Qt.Key.Key_BracketRight)
    assert win.tools.brush_radius > radius
    qtbot.keyClick(axial, Qt.Key.Key_K)
    with qtbot.waitSignal(win.bridge.prediction_ready, timeout=5000):
        qtbot.mouseClick(axial.viewport(), Qt.MouseButton.LeftButton, pos=vp(axial, 30, 30))
    qtbot.keyClick(axial, Qt.Key.Key_Tab)
    assert win.doc.preview.chosen == 1
    qtbot.keyClick(axial, Qt.Key.Key_Escape)
    assert win.doc.preview is None
    assert not win.doc.labels.array.any()


def test_choosing_a_checkpoint_reloads_the_engine_and_is_remembered(qtbot, small_phantom, monkeypatch, tmp_path):
    from annotator.qt import engine_bridge
    from annotator.qt.main_window import MainWindow
    from annotator.settings import Settings

    calls = []

    def fake_create(name, checkpoint, runtime):
        calls.append((name, checkpoint))
        return FakeEngine(model_id="fake" if checkpoint is None else "fake-ckpt")

    monkeypatch.setattr(engine_bridge, "_create_engine", fake_create)
    win = MainWindow(Settings())
    qtbot.addWidget(win)
    try:
        qtbot.waitUntil(lambda: win.bridge.ready, timeout=5000)
        checkpoint = str(tmp_path / "medsam.pth")
        win.engine_panel.use_checkpoint(checkpoint)
        qtbot.waitUntil(lambda: win.bridge.ready and win.bridge.engine.model_id == "fake-ckpt", timeout=5000)
        assert calls[-1] == ("auto", checkpoint)
        assert Settings.load().checkpoint == checkpoint
        assert win.engine_panel.fields["model"].text() == "fake-ckpt"
    finally:
        win.shutdown()


def test_forcing_a_runtime_reloads_the_engine_on_it_and_is_remembered(qtbot, small_phantom, monkeypatch):
    from annotator.qt import engine_bridge
    from annotator.qt.main_window import MainWindow
    from annotator.settings import Settings

    calls = []

    def fake_create(name, checkpoint, runtime):
        calls.append(runtime)
        engine = FakeEngine(model_id="fake")
        engine.runtime = "torch-fp32" if runtime in ("auto", "torch") else f"{runtime}-fp32"
        return engine

    monkeypatch.setattr(engine_bridge, "_create_engine", fake_create)
    win = MainWindow(Settings())
    qtbot.addWidget(win)
    try:
        qtbot.waitUntil(lambda: win.bridge.ready, timeout=5000)
        combo = win.engine_panel.runtime_combo
        assert combo.currentData() == "auto"
        assert calls == ["auto"]
        combo.activated.emit(combo.findData("torch"))
        qtbot.waitUntil(lambda: win.bridge.ready and calls[-1] == "torch", timeout=5000)
        assert Settings.load().runtime == "torch"
        assert win.engine_panel.fields["runtime"].text() == "torch-fp32"
        assert combo.currentData() == "torch"
        win.engine_panel.use_runtime("torch")  # the same choice again: no reload
        assert calls == ["auto", "torch"]
    finally:
        win.shutdown()


def test_ten_engine_switches_leave_one_executor_and_at_most_one_preparation_process(make_window, qtbot,
                                                                                   monkeypatch):
    """Choosing another engine or runtime stops the old executor (its model thread) and the old
    background preparation process, also when a slow load is overtaken by a later choice."""
    import subprocess
    import sys

    from annotator.qt import engine_bridge

    started: list[subprocess.Popen] = []

    def create(name, checkpoint, runtime):  # each load starts a preparation process, as LiteMedSAM's first start does
        time.sleep(0.05 if len(started) % 2 else 0.0)
        engine = FakeEngine()
        engine.background_check = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        started.append(engine.background_check)
        return engine

    monkeypatch.setattr(engine_bridge, "_create_engine", create)
    win = make_window(FakeEngine())
    bridge = win.bridge
    try:
        for n in range(10):
            bridge.reload(runtime="torch" if n % 2 else "auto")
            if n % 3 == 2:  # sometimes the next choice comes before the load finished
                continue
            qtbot.waitUntil(lambda: bridge.ready, timeout=10000)
        qtbot.waitUntil(lambda: bridge.ready and len(started) == 10, timeout=10000)
        qtbot.wait(200)  # any stale load still in the queue has delivered by now
        executor_threads = [t for t in threading.enumerate() if t.name == "annotator-engine" and t.is_alive()]
        assert len(executor_threads) == 1
        alive = [p for p in started if p.poll() is None]
        assert len(alive) <= 1
        assert alive == [] or alive[0] is bridge.engine.background_check
    finally:
        for p in started:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_a_click_on_a_propagated_slice_corrects_its_mask_and_enter_replaces_it(make_window, qtbot):
    """The clinician's correction: the label leaked into a neighbour on a slice propagation wrote; a
    negative click there trims the leak and keeps the rest; Enter writes it; undo restores it."""
    from annotator.core.volume import Volume

    rng = np.random.default_rng(1)
    array = (40 + rng.normal(0, 3, (8, 64, 64))).astype(np.int16)
    array[:, 20:44, 16:34] += 150  # the structure: brighter soft tissue
    win = make_window(FakeEngine())
    doc = win.doc
    doc.set_volume(Volume(array, (3.0, 1.0, 1.0), modality="CT"))
    label = doc.active_label
    structure = np.zeros((64, 64), dtype=bool)
    structure[20:44, 16:34] = True
    leaked = structure.copy()
    leaked[20:44, 34:42] = True
    doc.labels.array[4][leaked] = label  # what propagation put on slice 4
    doc.set_slice(0, 4)
    axial = view_of(win, "axial")
    win.tools.set_tool("point")
    with qtbot.waitSignal(win.bridge.prediction_ready, timeout=5000):
        qtbot.mouseClick(axial.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier,
                         vp(axial, 32, 39))
    assert doc.prompts(0, 4).base is not None
    preview = doc.preview.mask
    assert not preview[32, 39]
    assert preview[structure].mean() > 0.97  # the structure stays
    assert preview[leaked & ~structure].mean() < 0.3  # the leak goes
    assert axial._overlay_item._image is None  # the mask being replaced is not drawn under the preview
    before = doc.labels.array.copy()
    win.actions_by_name["accept"].trigger()
    np.testing.assert_array_equal(doc.labels.array[4] == label, preview)
    assert axial._overlay_item._image is not None  # the accepted mask is drawn again
    win.actions_by_name["undo"].trigger()
    np.testing.assert_array_equal(doc.labels.array, before)
