"""Opening and exporting from the window: images (with the series browser for a folder of several
series), label maps, NIfTI labels and datasets, the recent-files menu and drag and drop. Every
file job runs off the GUI thread (qt.jobs through BackgroundRunner); failures become a message."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QMenu, QMessageBox, QWidget

from annotator.core.document import AnnotationDocument
from annotator.core.geometry import Window
from annotator.core.labels import LabelMap
from annotator.core.volume import Volume
from annotator.export.api import export_formats
from annotator.qt.autosave_controller import AutosaveController
from annotator.qt.background import BackgroundRunner
from annotator.qt.dialogs.series_dialog import SeriesDialog
from annotator.qt.errors import show_error, try_with_error_dialog, user_message
from annotator.qt.jobs import (
    demo_job,
    discover_job,
    export_dataset_job,
    export_labels_job,
    label_table_path,
    load_image_job,
    read_labels_job,
    series_thumbnail,
)
from annotator.settings import Settings

log = logging.getLogger(__name__)

IMAGE_FILTER = "Images (*.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd *.dcm);;All files (*)"


def label_filter() -> str:
    """The Open labels dialog's filter: every suffix of the registry's label readers."""
    from annotator.io.labels import label_file_suffixes

    return f"Label maps ({' '.join('*' + s for s in label_file_suffixes())});;All files (*)"


class FileFlows(QObject):
    """The open and export flows of one window. `show_message(text, ms)` and `set_busy(text)` are
    the window's status bar; `export_plane()` names the plane of the focused view."""

    def __init__(self, window: QWidget, doc: AnnotationDocument, background: BackgroundRunner, settings: Settings,
                 autosave: AutosaveController, recent_menu: QMenu, show_message: Callable[[str, int], None],
                 set_busy: Callable[[str], None], export_plane: Callable[[], str]) -> None:
        super().__init__(window)
        self.window = window
        self.doc = doc
        self.background = background
        self.settings = settings
        self.autosave = autosave
        self.recent_menu = recent_menu
        self.show_message = show_message
        self.set_busy = set_busy
        self.export_plane = export_plane
        self.series_dialog: SeriesDialog | None = None
        self.pending_labels: str | None = None
        self._pending_path = ""
        self.update_recent_menu()

    # ---- images -----------------------------------------------------------------------------
    def open_demo(self) -> None:
        self.set_busy("Generating the demo volume…")
        self.background.submit(demo_job, self._on_volume_loaded, self._on_load_failed)

    def open_path(self, path: str, series_uid: str | None = None) -> None:
        """Open a file or folder; a folder with several series shows the series browser first."""
        path = os.fspath(path)
        self._pending_path = path
        if os.path.isdir(path) and series_uid is None:
            self.set_busy(f"Looking for images in {path}…")
            self.background.submit(lambda: discover_job(path), self._on_series_discovered, self._on_load_failed)
            return
        self.set_busy(f"Loading {Path(path).name}…")
        self.background.submit(lambda: load_image_job(path, series_uid), self._on_volume_loaded,
                               self._on_load_failed)

    def _on_series_discovered(self, series: list) -> None:
        path = self._pending_path
        self.set_busy("")
        if not series:
            show_error(self.window, "Open folder", f"{path}: no images found")
            return
        if len(series) == 1:
            self.open_path(path, series[0].uid)
            return
        self.series_dialog = SeriesDialog(series, path, self.window, thumbnail_fn=series_thumbnail)
        self.series_dialog.accepted.connect(self._on_series_dialog_accepted)
        self.series_dialog.open()

    def _on_series_dialog_accepted(self) -> None:
        uid = self.series_dialog.chosen_uid if self.series_dialog is not None else None
        if uid is not None:
            self.open_path(self._pending_path, uid)

    def _on_volume_loaded(self, volume: Volume) -> None:
        self.set_busy("")
        self.autosave.finish()
        with try_with_error_dialog(self.window, "Open image"):
            self.doc.set_volume(volume)
            source = volume.metadata.get("source_path")
            if source and source != "demo phantom":
                self.settings.add_recent(str(source))
                self.save_settings()
                self.update_recent_menu()
            for warning in volume.metadata.get("warnings") or []:
                self.show_message(str(warning), 8000)
        if self.pending_labels:
            path, self.pending_labels = self.pending_labels, None
            self.open_labels(path)

    def _on_load_failed(self, exc: BaseException) -> None:
        self.set_busy("")
        log.warning("open failed: %s", user_message(exc), exc_info=exc)
        show_error(self.window, "Open", user_message(exc))

    def ask_open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open image", self.settings.last_directory or "",
                                              IMAGE_FILTER)
        if path:
            self.settings.last_directory = str(Path(path).parent)
            self.open_path(path)

    def ask_open_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self.window, "Open folder (DICOM)", self.settings.last_directory or "")
        if path:
            self.settings.last_directory = path
            self.open_path(path)

    def update_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.settings.recent_files:
            action = self.recent_menu.addAction(path)
            action.setData(path)
            action.triggered.connect(self._on_recent_action)
        self.recent_menu.setEnabled(bool(self.settings.recent_files))

    def _on_recent_action(self) -> None:
        action = self.sender()
        if isinstance(action, QAction):
            self.open_path(str(action.data()))

    def save_settings(self) -> None:
        try:
            self.settings.save()
        except OSError as exc:
            log.warning("settings not saved: %s", exc)

    # ---- labels in --------------------------------------------------------------------------
    def open_labels(self, path: str) -> None:
        if not self.doc.has_volume:
            show_error(self.window, "Open labels", "Open an image first; labels are loaded onto its grid.")
            return
        volume = self.doc.current_volume()
        self.set_busy(f"Reading labels {Path(path).name}…")
        self.background.submit(lambda: read_labels_job(volume, path), self._on_labels_loaded, self._on_load_failed)

    def _on_labels_loaded(self, labels: LabelMap) -> None:
        self.set_busy("")
        with try_with_error_dialog(self.window, "Open labels"):
            self.doc.replace_labels(labels)
            self.show_message(f"Loaded {len(labels.present_ids())} labels", 5000)

    def ask_open_labels(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open labels", self.settings.last_directory or "",
                                              label_filter())
        if path:
            self.open_labels(path)

    # ---- labels and datasets out ------------------------------------------------------------
    def _snapshot(self) -> LabelMap:
        labels = self.doc.labels
        return LabelMap(labels.shape_zyx, labels.table, labels.array.copy())

    def export_labels(self, path: str, *, overwrite: bool = False) -> None:
        """Write the label NIfTI and its '.json' table; existing files only with `overwrite`."""
        if not self.doc.has_volume:
            show_error(self.window, "Export labels", "Nothing to export: no image is open.")
            return
        volume, labels = self.doc.current_volume(), self._snapshot()
        self.autosave.export_started()
        self.set_busy("Exporting labels…")
        self.background.submit(lambda: export_labels_job(volume, labels, path, overwrite=overwrite),
                               self._on_exported, self._on_export_failed)

    def _on_exported(self, path: str) -> None:
        self.set_busy("")
        self.autosave.export_finished()
        self.show_message(f"Labels written to {path}", 8000)

    def _on_export_failed(self, exc: BaseException) -> None:
        self.set_busy("")
        show_error(self.window, "Export labels", user_message(exc))

    def export_dataset(self, fmt: str, out_dir: str) -> None:
        if not self.doc.has_volume:
            show_error(self.window, "Export dataset", "Nothing to export: no image is open.")
            return
        volume, labels = self.doc.current_volume(), self._snapshot()
        case_id = ""  # named from the image content: a file name so often carries the patient's
        window: Window = self.doc.window
        plane = self.export_plane()
        self.autosave.export_started()
        self.set_busy(f"Exporting {export_formats().get(fmt, fmt)}…")
        self.background.submit(lambda: export_dataset_job(fmt, volume, labels, out_dir, case_id, window, plane),
                               self._on_dataset_exported, self._on_export_failed)

    def _on_dataset_exported(self, files: list[str]) -> None:
        self.set_busy("")
        self.autosave.export_finished()
        folder = str(Path(files[0]).parent) if files else ""
        self.show_message(f"Wrote {len(files)} files to {folder}", 8000)

    def ask_export_dataset(self, fmt: str) -> None:
        out_dir = QFileDialog.getExistingDirectory(self.window, f"Export {export_formats().get(fmt, fmt)} into folder",
                                                   self.settings.last_directory or "")
        if out_dir:
            self.export_dataset(fmt, out_dir)

    def ask_export_labels(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.window, "Export labels",
                                              self.settings.last_directory or "labels.nii.gz", "NIfTI (*.nii.gz *.nii)")
        if not path:
            return
        confirmed = path  # the dialog already asked before replacing exactly this file
        if not path.endswith((".nii", ".nii.gz")):
            path += ".nii.gz"
        others = [p for p in (Path(path), label_table_path(path)) if p.exists() and str(p) != confirmed]
        if others:
            names = "\n".join(p.name for p in others)
            answer = QMessageBox.question(self.window, "Export labels",
                                          f"These files already exist in {Path(path).parent}:\n{names}\n\nReplace them?")
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.export_labels(path, overwrite=True)
