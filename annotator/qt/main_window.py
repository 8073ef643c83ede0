"""The annotation window: composes views, panels, menus and the status bar around one
AnnotationDocument. No segmentation logic lives here; it routes user intent to the document, the
engine bridge, the file flows (qt.file_flows) and the autosave controller (qt.autosave_controller)."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QProgressBar,
    QProgressDialog,
    QWidget,
)

from annotator.core.document import AnnotationDocument
from annotator.core.geometry import CT_PRESETS, PLANES, percentile_window
from annotator.export.api import export_formats
from annotator.qt.autosave_controller import AutosaveController
from annotator.qt.background import BackgroundRunner
from annotator.qt.canvas.slice_view import SliceView
from annotator.qt.canvas.tools import TOOL_CLASSES, ToolController
from annotator.qt.dialogs.series_dialog import SeriesDialog
from annotator.qt.dialogs.shortcuts_dialog import ShortcutsDialog
from annotator.qt.engine_bridge import EngineBridge
from annotator.qt.errors import show_error, try_with_error_dialog
from annotator.qt.file_flows import FileFlows
from annotator.qt.panels.cleanup_panel import CleanupPanel
from annotator.qt.panels.engine_panel import EnginePanel
from annotator.qt.panels.history_panel import HistoryPanel
from annotator.qt.panels.labels_panel import LabelsPanel
from annotator.qt.panels.review_panel import ReviewPanel
from annotator.qt.review_controller import ReviewController
from annotator.qt.view_grid import ViewGrid
from annotator.settings import Settings

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    def __init__(self, settings: Settings | None = None, *, engine_options: dict | None = None,
                 start_engine: bool = True, engine: object | None = None) -> None:
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
        self.bridge: EngineBridge | None = None
        self.engine_panel: EnginePanel | None = None
        self.progress_dialog: QProgressDialog | None = None
        self._looks_like_ct = False
        self._build_central()
        self._build_status_bar()
        self.autosave = AutosaveController(self, self.doc, self.background, self.settings, self.autosave_label,
                                           self.statusBar().showMessage)
        self.recent_menu = QMenu("Open &recent", self)
        self.files = FileFlows(self, self.doc, self.background, self.settings, self.autosave, self.recent_menu,
                               self.statusBar().showMessage, self._set_busy_text, lambda: self.focused_view().plane)
        self.review = ReviewController(self.doc, self)
        self.review.on_leaving = self.autosave.finish
        self.review.on_committed = self._on_review_committed
        self.review_panel = ReviewPanel(self.review, self)
        self.review_dock = self._add_dock("Dataset", self.review_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.review_dock.hide()  # shown when a dataset opens
        self.cleanup_panel = CleanupPanel(self.doc, self.background, lambda: self.focused_view().axis, self)
        self.cleanup_dock = self._add_dock("Clean-up", self.cleanup_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(self.history_dock, self.cleanup_dock)
        self.history_dock.raise_()
        self.actions_by_name: dict[str, QAction] = {}
        self._build_menus()
        self._connect()
        self._on_doc_history_changed()
        self._on_doc_preview_changed()
        if start_engine:
            self.start_engine()

    # ---- construction -----------------------------------------------------------------------
    def _build_central(self) -> None:
        self.views = [SliceView(self.doc, plane, self.tools) for plane in PLANES]
        self.tools.views = self.views
        self.info = QLabel("No image open.\n\nFile → Open, or run `annotator --demo`.", self)
        self.info.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.info.setWordWrap(True)
        self.info.setObjectName("image-info")  # styled by resources/style.qss
        self.grid = ViewGrid(self.views, self.info, self)
        self.setCentralWidget(self.grid)
        self.setWindowTitle("annotator")
        self.resize(1400, 820)
        self.setAcceptDrops(True)
        self.labels_panel = LabelsPanel(self.doc, self)
        self.history_panel = HistoryPanel(self.doc, self)
        self._add_dock("Labels", self.labels_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.history_dock = self._add_dock("History", self.history_panel, Qt.DockWidgetArea.RightDockWidgetArea)

    def _build_status_bar(self) -> None:
        self.cursor_label = QLabel("", self)
        self.engine_label = QLabel("engine: none", self)
        self.busy_label = QLabel("", self)
        self.busy_bar = QProgressBar(self)  # indeterminate while a file job runs
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setMaximumWidth(120)
        self.busy_bar.hide()
        self.autosave_label = QLabel("", self)
        bar = self.statusBar()
        bar.addWidget(self.cursor_label, 1)
        bar.addPermanentWidget(self.busy_label)
        bar.addPermanentWidget(self.busy_bar)
        bar.addPermanentWidget(self.engine_label)
        bar.addPermanentWidget(self.autosave_label)

    def _connect(self) -> None:
        self.doc.status.connect(self._on_doc_status)
        self.doc.volume_changed.connect(self._on_doc_volume_changed)
        self.doc.history_changed.connect(self._on_doc_history_changed)
        self.doc.preview_changed.connect(self._on_doc_preview_changed)
        self.tools.message.connect(self._on_doc_status)
        self.tools.tool_changed.connect(self._on_tools_tool_changed)
        self.tools.brush_radius_changed.connect(self._on_tools_brush_changed)
        self.background.busy_changed.connect(self._on_background_busy_changed)
        self.review.opened.connect(self._on_review_opened)
        self.cleanup_panel.applied.connect(self._on_cleanup_applied)
        self.review.message.connect(self._on_doc_status)
        self.review.failed.connect(self._on_review_failed)
        for view in self.views:
            view.hovered.connect(self._on_view_hovered)
            view.activated.connect(self._on_view_activated)

    def _add_dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{title.lower()}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, name: str, text: str, slot: Callable[[], object],
                shortcuts: Sequence[str | QKeySequence.StandardKey] = (), menu: QMenu | None = None,
                checkable: bool = False) -> QAction:
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
        self._action("open_file", "&Open file…", self.files.ask_open_file, [QKeySequence.StandardKey.Open], file_menu)
        self._action("open_folder", "Open &folder…", self.files.ask_open_folder, ["Ctrl+Shift+O"], file_menu)
        self._action("open_demo", "Open &demo volume", self.open_demo, [], file_menu)
        self._action("open_dataset", "Open &dataset for review…", self._on_open_dataset, ["Ctrl+Shift+D"], file_menu)
        file_menu.addMenu(self.recent_menu)
        self._action("open_labels", "Open &labels…", self.files.ask_open_labels, ["Ctrl+L"], file_menu)
        file_menu.addSeparator()
        self._action("export_labels", "&Export labels (NIfTI)…", self.files.ask_export_labels, ["Ctrl+E"], file_menu)
        dataset_menu = file_menu.addMenu("Export &dataset")
        for fmt, title in export_formats().items():
            action = self._action(f"export_{fmt}", f"{title}…", self._on_export_dataset_action,
                                  [], dataset_menu)
            action.setData(fmt)
        file_menu.addSeparator()
        self._action("quit", "&Quit", self.close, [QKeySequence.StandardKey.Quit], file_menu)

        edit = bar.addMenu("&Edit")
        self._action("undo", "&Undo", self.doc.undo, ["Ctrl+Z"], edit)
        self._action("redo", "&Redo", self.doc.redo, ["Ctrl+Shift+Z", "Ctrl+Y"], edit)
        edit.addSeparator()
        self._action("accept", "&Accept mask", self._on_accept, ["Return", "Enter"], edit)
        self._action("discard", "&Discard mask and prompts", self._on_discard, ["Esc"], edit)
        self._action("next_candidate", "Next &candidate mask", self._on_next_candidate, ["Tab"], edit)
        self._action("propagate", "&Propagate through the volume", self._on_propagate, ["P"], edit)
        self._action("fill_between", "&Fill between slices (active label)", self._on_fill_between, ["I"], edit)
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

        dataset = bar.addMenu("&Dataset")
        self._action("next_case", "&Next case", lambda: self.review.step(1), ["."], dataset)
        self._action("previous_case", "&Previous case", lambda: self.review.step(-1), [","], dataset)
        self._action("save_case", "&Save case", self._on_save_case, [QKeySequence.StandardKey.Save], dataset)
        self._action("case_reviewed", "Mark case &reviewed", lambda: self.review.set_status("reviewed"), [], dataset)
        self._action("case_flagged", "&Flag case", self._on_flag_case, [], dataset)

        help_menu = bar.addMenu("&Help")
        self._action("shortcuts", "&Shortcuts", self._on_shortcuts, ["F1"], help_menu)
        self._action("plugins", "&Plugins", self._on_plugins, [], help_menu)

    # ---- engine (see engine_bridge.py) ------------------------------------------------------
    def start_engine(self) -> None:
        """Create the engine bridge; the model itself loads on its worker thread."""
        bridge = EngineBridge(self.doc, self.settings, self.engine_options, parent=self, engine=self._engine)
        self.bridge = bridge
        self.tools.bridge = bridge
        bridge.status_changed.connect(self._on_bridge_status_changed)
        bridge.error.connect(self._on_bridge_error)
        bridge.busy_text_changed.connect(self._on_bridge_busy_text)
        bridge.propagation_progress.connect(self._on_bridge_propagation_progress)
        bridge.propagation_finished.connect(self._on_bridge_propagation_finished)
        self.engine_panel = EnginePanel(bridge, self.settings, self)
        dock = self._add_dock("Engine", self.engine_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.docks_menu.addAction(dock.toggleViewAction())
        bridge.start()

    def _on_bridge_status_changed(self) -> None:
        if self.bridge is not None:
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
    def _sender_data(self) -> Any:
        """The data of the QAction whose triggered signal called the slot now running."""
        action = self.sender()
        return action.data() if isinstance(action, QAction) else None

    # ---- files (qt.file_flows) ---------------------------------------------------------------
    def open_demo(self) -> None:
        self.files.open_demo()

    def open_path(self, path: str, series_uid: str | None = None) -> None:
        self.files.open_path(path, series_uid)

    def open_labels(self, path: str) -> None:
        self.files.open_labels(path)

    def export_labels(self, path: str) -> None:
        self.files.export_labels(path)

    def export_dataset(self, fmt: str, out_dir: str) -> None:
        self.files.export_dataset(fmt, out_dir)

    def autosave_now(self) -> Future | None:
        return self.autosave.save_now()

    @property
    def autosave_timer(self) -> QTimer:
        return self.autosave.timer

    @property
    def series_dialog(self) -> SeriesDialog | None:
        return self.files.series_dialog

    def _on_export_dataset_action(self) -> None:
        self.files.ask_export_dataset(self._sender_data())

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # Qt override
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # Qt override
        urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.open_path(urls[0])

    # ---- dataset review (qt.review_controller) ----------------------------------------------
    def open_dataset(self, path: str, output: str | None = None) -> None:
        """Review a dataset; with `output`, edits are saved into a copy there, else in place."""
        self.review.open(path, output)

    def _on_open_dataset(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open dataset (nnU-Net, MONAI, image/label folders)",
                                                self.settings.last_directory or "")
        if path:
            self.settings.last_directory = path
            self.open_dataset(path)

    def _on_review_committed(self) -> None:
        self.autosave.export_started()
        self.autosave.export_finished()

    def _on_review_opened(self) -> None:
        self.review_dock.show()
        self.review_dock.raise_()
        self.cleanup_panel.apply_settings(self.review.session.settings)  # the reviewer's last choices

    def _on_cleanup_applied(self) -> None:
        if self.review.is_open:
            self.review.session.settings.update(self.cleanup_panel.settings())
            self.review.save_session()

    def _on_review_failed(self, title: str, message: str) -> None:
        show_error(self, title, message)

    def _on_save_case(self) -> None:
        if not self.review.is_open:
            self.statusBar().showMessage("Save case works on a dataset under review; use File → Export for "
                                         "a single image.", 5000)
        elif not self.review.commit_current():
            self.statusBar().showMessage("No changes to save in this case.", 3000)

    def _on_flag_case(self) -> None:
        self.review.set_status("flagged", self.review_panel.comment.text())

    def _on_fill_between(self) -> None:
        from annotator.postprocess.interpolate import fill_between_slices

        if not self.doc.has_volume or not self.doc.active_label:
            return
        axis = self.focused_view().axis
        with try_with_error_dialog(self, "Fill between slices"):
            name = self.doc.labels.table[self.doc.active_label].name
            new = fill_between_slices(self.doc.labels.array, self.doc.active_label, axis,
                                      self.doc.current_volume().spacing_zyx_mm)
            if self.doc.apply_labels(new, f"fill between slices: {name}") is None:
                self.statusBar().showMessage(f"No gaps between slices of {name} along this view.", 4000)

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
        self.tools.set_tool(self._sender_data())

    def _on_brush_smaller(self) -> None:
        self.tools.grow_brush(1 / 1.25)

    def _on_brush_bigger(self) -> None:
        self.tools.grow_brush(1.25)

    def _on_layout_action(self) -> None:
        self.grid.set_layout(self._sender_data(), self.focused_view().plane)

    def _on_fit(self) -> None:
        for view in self.views:
            view.fit()

    def _on_preset_action(self) -> None:
        self.doc.set_window(CT_PRESETS[self._sender_data()])

    def _on_auto_window(self) -> None:
        if self.doc.has_volume:
            self.doc.set_window(percentile_window(self.doc.current_volume().array))

    def _on_plugins(self) -> None:
        from annotator.plugin_host.manager import get_registry
        from annotator.qt.dialogs.plugins_dialog import PluginsDialog

        self.plugins_dialog = PluginsDialog(get_registry(), self)
        self.plugins_dialog.open()

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

    def _on_view_hovered(self, index_zyx: tuple[int, int, int] | None) -> None:
        if index_zyx is None or not self.doc.has_volume:
            self.cursor_label.setText("")
            return
        volume = self.doc.current_volume()
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
        volume = self.doc.current_volume()
        # Same rule as the default window: CT by modality, or a NIfTI whose minimum is air-like.
        self._looks_like_ct = volume.modality.upper() == "CT" or (
            not volume.modality and float(volume.array.min()) <= -500)
        z, y, x = volume.shape_zyx
        sz, sy, sx = volume.spacing_zyx_mm
        desc = volume.metadata.get("series_description") or Path(str(volume.metadata.get("source_path", ""))).name
        self.setWindowTitle(f"annotator — {desc}")
        # Text from the file (description, path, warnings) is escaped: a crafted SeriesDescription
        # must show as the characters it holds, never as markup that fakes the display.
        warnings = "<br>".join(f"⚠ {html.escape(str(w))}" for w in volume.metadata.get("warnings") or [])
        self.info.setText(
            f"<b>{html.escape(str(desc))}</b><br>Modality: {html.escape(volume.modality or 'unknown')}<br>"
            f"Size: {x} × {y} × {z} voxels<br>Spacing: {sx:.3g} × {sy:.3g} × {sz:.3g} mm<br>"
            f"Origin (LPS): {', '.join(f'{o:.1f}' for o in volume.origin_lps_mm)} mm<br>"
            f"Source: {html.escape(str(volume.metadata.get('source_path', '')))}<br>{warnings}")
        self.autosave.volume_opened()

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

    # ---- shutdown ---------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop every worker this window started (engine first: it may be mid-embedding)."""
        self.autosave.stop()
        self.review.shutdown()
        if self.bridge is not None:
            self.bridge.shutdown()
        self.background.shutdown(wait=True)
        self.labels_panel.stop_timers()
        dialog = self.files.series_dialog
        if dialog is not None:
            dialog.wait_for_thumbnails()

    def closeEvent(self, event: QCloseEvent) -> None:  # Qt override
        self.files.save_settings()
        self.review.commit_current(wait=True)
        self.autosave.timer.stop()
        self.autosave.finish()
        self.shutdown()
        super().closeEvent(event)
