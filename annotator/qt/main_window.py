"""The annotation window: composes views, panels, menus and the status bar around one
AnnotationDocument. No segmentation logic lives here; it routes user intent to the document,
the engine bridge and the io/export modules."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QGridLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QProgressDialog,
    QWidget,
)

from annotator.core.autosave import (
    AutosaveInfo,
    discard_autosave,
    find_autosave,
    load_autosave,
    save_autosave,
)
from annotator.core.document import AnnotationDocument
from annotator.core.errors import AnnotatorError
from annotator.core.geometry import CT_PRESETS, PLANES, percentile_window, slice_2d
from annotator.core.labels import LabelMap, LabelTable
from annotator.core.volume import Volume
from annotator.qt.background import BackgroundRunner
from annotator.qt.canvas.slice_view import SliceView
from annotator.qt.canvas.tools import TOOL_CLASSES, ToolController
from annotator.qt.dialogs.series_dialog import SeriesDialog
from annotator.qt.dialogs.shortcuts_dialog import ShortcutsDialog
from annotator.qt.errors import show_error, try_with_error_dialog, user_message
from annotator.qt.panels.history_panel import HistoryPanel
from annotator.qt.panels.labels_panel import LabelsPanel
from annotator.settings import Settings, autosave_dir

log = logging.getLogger(__name__)

LAYOUTS = ("1x3", "single", "2x2")
IMAGE_FILTER = "Images (*.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd *.dcm);;All files (*)"
LABEL_FILTER = "Label maps (*.nii *.nii.gz *.nrrd *.mha);;All files (*)"


def load_image_job(path: str, series_uid: str | None) -> Volume:
    from annotator.io import load_volume

    volume = load_volume(path, series_uid=series_uid)
    _ = volume.content_id  # hash the voxels here, not later on the GUI thread (embedding cache key)
    return volume


def demo_job() -> Volume:
    from annotator.core.phantom import demo_volume

    volume = demo_volume()
    _ = volume.content_id
    return volume


def discover_job(path: str) -> list:
    from annotator.io import discover_series

    return discover_series(path)


def series_thumbnail(series) -> np.ndarray:  # noqa: ANN001 - io.SeriesInfo
    """Middle axial-array slice of a series (loads it; runs in the dialog's worker thread)."""
    volume = load_image_job(series.source_path, series.uid)
    return slice_2d(volume.array, 0, volume.shape_zyx[0] // 2)


def read_labels_job(volume: Volume, path: str) -> LabelMap:
    from annotator.io import read_labels_onto

    return read_labels_onto(volume, path)


def autosave_job(volume: Volume, label_array: np.ndarray, table_json: list) -> float:
    """Write the crash-recovery copy of a label map snapshot; returns when it was saved."""
    save_autosave(autosave_dir(), volume.content_id, str(volume.metadata.get("source_path") or ""),
                  label_array, table_json)
    return time.time()


def export_labels_job(volume: Volume, labels: LabelMap, path: str) -> str:
    """Label map as NIfTI on the source grid, plus '<name>.json' naming the values (atomic writes)."""
    import json

    from annotator.core.atomic import atomic_write_text
    from annotator.export.nifti import write_label_nifti

    out = write_label_nifti(volume, labels, Path(path), overwrite=True)
    name = Path(out).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    atomic_write_text(Path(out).with_name(f"{name}.json"), json.dumps(labels.table.to_json(), indent=2))
    return str(out)


EXPORT_FORMATS = ("nifti", "coco", "nnunet", "dicom-seg", "datalist", "yolo")  # as annotator.export.api.FORMATS
EXPORT_TITLES = {"nifti": "NIfTI label map", "coco": "COCO (2-D slices)", "nnunet": "nnU-Net v2",
                 "dicom-seg": "DICOM SEG", "datalist": "MONAI datalist", "yolo": "YOLO segmentation"}


def export_dataset_job(fmt: str, volume: Volume, labels: LabelMap, out_dir: str, case_id: str,
                       window, plane: str) -> list[str]:  # noqa: ANN001
    """One case in one dataset format through annotator.export (never overwrites)."""
    from annotator.export.api import ExportSpec, export_volume

    spec = ExportSpec(case_id=case_id, window=window, plane=plane)
    result = export_volume(fmt, volume, labels, out_dir, spec)
    return [str(p) for p in result.files]


class ViewGrid(QWidget):
    """The three planes in one of the layouts; the info panel fills the fourth cell of 2x2."""

    def __init__(self, views: list[SliceView], info: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.views = views
        self.info = info
        self.layout_name = "1x3"
        self.focus_plane = "axial"
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(2)
        self.set_layout("1x3")

    def set_layout(self, name: str, focus_plane: str | None = None) -> None:
        if name not in LAYOUTS:
            raise ValueError(f"unknown layout {name!r}; expected one of {LAYOUTS}")
        self.layout_name = name
        if focus_plane:
            self.focus_plane = focus_plane
        for w in [*self.views, self.info]:
            self._grid.removeWidget(w)
            w.hide()
        for r in range(2):
            self._grid.setRowStretch(r, 0)
        for c in range(3):
            self._grid.setColumnStretch(c, 0)
        if name == "single":
            view = next(v for v in self.views if v.plane == self.focus_plane)
            self._grid.addWidget(view, 0, 0)
            self._grid.setRowStretch(0, 1)
            self._grid.setColumnStretch(0, 1)
            placed = [view]
        elif name == "1x3":
            for col, view in enumerate(self.views):
                self._grid.addWidget(view, 0, col)
                self._grid.setColumnStretch(col, 1)
            self._grid.setRowStretch(0, 1)
            placed = list(self.views)
        else:
            cells = [(0, 0), (0, 1), (1, 0)]
            for (r, c), view in zip(cells, self.views, strict=True):
                self._grid.addWidget(view, r, c)
            self._grid.addWidget(self.info, 1, 1)
            for i in range(2):
                self._grid.setRowStretch(i, 1)
                self._grid.setColumnStretch(i, 1)
            placed = [*self.views, self.info]
        for w in placed:
            w.show()
        for view in self.views:
            if view.isVisible():
                QTimer.singleShot(0, view.fit)


class MainWindow(QMainWindow):
    def __init__(self, settings: Settings | None = None, *, engine_options: dict | None = None,
                 start_engine: bool = True, engine=None) -> None:  # noqa: ANN001
        """engine_options: engine/checkpoint/runtime from the command line; engine: a ready
        PromptEngine to use instead of loading one (tests)."""
        super().__init__()
        self._engine = engine
        self.settings = settings or Settings()
        self.engine_options = engine_options or {}
        self.last_error: str | None = None
        self.doc = AnnotationDocument()
        self.background = BackgroundRunner(self)
        self.tools = ToolController(self.doc, self)
        self.views = [SliceView(self.doc, plane, self.tools) for plane in PLANES]
        self.tools.views = self.views
        self.info = QLabel("No image open.\n\nFile → Open, or run `annotator --demo`.", self)
        self.info.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.info.setWordWrap(True)
        self.info.setStyleSheet("QLabel { background: #202020; color: #dddddd; padding: 10px; }")
        self.grid = ViewGrid(self.views, self.info, self)
        self.setCentralWidget(self.grid)
        self.setWindowTitle("annotator")
        self.resize(1400, 820)
        self.setAcceptDrops(True)

        self.labels_panel = LabelsPanel(self.doc, self)
        self.history_panel = HistoryPanel(self.doc, self)
        self._add_dock("Labels", self.labels_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self._add_dock("History", self.history_panel, Qt.DockWidgetArea.RightDockWidgetArea)

        self.cursor_label = QLabel("", self)
        self.engine_label = QLabel("engine: none", self)
        self.busy_label = QLabel("", self)
        self.busy_bar = QProgressBar(self)  # indeterminate while a file job runs
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setMaximumWidth(120)
        self.busy_bar.hide()
        self.statusBar().addWidget(self.cursor_label, 1)
        self.statusBar().addPermanentWidget(self.busy_label)
        self.statusBar().addPermanentWidget(self.busy_bar)
        self.statusBar().addPermanentWidget(self.engine_label)
        self.autosave_label = QLabel("", self)
        self.statusBar().addPermanentWidget(self.autosave_label)

        # Autosave: edits are counted; the timer saves when the count moved since the last save.
        self._edit_count = 0
        self._autosaved_count = 0
        self._exported_count = 0  # the labels as opened count as saved
        self._export_snapshot: tuple[Volume, int] | None = None
        self._autosave_in_flight = False
        self._restore_offer_pending = False
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setObjectName("autosave")
        self.autosave_timer.timeout.connect(self.autosave_now)
        self._restore_timer = QTimer(self)  # asks about an autosave once the new volume is on screen
        self._restore_timer.setObjectName("autosave-restore-offer")
        self._restore_timer.setSingleShot(True)
        self._restore_timer.setInterval(0)
        self._restore_timer.timeout.connect(self._offer_autosave_restore)

        self.actions_by_name: dict[str, QAction] = {}
        self._build_menus()

        self.bridge = None
        self.engine_panel = None
        self.progress_dialog: QProgressDialog | None = None
        self._looks_like_ct = False
        self.doc.status.connect(self._on_doc_status)
        self.doc.volume_changed.connect(self._on_doc_volume_changed)
        self.doc.history_changed.connect(self._on_doc_history_changed)
        self.doc.preview_changed.connect(self._on_doc_preview_changed)
        self.doc.labels_changed.connect(self._on_doc_labels_edited)
        self.doc.table_changed.connect(self._on_doc_labels_edited)
        self.tools.message.connect(self._on_doc_status)
        self.tools.tool_changed.connect(self._on_tools_tool_changed)
        self.tools.brush_radius_changed.connect(self._on_tools_brush_changed)
        self.background.busy_changed.connect(self._on_background_busy_changed)
        for view in self.views:
            view.hovered.connect(self._on_view_hovered)
            view.activated.connect(self._on_view_activated)
        self._on_doc_history_changed()
        self._on_doc_preview_changed()
        if start_engine:
            self.start_engine()

    # ---- construction -----------------------------------------------------------------------
    def _add_dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{title.lower()}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, name: str, text: str, slot, shortcuts=(), menu=None, checkable=False) -> QAction:  # noqa: ANN001
        action = QAction(text, self)
        action.setObjectName(name)
        if shortcuts:
            action.setShortcuts([QKeySequence(s) for s in shortcuts])
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        self.addAction(action)
        if menu is not None:
            menu.addAction(action)
        self.actions_by_name[name] = action
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action("open_file", "&Open file…", self._on_open_file, [QKeySequence.StandardKey.Open], file_menu)
        self._action("open_folder", "Open &folder…", self._on_open_folder, ["Ctrl+Shift+O"], file_menu)
        self._action("open_demo", "Open &demo volume", self.open_demo, [], file_menu)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self._action("open_labels", "Open &labels…", self._on_open_labels, ["Ctrl+L"], file_menu)
        file_menu.addSeparator()
        self._action("export_labels", "&Export labels (NIfTI)…", self._on_export_labels, ["Ctrl+E"], file_menu)
        dataset_menu = file_menu.addMenu("Export &dataset")
        for fmt in EXPORT_FORMATS:
            action = self._action(f"export_{fmt}", f"{EXPORT_TITLES.get(fmt, fmt)}…", self._on_export_dataset_action,
                                  [], dataset_menu)
            action.setData(fmt)
        file_menu.addSeparator()
        self._action("quit", "&Quit", self.close, [QKeySequence.StandardKey.Quit], file_menu)
        self._update_recent_menu()

        edit = bar.addMenu("&Edit")
        self._action("undo", "&Undo", self.doc.undo, ["Ctrl+Z"], edit)
        self._action("redo", "&Redo", self.doc.redo, ["Ctrl+Shift+Z", "Ctrl+Y"], edit)
        edit.addSeparator()
        self._action("accept", "&Accept mask", self._on_accept, ["Return", "Enter"], edit)
        self._action("discard", "&Discard mask and prompts", self._on_discard, ["Esc"], edit)
        self._action("next_candidate", "Next &candidate mask", self._on_next_candidate, ["Tab"], edit)
        self._action("propagate", "&Propagate through the volume", self._on_propagate, ["P"], edit)
        edit.addSeparator()
        self._action("add_label", "Add &label", self._on_add_label, ["Ctrl+N"], edit)

        tools_menu = bar.addMenu("&Tools")
        group = QActionGroup(self)
        for cls in TOOL_CLASSES:
            action = self._action(f"tool_{cls.name}", cls.title, self._on_tool_action, [cls.shortcut],
                                  tools_menu, checkable=True)
            action.setData(cls.name)
            group.addAction(action)
        self.actions_by_name[f"tool_{self.tools.active_name}"].setChecked(True)
        tools_menu.addSeparator()
        self._action("brush_smaller", "Brush smaller", self._on_brush_smaller, ["["], tools_menu)
        self._action("brush_bigger", "Brush bigger", self._on_brush_bigger, ["]"], tools_menu)

        view_menu = bar.addMenu("&View")
        layouts = QActionGroup(self)
        for key, name, text in (("1", "single", "One large view"), ("3", "1x3", "1 × 3"), ("4", "2x2", "2 × 2")):
            action = self._action(f"layout_{name}", f"Layout: {text}", self._on_layout_action, [f"Ctrl+{key}"],
                                  view_menu, checkable=True)
            action.setData(name)
            layouts.addAction(action)
        self.actions_by_name["layout_1x3"].setChecked(True)
        self._action("fit", "Reset zoom", self._on_fit, ["Home"], view_menu)
        view_menu.addSeparator()
        presets = view_menu.addMenu("Window / level")
        for i, name in enumerate(CT_PRESETS, start=1):
            action = self._action(f"preset_{name}", f"CT {name}", self._on_preset_action, [f"Alt+{i}"], presets)
            action.setData(name)
        self._action("preset_auto", "Auto (percentiles, MR)", self._on_auto_window, ["Alt+0"], presets)
        self.docks_menu = view_menu.addMenu("Panels")
        for dock in self.findChildren(QDockWidget):
            self.docks_menu.addAction(dock.toggleViewAction())

        help_menu = bar.addMenu("&Help")
        self._action("shortcuts", "&Shortcuts", self._on_shortcuts, ["F1"], help_menu)

    # ---- engine (see engine_bridge.py) ------------------------------------------------------
    def start_engine(self) -> None:
        """Create the engine bridge; the model itself loads on its worker thread."""
        try:
            from annotator.qt.engine_bridge import EngineBridge
            from annotator.qt.panels.engine_panel import EnginePanel
        except ImportError as exc:  # the bridge is optional while the engine is being built
            log.info("engine bridge unavailable: %s", exc)
            return
        self.bridge = EngineBridge(self.doc, self.settings, self.engine_options, parent=self,
                                   engine=self._engine)
        self.tools.bridge = self.bridge
        self.bridge.status_changed.connect(self._on_bridge_status_changed)
        self.bridge.error.connect(self._on_bridge_error)
        self.bridge.busy_text_changed.connect(self._on_bridge_busy_text)
        self.bridge.propagation_progress.connect(self._on_bridge_propagation_progress)
        self.bridge.propagation_finished.connect(self._on_bridge_propagation_finished)
        self.engine_panel = EnginePanel(self.bridge, self.settings, self)
        dock = self._add_dock("Engine", self.engine_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.docks_menu.addAction(dock.toggleViewAction())
        self.bridge.start()

    def _on_bridge_status_changed(self) -> None:
        self.engine_label.setText(self.bridge.summary())

    def _on_bridge_propagation_progress(self, done: int, total: int) -> None:
        if self.progress_dialog is None:
            self.progress_dialog = QProgressDialog("Propagating through the volume…", "Cancel", 0, 100, self)
            self.progress_dialog.setObjectName("propagation-progress")
            self.progress_dialog.setWindowModality(Qt.WindowModality.NonModal)
            self.progress_dialog.setMinimumDuration(0)
            self.progress_dialog.canceled.connect(self._on_progress_canceled)
            self.progress_dialog.show()
        self.progress_dialog.setMaximum(max(total, 1))
        self.progress_dialog.setValue(min(done, max(total, 1)))

    def _on_progress_canceled(self) -> None:
        if self.bridge is not None:
            self.bridge.cancel_propagation()

    def _on_bridge_propagation_finished(self, reason: str) -> None:
        if self.progress_dialog is not None:
            dialog, self.progress_dialog = self.progress_dialog, None
            dialog.canceled.disconnect(self._on_progress_canceled)
            dialog.close()
            dialog.deleteLater()
            # Hand the activation back, so Enter/P/Esc work at once without a click into the
            # window (a closed dialog leaves no active window on some platforms).
            self.activateWindow()
            if self.windowHandle() is not None:
                self.windowHandle().requestActivate()
        if reason == "cancelled":
            self.statusBar().showMessage("Propagation cancelled; the labels were not changed.", 5000)

    def _on_bridge_error(self, message: str) -> None:
        show_error(self, "Segmentation engine", message)

    def _on_bridge_busy_text(self, axis: int, text: str) -> None:
        for view in self.views:
            if view.axis == axis:
                view.set_status_text(text)

    # ---- opening ----------------------------------------------------------------------------
    def open_demo(self) -> None:
        self._set_busy_text("Generating the demo volume…")
        self.background.submit(demo_job, self._on_volume_loaded, self._on_load_failed)

    def open_path(self, path: str, series_uid: str | None = None) -> None:
        """Open a file or folder; a folder with several series shows the series browser first."""
        path = os.fspath(path)
        self._pending_path = path
        if os.path.isdir(path) and series_uid is None:
            self._set_busy_text(f"Looking for images in {path}…")
            self.background.submit(lambda: discover_job(path), self._on_series_discovered, self._on_load_failed)
            return
        self._set_busy_text(f"Loading {Path(path).name}…")
        self.background.submit(lambda: load_image_job(path, series_uid), self._on_volume_loaded,
                               self._on_load_failed)

    def _on_series_discovered(self, series: list) -> None:
        path = self._pending_path
        self._set_busy_text("")
        if not series:
            show_error(self, "Open folder", f"{path}: no images found")
            return
        if len(series) == 1:
            self.open_path(path, series[0].uid)
            return
        self.series_dialog = SeriesDialog(series, path, self, thumbnail_fn=series_thumbnail)
        self.series_dialog.accepted.connect(self._on_series_dialog_accepted)
        self.series_dialog.open()

    def _on_series_dialog_accepted(self) -> None:
        uid = self.series_dialog.chosen_uid
        if uid is not None:
            self.open_path(self._pending_path, uid)

    def _on_volume_loaded(self, volume: Volume) -> None:
        self._set_busy_text("")
        self._finish_autosave()
        with try_with_error_dialog(self, "Open image"):
            self.doc.set_volume(volume)
            source = volume.metadata.get("source_path")
            if source and source != "demo phantom":
                self.settings.add_recent(str(source))
                self._save_settings()
                self._update_recent_menu()
            for warning in volume.metadata.get("warnings") or []:
                self.statusBar().showMessage(str(warning), 8000)

    def _on_load_failed(self, exc: BaseException) -> None:
        self._set_busy_text("")
        log.warning("open failed: %s", user_message(exc), exc_info=exc)
        show_error(self, "Open", user_message(exc))

    def _on_open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", self.settings.last_directory or "", IMAGE_FILTER)
        if path:
            self.settings.last_directory = str(Path(path).parent)
            self.open_path(path)

    def _on_open_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open folder (DICOM)", self.settings.last_directory or "")
        if path:
            self.settings.last_directory = path
            self.open_path(path)

    def _update_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.settings.recent_files:
            action = self.recent_menu.addAction(path)
            action.setData(path)
            action.triggered.connect(self._on_recent_action)
        self.recent_menu.setEnabled(bool(self.settings.recent_files))

    def _on_recent_action(self) -> None:
        self.open_path(self.sender().data())

    def _save_settings(self) -> None:
        try:
            self.settings.save()
        except OSError as exc:
            log.warning("settings not saved: %s", exc)

    def dragEnterEvent(self, event) -> None:  # noqa: ANN001, N802 - Qt override
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: ANN001, N802 - Qt override
        urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.open_path(urls[0])

    # ---- labels in / out --------------------------------------------------------------------
    def open_labels(self, path: str) -> None:
        if not self.doc.has_volume:
            show_error(self, "Open labels", "Open an image first; labels are loaded onto its grid.")
            return
        volume = self.doc.volume
        self._set_busy_text(f"Reading labels {Path(path).name}…")
        self.background.submit(lambda: read_labels_job(volume, path), self._on_labels_loaded, self._on_load_failed)

    def _open_pending_labels(self) -> None:
        path = getattr(self, "_pending_labels", None)
        self._pending_labels = None
        if path:
            self.open_labels(path)

    def _on_labels_loaded(self, labels: LabelMap) -> None:
        self._set_busy_text("")
        with try_with_error_dialog(self, "Open labels"):
            self.doc.replace_labels(labels)
            self.statusBar().showMessage(f"Loaded {len(labels.present_ids())} labels", 5000)

    def _on_open_labels(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open labels", self.settings.last_directory or "", LABEL_FILTER)
        if path:
            self.open_labels(path)

    def export_labels(self, path: str) -> None:
        if not self.doc.has_volume:
            show_error(self, "Export labels", "Nothing to export: no image is open.")
            return
        volume = self.doc.volume
        labels = LabelMap(self.doc.labels.shape_zyx, self.doc.labels.table, self.doc.labels.array.copy())
        self._export_snapshot = (volume, self._edit_count)
        self._set_busy_text("Exporting labels…")
        self.background.submit(lambda: export_labels_job(volume, labels, path), self._on_exported,
                               self._on_export_failed)

    def _on_exported(self, path: str) -> None:
        self._set_busy_text("")
        self._mark_exported()
        self.statusBar().showMessage(f"Labels written to {path}", 8000)

    def _on_export_failed(self, exc: BaseException) -> None:
        self._set_busy_text("")
        show_error(self, "Export labels", user_message(exc))

    def export_dataset(self, fmt: str, out_dir: str) -> None:
        if not self.doc.has_volume:
            show_error(self, "Export dataset", "Nothing to export: no image is open.")
            return
        volume = self.doc.volume
        labels = LabelMap(self.doc.labels.shape_zyx, self.doc.labels.table, self.doc.labels.array.copy())
        source = str(volume.metadata.get("source_path") or "case")
        case_id = Path(source).name.split(".")[0] or "case"
        window, plane = self.doc.window, self.focused_view().plane
        self._export_snapshot = (volume, self._edit_count)
        self._set_busy_text(f"Exporting {EXPORT_TITLES.get(fmt, fmt)}…")
        self.background.submit(lambda: export_dataset_job(fmt, volume, labels, out_dir, case_id, window, plane),
                               self._on_dataset_exported, self._on_export_failed)

    def _on_dataset_exported(self, files: list[str]) -> None:
        self._set_busy_text("")
        self._mark_exported()
        folder = str(Path(files[0]).parent) if files else ""
        self.statusBar().showMessage(f"Wrote {len(files)} files to {folder}", 8000)

    def _on_export_dataset_action(self) -> None:
        fmt = self.sender().data()
        out_dir = QFileDialog.getExistingDirectory(self, f"Export {EXPORT_TITLES.get(fmt, fmt)} into folder",
                                                   self.settings.last_directory or "")
        if out_dir:
            self.export_dataset(fmt, out_dir)

    def _on_export_labels(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export labels", self.settings.last_directory or "labels.nii.gz",
                                              "NIfTI (*.nii.gz *.nii)")
        if path:
            if not path.endswith((".nii", ".nii.gz")):
                path += ".nii.gz"
            self.export_labels(path)

    # ---- editing ----------------------------------------------------------------------------
    def _on_accept(self) -> None:
        with try_with_error_dialog(self, "Accept mask"):
            if self.doc.accept_preview() is None and self.doc.preview is None:
                self.statusBar().showMessage("Nothing to accept: draw a box or click first.", 3000)

    def _on_discard(self) -> None:
        self.doc.discard_preview()
        if self.bridge is not None:
            self.bridge.discard()

    def _on_next_candidate(self) -> None:
        self.doc.cycle_candidate(1)

    def _on_propagate(self) -> None:
        if self.bridge is None:
            show_error(self, "Propagate", "No segmentation engine is loaded.")
            return
        with try_with_error_dialog(self, "Propagate"):
            self.bridge.propagate(self.focused_view().axis)

    def _on_add_label(self) -> None:
        if self.doc.has_volume:
            self.doc.add_label()

    def _on_tool_action(self) -> None:
        self.tools.set_tool(self.sender().data())

    def _on_brush_smaller(self) -> None:
        self.tools.grow_brush(1 / 1.25)

    def _on_brush_bigger(self) -> None:
        self.tools.grow_brush(1.25)

    def _on_layout_action(self) -> None:
        self.grid.set_layout(self.sender().data(), self.focused_view().plane)

    def _on_fit(self) -> None:
        for view in self.views:
            view.fit()

    def _on_preset_action(self) -> None:
        self.doc.set_window(CT_PRESETS[self.sender().data()])

    def _on_auto_window(self) -> None:
        if self.doc.has_volume:
            self.doc.set_window(percentile_window(self.doc.volume.array))

    def _on_shortcuts(self) -> None:
        self.shortcuts_dialog = ShortcutsDialog(list(self.actions_by_name.values()), self)
        self.shortcuts_dialog.open()

    def focused_view(self) -> SliceView:
        focused = [v for v in self.views if v.hasFocus()]
        if focused:
            return focused[0]
        return next((v for v in self.views if v.plane == self.grid.focus_plane), self.views[0])

    # ---- model -> window --------------------------------------------------------------------
    def _on_view_activated(self, axis: int) -> None:
        view = next(v for v in self.views if v.axis == axis)
        self.grid.focus_plane = view.plane
        if self.bridge is not None:
            self.bridge.set_active_axis(axis)

    def _on_view_hovered(self, index_zyx) -> None:  # noqa: ANN001
        if index_zyx is None or not self.doc.has_volume:
            self.cursor_label.setText("")
            return
        volume = self.doc.volume
        world = volume.index_zyx_to_world_ras(np.array(index_zyx, dtype=float))
        value = volume.array[tuple(index_zyx)]
        unit = " HU" if self._looks_like_ct else ""
        label_id = int(self.doc.labels.array[tuple(index_zyx)])
        label = self.doc.labels.table[label_id].name if label_id in self.doc.labels.table else ""
        z, y, x = index_zyx
        self.cursor_label.setText(
            f"voxel (x {x}, y {y}, z {z})   RAS ({world[0]:.1f}, {world[1]:.1f}, {world[2]:.1f}) mm   "
            f"value {float(value):g}{unit}" + (f"   label: {label}" if label else ""))

    def _on_doc_volume_changed(self) -> None:
        volume = self.doc.volume
        # Same rule as the default window: CT by modality, or a NIfTI whose minimum is air-like.
        self._looks_like_ct = volume.modality.upper() == "CT" or (
            not volume.modality and float(volume.array.min()) <= -500)
        z, y, x = volume.shape_zyx
        sz, sy, sx = volume.spacing_zyx_mm
        desc = volume.metadata.get("series_description") or Path(str(volume.metadata.get("source_path", ""))).name
        self.setWindowTitle(f"annotator — {desc}")
        warnings = "\n".join(f"⚠ {w}" for w in volume.metadata.get("warnings") or [])
        self.info.setText(
            f"<b>{desc}</b><br>Modality: {volume.modality or 'unknown'}<br>"
            f"Size: {x} × {y} × {z} voxels<br>Spacing: {sx:.3g} × {sy:.3g} × {sz:.3g} mm<br>"
            f"Origin (LPS): {', '.join(f'{o:.1f}' for o in volume.origin_lps_mm)} mm<br>"
            f"Source: {volume.metadata.get('source_path', '')}<br>{warnings}")
        self._edit_count = self._autosaved_count = self._exported_count = 0
        self._export_snapshot = None
        self.autosave_label.setText("")
        if self.settings.autosave_seconds > 0:
            self.autosave_timer.start(int(self.settings.autosave_seconds) * 1000)
        self._restore_offer_pending = True
        self._restore_timer.start()

    def _on_doc_history_changed(self) -> None:
        self.actions_by_name["undo"].setEnabled(self.doc.history.can_undo)
        self.actions_by_name["redo"].setEnabled(self.doc.history.can_redo)

    def _on_doc_preview_changed(self) -> None:
        preview = self.doc.preview
        if preview is not None and preview.candidate_count > 1:
            self.statusBar().showMessage(
                f"Candidate {preview.chosen + 1}/{preview.candidate_count} (Tab for the next); "
                "Enter accepts, Esc discards", 5000)

    def _on_doc_status(self, text: str) -> None:
        self.statusBar().showMessage(text, 5000)

    def _on_tools_tool_changed(self, name: str) -> None:
        self.actions_by_name[f"tool_{name}"].setChecked(True)
        self.statusBar().showMessage(f"Tool: {self.tools.active.title}", 2000)

    def _on_tools_brush_changed(self, radius: float) -> None:
        self.statusBar().showMessage(f"Brush radius {radius:.1f} px", 2000)

    def _on_background_busy_changed(self, busy: bool) -> None:
        self.busy_bar.setVisible(busy)
        if not busy:
            self.busy_label.setText("")

    def _set_busy_text(self, text: str) -> None:
        self.busy_label.setText(text)

    # ---- autosave / crash recovery -----------------------------------------------------------
    def _on_doc_labels_edited(self, *_args) -> None:  # noqa: ANN002
        self._edit_count += 1

    def autosave_now(self):  # noqa: ANN201 - concurrent.futures.Future | None
        """Timer slot: save the label map off the GUI thread if it changed since the last autosave."""
        volume = self.doc.volume
        if volume is None or self._edit_count == self._autosaved_count or self._autosave_in_flight:
            return None
        count = self._edit_count
        snapshot = self.doc.labels.array.copy()  # the user keeps painting while it is written
        table_json = self.doc.labels.table.to_json()
        self._autosave_in_flight = True
        return self.background.submit(lambda: autosave_job(volume, snapshot, table_json),
                                      lambda saved_at: self._on_autosaved(volume, count, saved_at),
                                      self._on_autosave_failed)

    def _on_autosaved(self, volume: Volume, count: int, saved_at: float) -> None:
        self._autosave_in_flight = False
        if self.doc.volume is volume:
            self._autosaved_count = count
            self.autosave_label.setText(f"autosaved {time.strftime('%H:%M', time.localtime(saved_at))}")

    def _on_autosave_failed(self, exc: BaseException) -> None:
        self._autosave_in_flight = False
        log.warning("autosave failed: %s", exc, exc_info=exc)
        self.autosave_label.setText("autosave failed")
        self.statusBar().showMessage(f"Autosave failed: {user_message(exc)}", 8000)

    def _mark_exported(self) -> None:
        if self._export_snapshot is not None and self._export_snapshot[0] is self.doc.volume:
            self._exported_count = self._export_snapshot[1]
        self._export_snapshot = None

    def _finish_autosave(self) -> None:
        """Leaving this volume: drop its autosave if everything was exported, else save the last edits."""
        volume = self.doc.volume
        if volume is None:
            return
        try:
            if self._edit_count == self._exported_count and not self._restore_offer_pending:
                discard_autosave(autosave_dir(), volume.content_id)
            elif self._edit_count != self._autosaved_count:
                autosave_job(volume, self.doc.labels.array, self.doc.labels.table.to_json())
                self._autosaved_count = self._edit_count
        except (OSError, ValueError) as exc:
            log.warning("autosave on close failed: %s", exc)

    def _ask_restore_autosave(self, info: AutosaveInfo) -> bool:
        saved = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.saved_at))
        box = QMessageBox(QMessageBox.Icon.Question, "Recover unsaved labels",
                          f"Labels of this image were autosaved at {saved} and differ from what is open "
                          "(the app may have closed without saving).\n\nRestore them?",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Discard, self)
        box.button(QMessageBox.StandardButton.Yes).setText("Restore")
        box.setDefaultButton(QMessageBox.StandardButton.Yes)
        answer = box.exec()
        box.deleteLater()
        return answer == QMessageBox.StandardButton.Yes

    def _offer_autosave_restore(self) -> None:
        """A volume just opened: if its autosave holds other labels, offer them back (one undo step)."""
        self._restore_offer_pending = False
        volume = self.doc.volume
        if volume is None:
            return
        info = find_autosave(autosave_dir(), volume.content_id)
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
            self.statusBar().showMessage(f"Autosave not restored: {user_message(exc)}", 10000)
            return
        if (np.array_equal(saved_array, self.doc.labels.array)
                and saved_labels.table.to_json() == self.doc.labels.table.to_json()):
            return  # nothing to recover
        if self._ask_restore_autosave(info):
            if self.doc.volume is not volume:
                return
            with try_with_error_dialog(self, "Restore autosave"):
                self.doc.replace_labels(saved_labels, "restore autosave")
                self.statusBar().showMessage("Restored the autosaved labels (Ctrl+Z undoes it)", 8000)
        else:
            discard_autosave(autosave_dir(), volume.content_id)

    # ---- shutdown ---------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop every worker this window started (engine first: it may be mid-embedding)."""
        self.autosave_timer.stop()
        self._restore_timer.stop()
        if self.bridge is not None:
            self.bridge.shutdown()
        self.background.shutdown(wait=True)
        self.labels_panel.stop_timers()
        dialog = getattr(self, "series_dialog", None)
        if dialog is not None:
            dialog.wait_for_thumbnails()

    def closeEvent(self, event) -> None:  # noqa: ANN001, N802 - Qt override
        self._save_settings()
        self.autosave_timer.stop()
        self._finish_autosave()
        self.shutdown()
        super().closeEvent(event)


def run_app(args) -> int:  # noqa: ANN001 - argparse.Namespace from annotator.app
    """Open the window (on args.path or the demo volume) and run the event loop."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("annotator")
    settings = Settings.load()
    engine_options = {k: getattr(args, k, None) for k in ("engine", "checkpoint", "runtime")}
    window = MainWindow(settings, engine_options={k: v for k, v in engine_options.items() if v})
    window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    window.show()
    if getattr(args, "path", None):
        window.open_path(args.path)
        if getattr(args, "labels", None):
            window._pending_labels = args.labels
            window.doc.volume_changed.connect(window._open_pending_labels)
    elif getattr(args, "demo", False):
        window.open_demo()
    app.aboutToQuit.connect(window.shutdown)
    return int(app.exec())
