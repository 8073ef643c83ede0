"""Crash recovery for the window: counts label edits, writes the label map off the GUI thread every
`settings.autosave_seconds` when it changed, offers a differing autosave back when a volume opens
(one undo step), and drops it once everything was exported. The files are core.autosave's."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np
from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QLabel, QMessageBox, QWidget

from annotator.core.autosave import AutosaveInfo, AutosaveSlot, load_autosave
from annotator.core.document import AnnotationDocument
from annotator.core.errors import AnnotatorError
from annotator.core.labels import LabelMap, LabelTable
from annotator.core.volume import Volume
from annotator.qt.background import BackgroundRunner
from annotator.qt.errors import try_with_error_dialog, user_message
from annotator.qt.jobs import autosave_job
from annotator.settings import Settings, autosave_dir

log = logging.getLogger(__name__)


class AutosaveController(QObject):
    """The autosave state of the open volume: edits made, edits autosaved, edits exported."""

    def __init__(self, window: QWidget, doc: AnnotationDocument, background: BackgroundRunner, settings: Settings,
                 status_label: QLabel, show_message: Callable[[str, int], None]) -> None:
        super().__init__(window)
        self.window = window
        self.doc = doc
        self.background = background
        self.settings = settings
        self.label = status_label
        self.show_message = show_message
        self.edit_count = 0
        self.autosaved_count = 0
        self.exported_count = 0  # the labels as opened count as saved
        self._export_snapshot: tuple[Volume, int] | None = None
        self._in_flight = False
        self._restore_offer_pending = False
        self.slot: AutosaveSlot | None = None  # this window's recovery files of the open volume
        self.timer = QTimer(self)
        self.timer.setObjectName("autosave")
        self.timer.timeout.connect(self.save_now)
        self._restore_timer = QTimer(self)  # asks about an autosave once the new volume is on screen
        self._restore_timer.setObjectName("autosave-restore-offer")
        self._restore_timer.setSingleShot(True)
        self._restore_timer.setInterval(0)
        self._restore_timer.timeout.connect(self._offer_restore)
        doc.labels_changed.connect(self._on_doc_labels_edited)
        doc.table_changed.connect(self._on_doc_labels_edited)

    # ---- the document -----------------------------------------------------------------------
    def _on_doc_labels_edited(self, *_args: object) -> None:
        self.edit_count += 1

    def volume_opened(self) -> None:
        """A new volume is on screen: start counting from zero and offer its autosave, if any."""
        self.edit_count = self.autosaved_count = self.exported_count = 0
        self._export_snapshot = None
        self.label.setText("")
        self._release_slot()
        volume = self.doc.volume
        if volume is not None:
            try:
                self.slot = AutosaveSlot.claim(autosave_dir(), volume.content_id)
            except (OSError, ValueError) as exc:
                log.warning("no autosave for this window: %s", exc)
                self.label.setText("autosave off")
                self.show_message(f"Autosave is off for this window: {exc}", 10000)
        if self.settings.autosave_seconds > 0:
            self.timer.start(int(self.settings.autosave_seconds) * 1000)
        self._restore_offer_pending = True
        self._restore_timer.start()

    # ---- saving -----------------------------------------------------------------------------
    def save_now(self) -> Future | None:
        """Timer slot: save the label map off the GUI thread if it changed since the last autosave."""
        volume, slot = self.doc.volume, self.slot
        if volume is None or slot is None or self.edit_count == self.autosaved_count or self._in_flight:
            return None
        count = self.edit_count
        snapshot = self.doc.labels.array.copy()  # the user keeps painting while it is written
        table_json = self.doc.labels.table.to_json()
        self._in_flight = True
        return self.background.submit(lambda: autosave_job(slot, count, volume, snapshot, table_json),
                                      lambda saved_at: self._on_saved(volume, count, saved_at),
                                      self._on_failed)

    def _on_saved(self, volume: Volume, count: int, saved_at: float) -> None:
        self._in_flight = False
        if self.doc.volume is volume:
            self.autosaved_count = count
            self.label.setText(f"autosaved {time.strftime('%H:%M', time.localtime(saved_at))}")

    def _on_failed(self, exc: BaseException) -> None:
        self._in_flight = False
        log.warning("autosave failed: %s", exc, exc_info=exc)
        self.label.setText("autosave failed")
        self.show_message(f"Autosave failed: {user_message(exc)}", 8000)

    # ---- exports ----------------------------------------------------------------------------
    def export_started(self) -> None:
        """An export of the current labels began: if it succeeds, these edits count as saved."""
        self._export_snapshot = (self.doc.current_volume(), self.edit_count)

    def export_finished(self) -> None:
        if self._export_snapshot is not None and self._export_snapshot[0] is self.doc.volume:
            self.exported_count = self._export_snapshot[1]
        self._export_snapshot = None

    # ---- leaving the volume -----------------------------------------------------------------
    def finish(self) -> None:
        """Leaving this volume: drop its autosave if everything was exported, else save the last edits."""
        volume, slot = self.doc.volume, self.slot
        if volume is None or slot is None:
            return
        try:
            if self.edit_count == self.exported_count and not self._restore_offer_pending:
                slot.discard()  # only this window's copy: another window's stays
            elif self.edit_count != self.autosaved_count:
                # ordered after any background save still running: that older snapshot is dropped
                autosave_job(slot, self.edit_count, volume, self.doc.labels.array, self.doc.labels.table.to_json())
                self.autosaved_count = self.edit_count
        except (OSError, ValueError) as exc:
            log.warning("autosave on close failed: %s", exc)
        finally:
            self._release_slot()

    def _release_slot(self) -> None:
        if self.slot is not None:
            self.slot.release()
            self.slot = None

    @property
    def restore_offer_pending(self) -> bool:
        """True until the autosave of the volume just opened was looked at (and offered if it differs)."""
        return self._restore_offer_pending

    def stop(self) -> None:
        self.timer.stop()
        self._restore_timer.stop()

    # ---- restoring --------------------------------------------------------------------------
    def _ask_restore(self, info: AutosaveInfo) -> bool:
        saved = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.saved_at))
        box = QMessageBox(QMessageBox.Icon.Question, "Recover unsaved labels",
                          f"Labels of this image were autosaved at {saved} and differ from what is open "
                          "(the app may have closed without saving).\n\nRestore them?",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Discard, self.window)
        box.button(QMessageBox.StandardButton.Yes).setText("Restore")
        box.setDefaultButton(QMessageBox.StandardButton.Yes)
        answer = box.exec()
        box.deleteLater()
        return answer == QMessageBox.StandardButton.Yes

    def _offer_restore(self) -> None:
        """A volume just opened: if its autosave holds other labels, offer them back (one undo step)."""
        self._restore_offer_pending = False
        volume, slot = self.doc.volume, self.slot
        if volume is None or slot is None:
            return
        info = slot.find()
        if info is None:
            return
        try:
            saved_array, table_json = load_autosave(info)
            saved_labels = LabelMap(saved_array.shape, LabelTable.from_json(table_json), saved_array)
            if saved_labels.shape_zyx != self.doc.labels.shape_zyx:
                raise AnnotatorError(f"{info.labels_path}: autosave shape {saved_labels.shape_zyx} does not "
                                     f"match the image {self.doc.labels.shape_zyx}")
        except (AnnotatorError, ValueError, KeyError, TypeError) as exc:
            log.warning("autosave not restored: %s", exc)
            self.show_message(f"Autosave not restored: {user_message(exc)}", 10000)
            return
        if (np.array_equal(saved_array, self.doc.labels.array)
                and saved_labels.table.to_json() == self.doc.labels.table.to_json()):
            return  # nothing to recover
        if self._ask_restore(info):
            if self.doc.volume is not volume:
                return
            with try_with_error_dialog(self.window, "Restore autosave"):
                self.doc.replace_labels(saved_labels, "restore autosave")
                self.show_message("Restored the autosaved labels (Ctrl+Z undoes it)", 8000)
        else:
            slot.discard()
