"""History panel: every undoable edit in order; clicking an entry undoes or redoes up to it."""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from annotator.core.document import AnnotationDocument


class HistoryPanel(QWidget):
    def __init__(self, doc: AnnotationDocument, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.doc = doc
        self.list = QListWidget(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.list)
        self.list.itemClicked.connect(self._on_item_clicked)
        doc.history_changed.connect(self._sync_from_model)
        doc.volume_changed.connect(self._sync_from_model)
        self._sync_from_model()

    def _sync_from_model(self) -> None:
        done = ["(opened)"] + self.doc.history.descriptions()
        undone = self.doc.history.redo_descriptions()
        with QSignalBlocker(self.list):
            self.list.clear()
            for text in done:
                self.list.addItem(QListWidgetItem(text))
            for text in undone:
                item = QListWidgetItem(text)
                font = QFont(item.font())
                font.setItalic(True)
                item.setFont(font)
                item.setForeground(QBrush(QColor(140, 140, 140)))
                item.setData(Qt.ItemDataRole.UserRole, "undone")
                self.list.addItem(item)
            self.list.setCurrentRow(len(done) - 1)

    def entries(self) -> list[tuple[str, bool]]:
        """(description, done) per row, for tests."""
        return [(self.list.item(i).text(), self.list.item(i).data(Qt.ItemDataRole.UserRole) != "undone")
                for i in range(self.list.count())]

    def _on_item_clicked(self, item: QListWidgetItem) -> None:
        target = self.list.row(item)  # number of edits that should remain done
        done = len(self.doc.history.descriptions())
        while done > target and self.doc.history.can_undo:
            self.doc.undo()
            done -= 1
        while done < target and self.doc.history.can_redo:
            self.doc.redo()
            done += 1
