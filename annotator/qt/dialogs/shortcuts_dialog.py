"""Help → Shortcuts: every action of the window with its keys, read from the actions themselves."""

from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

MOUSE_HELP = [
    ("Mouse wheel", "Next / previous slice"),
    ("Ctrl + wheel", "Zoom"),
    ("Middle drag", "Pan"),
    ("Right drag", "Window / level"),
    ("Ctrl + left click", "Move the crosshair (any tool)"),
    ("Point tool: left / right or Shift+left click", "Positive / negative click (on a labelled slice: corrects its mask)"),
    ("Up / Down, Page Up / Page Down", "Slice ±1 / ±5"),
]


def shortcut_rows(actions: list[QAction]) -> list[tuple[str, str]]:
    rows = []
    for action in actions:
        keys = ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts())
        if keys:
            rows.append((keys, action.text().replace("&", "")))
    return rows


class ShortcutsDialog(QDialog):
    def __init__(self, actions: list[QAction], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard and mouse shortcuts")
        rows = shortcut_rows(actions) + MOUSE_HELP
        self.table = QTableWidget(len(rows), 2, self)
        self.table.setHorizontalHeaderLabels(["Keys", "Action"])
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        for row, (keys, text) in enumerate(rows):
            self.table.setItem(row, 0, QTableWidgetItem(keys))
            self.table.setItem(row, 1, QTableWidgetItem(text))
        self.table.resizeColumnToContents(0)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, parent=self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(520, 560)
