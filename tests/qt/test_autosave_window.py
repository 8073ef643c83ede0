"""Crash recovery in the real window: edits are autosaved, a new window on the same image offers
them back (Restore = one undo step, Discard removes the file), and a clean close after export cleans up."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox

from annotator.core.autosave import find_autosave
from annotator.settings import autosave_dir

pytestmark = pytest.mark.gui


def _paint(win, label_id=1):
    mask = np.zeros(win.doc.labels.shape_zyx[1:], dtype=bool)
    mask[20:40, 15:30] = True
    win.doc.paint_slice_mask(0, 12, mask, label_id, "paint")


def _autosave(win, qtbot):
    assert win.autosave_now() is not None
    qtbot.waitUntil(lambda: not win.background.busy, timeout=5000)
    assert re.fullmatch(r"autosaved \d\d:\d\d", win.autosave_label.text())


@pytest.fixture
def answer_dialog(monkeypatch):
    """Replace the modal QMessageBox with a recorded answer."""
    asked: list[str] = []
    answer = {"button": QMessageBox.StandardButton.Yes}

    def fake_exec(box):
        asked.append(box.text())
        return answer["button"]

    monkeypatch.setattr(QMessageBox, "exec", fake_exec)
    return asked, answer


def _crash(win):
    """What the operating system does when the app dies: the window's autosave lock is dropped."""
    win.autosave.slot.release()


def _second_window(qtbot, volume):
    from annotator.qt.main_window import MainWindow
    from annotator.settings import Settings

    win = MainWindow(Settings(), start_engine=False)
    qtbot.addWidget(win)
    win.doc.set_volume(volume)
    return win


def test_timer_follows_settings_and_saves_only_changes(window, qtbot, small_phantom):
    assert window.autosave_timer.isActive()
    assert window.autosave_timer.interval() == window.settings.autosave_seconds * 1000
    assert window.autosave_now() is None  # nothing edited yet: nothing written
    assert find_autosave(autosave_dir(), small_phantom.volume.content_id) is None
    _paint(window)
    _autosave(window, qtbot)
    assert find_autosave(autosave_dir(), small_phantom.volume.content_id) is not None
    assert window.autosave_now() is None  # unchanged since the last save
    window.shutdown()
    assert not window.autosave_timer.isActive()


def test_restore_in_new_window_is_one_undoable_edit(window, qtbot, small_phantom, answer_dialog):
    asked, answer = answer_dialog
    _paint(window)
    window.doc.add_label("tumour")
    _paint(window, label_id=2)
    edited = window.doc.labels.array.copy()
    assert edited.any()
    _autosave(window, qtbot)

    answer["button"] = QMessageBox.StandardButton.Yes
    _crash(window)
    win2 = _second_window(qtbot, small_phantom.volume)  # as after a crash: the first never closed
    try:
        qtbot.waitUntil(lambda: bool(asked), timeout=5000)
        assert "autosaved" in asked[0]
        np.testing.assert_array_equal(win2.doc.labels.array, edited)
        assert win2.doc.labels.table[2].name == "tumour"
        win2.doc.undo()
        assert not win2.doc.labels.array.any()
        win2.doc.redo()
        np.testing.assert_array_equal(win2.doc.labels.array, edited)
    finally:
        win2.shutdown()


def test_discard_leaves_labels_empty_and_removes_file(window, qtbot, small_phantom, answer_dialog):
    asked, answer = answer_dialog
    _paint(window)
    _autosave(window, qtbot)
    answer["button"] = QMessageBox.StandardButton.Discard
    _crash(window)
    win2 = _second_window(qtbot, small_phantom.volume)
    try:
        qtbot.waitUntil(lambda: bool(asked), timeout=5000)
        assert not win2.doc.labels.array.any()
        assert find_autosave(autosave_dir(), small_phantom.volume.content_id) is None
    finally:
        win2.shutdown()


def test_no_question_when_autosave_equals_what_opened(window, qtbot, small_phantom, answer_dialog):
    asked, _ = answer_dialog
    _paint(window)
    window.doc.undo()  # edited, then back to the opened state
    _autosave(window, qtbot)
    assert find_autosave(autosave_dir(), small_phantom.volume.content_id) is not None  # there is one to offer
    _crash(window)
    win2 = _second_window(qtbot, small_phantom.volume)
    try:
        qtbot.waitUntil(lambda: not win2.autosave.restore_offer_pending, timeout=5000)  # it was looked at
        assert asked == []
    finally:
        win2.shutdown()


def test_close_after_export_removes_autosave_close_without_keeps_it(window, qtbot, small_phantom, tmp_path):
    content_id = small_phantom.volume.content_id
    _paint(window)
    window.close()  # unsaved edits, no timer tick yet: the close writes the autosave
    assert find_autosave(autosave_dir(), content_id) is not None

    win2 = _second_window(qtbot, small_phantom.volume)
    win2.autosave._ask_restore = lambda info: True
    qtbot.waitUntil(lambda: win2.doc.labels.array.any(), timeout=5000)
    win2.export_labels(str(tmp_path / "labels.nii.gz"))
    qtbot.waitUntil(lambda: (tmp_path / "labels.nii.gz").exists() and not win2.background.busy, timeout=10000)
    win2.close()
    assert find_autosave(autosave_dir(), content_id) is None


def test_corrupt_autosave_is_reported_not_fatal(window, qtbot, small_phantom, answer_dialog):
    asked, _ = answer_dialog
    _paint(window)
    _autosave(window, qtbot)
    info = find_autosave(autosave_dir(), small_phantom.volume.content_id)
    info.labels_path.write_bytes(b"not a zip at all")
    _crash(window)
    win2 = _second_window(qtbot, small_phantom.volume)
    try:
        qtbot.waitUntil(lambda: "Autosave not restored" in win2.statusBar().currentMessage(), timeout=5000)
        assert "damaged" in win2.statusBar().currentMessage()
        assert asked == []
        assert not win2.doc.labels.array.any()
    finally:
        win2.shutdown()


def test_two_live_windows_on_one_image_keep_separate_recovery_copies(window, qtbot, small_phantom, answer_dialog):
    """No shared file: the second window writes its own slot, and closing it with no edits leaves
    the first window's autosave in place."""
    asked, _ = answer_dialog
    content_id = small_phantom.volume.content_id
    _paint(window)
    _autosave(window, qtbot)
    first = window.autosave.slot.find()
    before = first.labels_path.read_bytes()
    win2 = _second_window(qtbot, small_phantom.volume)
    qtbot.waitUntil(lambda: not win2.autosave.restore_offer_pending, timeout=5000)
    assert asked == []  # the live window's copy is not offered to another window
    assert win2.autosave.slot.name != window.autosave.slot.name
    _paint(win2, label_id=1)
    win2.doc.add_label("other")
    _autosave(win2, qtbot)
    assert first.labels_path.read_bytes() == before  # not overwritten by the other window
    win2.doc.undo()
    win2.doc.undo()
    win2.close()
    assert find_autosave(autosave_dir(), content_id) is not None  # the first window's copy survives
    assert first.labels_path.read_bytes() == before
