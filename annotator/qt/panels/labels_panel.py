"""Labels panel: the label table (add, rename, recolour, hide, lock, delete), the active label,
overlay opacity / outline mode, and voxel count and volume per label. Bound to the document."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSignalBlocker, Qt, QTimer
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QColorDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from annotator.core.document import AnnotationDocument
from annotator.core.labels import Region

COLUMNS = ("", "Name", "Show", "Lock", "Voxels", "mL")


def colour_icon(colour: tuple[int, int, int]) -> QIcon:
    pixmap = QPixmap(14, 14)
    pixmap.fill(QColor(*colour))
    return QIcon(pixmap)


class LabelsPanel(QWidget):
    def __init__(self, doc: AnnotationDocument, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.doc = doc
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        for col in (0, 2, 3, 4, 5):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.add_button = QPushButton("Add", self)
        self.delete_button = QPushButton("Delete", self)
        self.colour_button = QPushButton("Colour…", self)
        self.opacity = QSlider(Qt.Orientation.Horizontal, self)
        self.opacity.setRange(0, 100)
        self.outline = QCheckBox("Outline only", self)

        buttons = QHBoxLayout()
        for b in (self.add_button, self.colour_button, self.delete_button):
            buttons.addWidget(b)
        display = QHBoxLayout()
        display.addWidget(QLabel("Opacity", self))
        display.addWidget(self.opacity)
        display.addWidget(self.outline)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        layout.addLayout(display)

        # Voxel counts scan the whole label map: recount at most a few times a second.
        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(250)
        self._count_timer.timeout.connect(self._update_counts)

        self.add_button.clicked.connect(self._on_add_clicked)
        self.delete_button.clicked.connect(self._on_delete_clicked)
        self.colour_button.clicked.connect(self._on_colour_clicked)
        self.table.itemChanged.connect(self._on_item_changed)
        self.table.itemSelectionChanged.connect(self._on_selection_changed)
        self.table.cellDoubleClicked.connect(self._on_cell_double_clicked)
        self.opacity.valueChanged.connect(self._on_opacity_changed)
        self.outline.toggled.connect(self._on_outline_toggled)

        doc.volume_changed.connect(self._sync_from_model)
        doc.table_changed.connect(self._sync_from_model)
        doc.active_label_changed.connect(self._on_doc_active_label_changed)
        doc.labels_changed.connect(self._on_doc_labels_changed)
        doc.display_changed.connect(self._on_doc_display_changed)
        self._counts: dict[int, int] = {}
        self._sync_from_model()
        self._on_doc_display_changed()

    # ---- model -> view -----------------------------------------------------------------------
    def _set_text(self, row: int, column: int, text: str) -> None:
        item = self.table.item(row, column)
        if item is not None:
            item.setText(text)

    def _row_ids(self) -> list[int]:
        items = (self.table.item(r, 1) for r in range(self.table.rowCount()))
        return [int(item.data(Qt.ItemDataRole.UserRole)) for item in items if item is not None]

    def _sync_from_model(self) -> None:
        labels = list(self.doc.labels.table)
        with QSignalBlocker(self.table):
            self.table.setRowCount(len(labels))
            for row, label in enumerate(labels):
                swatch = QTableWidgetItem(colour_icon(label.color), "")
                swatch.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                name = QTableWidgetItem(label.name)
                name.setData(Qt.ItemDataRole.UserRole, label.id)
                name.setToolTip(f"id {label.id}")
                show = QTableWidgetItem()
                show.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsSelectable)
                show.setCheckState(Qt.CheckState.Checked if label.visible else Qt.CheckState.Unchecked)
                lock = QTableWidgetItem()
                lock.setFlags(show.flags())
                lock.setCheckState(Qt.CheckState.Checked if label.locked else Qt.CheckState.Unchecked)
                self.table.setItem(row, 0, swatch)
                self.table.setItem(row, 1, name)
                self.table.setItem(row, 2, show)
                self.table.setItem(row, 3, lock)
                for col in (4, 5):
                    item = QTableWidgetItem("")
                    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    self.table.setItem(row, col, item)
        self._on_doc_active_label_changed(self.doc.active_label)
        self._count_timer.start()

    def _on_doc_active_label_changed(self, label_id: int) -> None:
        ids = self._row_ids()
        with QSignalBlocker(self.table):
            if label_id in ids:
                self.table.selectRow(ids.index(label_id))
            else:
                self.table.clearSelection()

    def _on_doc_labels_changed(self, region: Region) -> None:
        self._count_timer.start()

    def _on_doc_display_changed(self) -> None:
        with QSignalBlocker(self.opacity):
            self.opacity.setValue(round(self.doc.overlay_opacity * 100))
        with QSignalBlocker(self.outline):
            self.outline.setChecked(self.doc.outline_only)

    def _update_counts(self) -> None:
        if not self.doc.has_volume:
            return
        counts = np.bincount(self.doc.labels.array.ravel())
        with QSignalBlocker(self.table):
            for row, label_id in enumerate(self._row_ids()):
                count = int(counts[label_id]) if label_id < counts.size else 0
                self._counts[label_id] = count
                self._set_text(row, 4, f"{count:,}")
                self._set_text(row, 5, f"{self.doc.label_volume_ml(label_id, count):.1f}")

    def stop_timers(self) -> None:
        self._count_timer.stop()

    def count_of(self, label_id: int) -> int:
        return self._counts.get(label_id, 0)

    # ---- view -> model -----------------------------------------------------------------------
    def _on_add_clicked(self) -> None:
        self.doc.add_label()

    def _on_delete_clicked(self) -> None:
        if self.doc.active_label:
            self.doc.delete_label(self.doc.active_label)

    def _on_colour_clicked(self) -> None:
        label_id = self.doc.active_label
        if not label_id:
            return
        current = QColor(*self.doc.labels.table[label_id].color)
        colour = QColorDialog.getColor(current, self, "Label colour")
        if colour.isValid():
            self.doc.labels.table.update(label_id, color=(colour.red(), colour.green(), colour.blue()))

    def _on_cell_double_clicked(self, row: int, col: int) -> None:
        if col == 0:
            self._on_colour_clicked()

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        row = item.row()
        label_id = self._row_ids()[row]
        if item.column() == 1 and item.text().strip():
            self.doc.labels.table.update(label_id, name=item.text().strip())
        elif item.column() == 2:
            self.doc.labels.table.update(label_id, visible=item.checkState() == Qt.CheckState.Checked)
        elif item.column() == 3:
            self.doc.labels.table.update(label_id, locked=item.checkState() == Qt.CheckState.Checked)

    def _on_selection_changed(self) -> None:
        rows = {i.row() for i in self.table.selectedIndexes()}
        if rows:
            self.doc.set_active_label(self._row_ids()[min(rows)])

    def _on_opacity_changed(self, value: int) -> None:
        self.doc.set_overlay(opacity=value / 100.0)

    def _on_outline_toggled(self, checked: bool) -> None:
        self.doc.set_overlay(outline_only=checked)
