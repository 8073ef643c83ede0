"""The three slice views in one of the window's layouts (one large view, 1 x 3, 2 x 2 with the info panel)."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QGridLayout, QWidget

from annotator.qt.canvas.slice_view import SliceView

LAYOUTS = ("1x3", "single", "2x2")


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
            placed: list[QWidget] = [view]
        elif name == "1x3":
            for col, view in enumerate(self.views):
                self._grid.addWidget(view, 0, col)
                self._grid.setColumnStretch(col, 1)
            self._grid.setRowStretch(0, 1)
            placed = list[QWidget](self.views)
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
