"""Series browser: when a folder holds several images, the user picks one by description,
modality, size, slice count and a thumbnail of its middle slice."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from annotator.core.geometry import apply_window, percentile_window
from annotator.io.series import SeriesInfo
from annotator.qt.background import BackgroundRunner

log = logging.getLogger(__name__)
THUMB = 96


def thumbnail_icon(slice_hw: np.ndarray) -> QIcon:
    """A THUMB-sized icon of a 2-D slice, auto-windowed."""
    pixels = np.asarray(slice_hw, dtype=np.float32)
    grey = np.ascontiguousarray(apply_window(pixels, percentile_window(pixels, 1, 99)))
    image = QImage(grey.data, grey.shape[1], grey.shape[0], grey.strides[0], QImage.Format.Format_Grayscale8)
    return QIcon(QPixmap.fromImage(image.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio)))


class SeriesDialog(QDialog):
    """Table of the series in a folder; `chosen_uid` after accept()."""

    COLUMNS = ("", "Description", "Modality", "Size (x×y×z)", "Slices", "Spacing (mm)", "Orientation")

    def __init__(self, series: list, folder: str, parent: QWidget | None = None,
                 thumbnail_fn: Callable[[SeriesInfo], np.ndarray] | None = None) -> None:
        """thumbnail_fn(series_info) -> (H, W) middle slice; it runs off the GUI thread."""
        super().__init__(parent)
        self.setWindowTitle("Choose a series")
        self.series = list(series)
        self.chosen_uid: str | None = None
        self.table = QTableWidget(len(self.series), len(self.COLUMNS), self)
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setIconSize(QSize(THUMB, THUMB))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        for row, info in enumerate(self.series):
            z, y, x = info.shape_zyx
            sz, sy, sx = info.spacing_zyx_mm
            thumb = QTableWidgetItem("")
            cells = [thumb, QTableWidgetItem(info.description or "(no description)"),
                     QTableWidgetItem(info.modality or "?"), QTableWidgetItem(f"{x}×{y}×{z}"),
                     QTableWidgetItem(str(z if info.n_volumes == 1 else f"{z} × {info.n_volumes} volumes")),
                     QTableWidgetItem(f"{sx:.2f} × {sy:.2f} × {sz:.2f}"),
                     QTableWidgetItem(info.orientation)]
            cells[1].setToolTip(info.uid)
            for col, cell in enumerate(cells):
                self.table.setItem(row, col, cell)
            self.table.setRowHeight(row, THUMB + 4 if thumbnail_fn is not None else 24)
        self.table.resizeColumnToContents(0)
        if self.series:
            self.table.selectRow(0)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel,
                                   parent=self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.table.cellDoubleClicked.connect(self._on_table_double_clicked)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"{len(self.series)} images found in {folder}", self))
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(820, 420)
        self._thumbs: BackgroundRunner | None = None
        if thumbnail_fn is not None:
            self._thumbs = BackgroundRunner(self)
            for row, info in enumerate(self.series):
                self._thumbs.submit(partial(thumbnail_fn, info), partial(self._set_thumbnail, row),
                                    partial(_no_thumbnail, info))
        self.finished.connect(self._on_finished)

    def _set_thumbnail(self, row: int, slice_hw: np.ndarray) -> None:
        item = self.table.item(row, 0)
        if item is not None:
            item.setIcon(thumbnail_icon(slice_hw))

    def wait_for_thumbnails(self) -> None:
        if self._thumbs is not None:
            self._thumbs.shutdown(wait=True, cancel=False)

    def _on_finished(self, result: int) -> None:
        if self._thumbs is not None:
            self._thumbs.shutdown(wait=False)

    def select_uid(self, uid: str) -> None:
        for row, info in enumerate(self.series):
            if info.uid == uid:
                self.table.selectRow(row)
                return
        raise KeyError(uid)

    def _on_table_double_clicked(self, row: int, col: int) -> None:
        self.table.selectRow(row)
        self.accept()

    def accept(self) -> None:
        rows = {i.row() for i in self.table.selectedIndexes()}
        if rows:
            self.chosen_uid = self.series[min(rows)].uid
        super().accept()


def _no_thumbnail(info: SeriesInfo, exc: BaseException) -> None:
    log.debug("no thumbnail for %s: %s", info.uid, exc)
