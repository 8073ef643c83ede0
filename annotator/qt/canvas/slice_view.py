"""One slice of the document along one array axis, shown the radiological way at true aspect ratio.

The view owns no annotation state: it renders what the AnnotationDocument says and turns mouse and
keys into calls on the document or on the active tool. Scene units are millimetres; every item
hangs under one root item scaled by the displayed pixel spacing, so anisotropic voxels look right.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPen,
    QResizeEvent,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QGraphicsEllipseItem,
    QGraphicsItem,
    QGraphicsLineItem,
    QGraphicsPathItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsView,
    QStyleOptionGraphicsItem,
    QWidget,
)

from annotator.core.document import AnnotationDocument
from annotator.core.geometry import (
    PLANES,
    DisplayOrientation,
    Plane,
    Window,
    display_orientation,
    in_plane_axes,
    plane_array_axis,
    slice_2d,
)
from annotator.core.labels import Region
from annotator.qt.canvas.overlay import (
    ArrayImage,
    GreyRenderer,
    LabelOverlayCache,
    change_image,
    mask_image,
)

PREVIEW_COLOUR = (255, 220, 0)
_SLICE_PAGE = 5

if TYPE_CHECKING:
    from annotator.qt.canvas.tools import ToolController, ViewEvent


class ImageItem(QGraphicsItem):
    """Draws an ArrayImage at (0, 0, w, h) in display-pixel units (pixel r, c covers [c, c+1) x [r, r+1))."""

    def __init__(self, parent: QGraphicsItem | None = None) -> None:
        super().__init__(parent)
        self._image: ArrayImage | None = None
        self._rect = QRectF()

    def set_image(self, image: ArrayImage | None) -> None:
        rect = QRectF() if image is None else QRectF(0, 0, image.qimage.width(), image.qimage.height())
        if rect != self._rect:
            self.prepareGeometryChange()
            self._rect = rect
        self._image = image
        self.update()

    def boundingRect(self) -> QRectF:  # Qt override
        return self._rect

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem,
              widget: QWidget | None = None) -> None:  # Qt override
        if self._image is not None:
            painter.drawImage(self._rect, self._image.qimage)


class SliceView(QGraphicsView):
    """A QGraphicsView of doc's slice along `axis` with overlay, preview, prompts and crosshair."""

    hovered = Signal(object)  # (z, y, x) int index under the mouse, or None when outside
    activated = Signal(int)  # axis, when the user interacts with this view

    def __init__(self, doc: AnnotationDocument, plane: Plane, tools: ToolController | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        if plane not in PLANES:
            raise ValueError(f"unknown plane {plane!r}; expected one of {PLANES}")
        self.doc = doc
        self.plane = plane
        # The array axis whose slices this view shows; set from the volume's direction matrix.
        self.axis = PLANES.index(plane)
        self.tools = tools
        self.orientation: DisplayOrientation | None = None
        self.raw_shape: tuple[int, int] = (1, 1)
        self._grey = GreyRenderer()
        self._overlays = LabelOverlayCache()
        self._shown_index: int | None = None
        self._status_text = ""
        self._user_zoomed = False
        self._drag: dict | None = None

        self.setScene(QGraphicsScene(self))
        self.setBackgroundBrush(QBrush(QColor(0, 0, 0)))
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setMinimumSize(120, 120)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.FullViewportUpdate)

        self._root = QGraphicsRectItem()
        self._root.setPen(QPen(Qt.PenStyle.NoPen))
        self.scene().addItem(self._root)
        self._image_item = ImageItem(self._root)
        self._overlay_item = ImageItem(self._root)
        self._preview_item = ImageItem(self._root)
        self._change_item = ImageItem(self._root)
        cross_pen = QPen(QColor(80, 170, 255, 200))
        cross_pen.setCosmetic(True)
        cross_pen.setStyle(Qt.PenStyle.DashLine)
        self._cross_h = QGraphicsLineItem(self._root)
        self._cross_v = QGraphicsLineItem(self._root)
        for line in (self._cross_h, self._cross_v):
            line.setPen(cross_pen)
        self._prompt_items: list[QGraphicsItem] = []
        band_pen = QPen(QColor(255, 220, 0))
        band_pen.setCosmetic(True)
        band_pen.setWidth(2)
        band_pen.setStyle(Qt.PenStyle.DashLine)
        self._band = QGraphicsRectItem(self._root)
        self._band.setPen(band_pen)
        self._band.hide()
        contour_pen = QPen(QColor(0, 255, 160))
        contour_pen.setCosmetic(True)
        contour_pen.setWidth(2)
        self._contour = QGraphicsPathItem(self._root)
        self._contour.setPen(contour_pen)
        self._contour.hide()
        brush_pen = QPen(QColor(255, 255, 255, 220))
        brush_pen.setCosmetic(True)
        self._brush = QGraphicsEllipseItem(self._root)
        self._brush.setPen(brush_pen)
        self._brush.hide()

        doc.volume_changed.connect(self._on_doc_volume_changed)
        doc.cursor_changed.connect(self._on_doc_cursor_changed)
        doc.window_changed.connect(self._on_doc_window_changed)
        doc.labels_changed.connect(self._on_doc_labels_changed)
        doc.table_changed.connect(self._on_doc_table_changed)
        doc.display_changed.connect(self._on_doc_table_changed)
        doc.preview_changed.connect(self._on_doc_preview_changed)
        doc.change_preview_changed.connect(self._on_doc_change_preview_changed)
        doc.prompts_changed.connect(self._on_doc_prompts_changed)
        if doc.has_volume:
            self._on_doc_volume_changed()

    # ---- public helpers ---------------------------------------------------------------------
    @property
    def slice_index(self) -> int:
        return self.doc.slice_index(self.axis)

    def set_status_text(self, text: str) -> None:
        if text != self._status_text:
            self._status_text = text
            self.viewport().update()

    @property
    def display(self) -> DisplayOrientation:
        """How the raw slice is turned for display (RuntimeError before a volume is shown)."""
        if self.orientation is None:
            raise RuntimeError("no volume is shown in this view")
        return self.orientation

    @property
    def status_text(self) -> str:
        return self._status_text

    def raw_to_item(self, row: float, col: float) -> QPointF:
        """Raw-slice pixel centre (row, col) -> root-item point (display pixel units)."""
        d_row, d_col = self.display.raw_to_display(row, col, self.raw_shape)
        return QPointF(d_col + 0.5, d_row + 0.5)

    def raw_to_viewport(self, row: float, col: float) -> QPointF:
        """Raw-slice pixel centre -> viewport widget coordinates (what a mouse event carries)."""
        scene_pt = self._root.mapToScene(self.raw_to_item(row, col))
        return QPointF(self.mapFromScene(scene_pt))

    def viewport_to_raw(self, pos: QPointF) -> tuple[float, float]:
        """Viewport position -> raw-slice pixel-centre coordinates (row, col), fractional."""
        item_pt = self._root.mapFromScene(self.mapToScene(pos.toPoint()))
        return self.display.display_to_raw(item_pt.y() - 0.5, item_pt.x() - 0.5, self.raw_shape)

    def index_zyx_at(self, row: float, col: float) -> tuple[int, int, int] | None:
        r, c = round(row), round(col)
        if not (0 <= r < self.raw_shape[0] and 0 <= c < self.raw_shape[1]):
            return None
        out = [0, 0, 0]
        out[self.axis] = self.slice_index
        r_axis, c_axis = in_plane_axes(self.axis)
        out[r_axis], out[c_axis] = r, c
        return tuple(out)  # type: ignore[return-value]

    def fit(self) -> None:
        self._user_zoomed = False
        if self.orientation is not None:
            self.fitInView(self._root, Qt.AspectRatioMode.KeepAspectRatio)

    def zoom(self, factor: float) -> None:
        self._user_zoomed = True
        self.scale(factor, factor)

    # ---- transient tool graphics ---------------------------------------------------------------
    def show_box(self, r0: float, c0: float, r1: float, c1: float) -> None:
        a, b = self.raw_to_item(r0, c0), self.raw_to_item(r1, c1)
        self._band.setRect(QRectF(a, b).normalized().adjusted(-0.5, -0.5, 0.5, 0.5))
        self._band.show()

    def show_contour(self, points_rc: list[tuple[float, float]], closed: bool = False) -> None:
        path = QPainterPath()
        for i, (r, c) in enumerate(points_rc):
            pt = self.raw_to_item(r, c)
            path.moveTo(pt) if i == 0 else path.lineTo(pt)
        if closed and points_rc:
            path.closeSubpath()
        self._contour.setPath(path)
        self._contour.show()

    def show_brush(self, row: float, col: float, radius_px: float) -> None:
        centre = self.raw_to_item(row, col)
        rx = ry = radius_px
        if self.display.transpose:
            rx, ry = ry, rx
        self._brush.setRect(QRectF(centre.x() - rx, centre.y() - ry, 2 * rx, 2 * ry))
        self._brush.show()

    def hide_transient(self, brush_too: bool = True) -> None:
        self._band.hide()
        self._contour.hide()
        if brush_too:
            self._brush.hide()

    # ---- model -> view -----------------------------------------------------------------------
    def _on_doc_volume_changed(self) -> None:
        volume = self.doc.current_volume()
        self.axis = plane_array_axis(volume, self.plane)
        self.orientation = display_orientation(volume, self.axis)
        r_axis, c_axis = in_plane_axes(self.axis)
        self.raw_shape = (volume.shape_zyx[r_axis], volume.shape_zyx[c_axis])
        d_rows, d_cols = self.display.display_shape(self.raw_shape)
        self._root.setTransform(QTransform.fromScale(self.display.col_spacing_mm,
                                                     self.display.row_spacing_mm))
        self._root.setRect(QRectF(0, 0, d_cols, d_rows))
        bounds = self._root.sceneBoundingRect()
        margin = max(bounds.width(), bounds.height()) * 2
        self.setSceneRect(bounds.adjusted(-margin, -margin, margin, margin))
        self._overlays.clear()
        self._shown_index = None
        self._render_slice()
        self._update_crosshair()
        self._update_prompts()
        self._on_doc_preview_changed()
        self.fit()

    def _render_slice(self) -> None:
        if not self.doc.has_volume:
            return
        index = self.slice_index
        raw = slice_2d(self.doc.current_volume().array, self.axis, index)
        self._image_item.set_image(self._grey.render(self.display.apply(raw), self.doc.window))
        self._shown_index = index
        self._render_overlay()

    def _render_overlay(self) -> None:
        index = self.slice_index
        labels = self.doc.labels
        display = self.display.apply(slice_2d(labels.array, self.axis, index))
        preview = self.doc.preview
        # While clicks correct a label's mask here, the preview is what that label will be: the
        # mask being replaced is not drawn under it.
        corrected = self.doc.correcting_label(self.axis, index) \
            if preview is not None and preview.axis == self.axis and preview.index == index else 0
        image = self._overlays.image(index, display, labels.table, self.doc.overlay_opacity,
                                     self.doc.outline_only, hidden=corrected)
        self._overlay_item.set_image(image)

    def _on_doc_cursor_changed(self, cursor: tuple[int, int, int]) -> None:
        if not self.doc.has_volume:
            return
        if cursor[self.axis] != self._shown_index:
            self._render_slice()
            self._update_prompts()
            self._on_doc_preview_changed()
        self._update_crosshair()
        self.viewport().update()

    def _on_doc_window_changed(self, window: Window) -> None:
        if self.doc.has_volume and self.orientation is not None:
            raw = slice_2d(self.doc.current_volume().array, self.axis, self.slice_index)
            self._image_item.set_image(self._grey.render(self.display.apply(raw), window))

    def _on_doc_labels_changed(self, region: Region) -> None:
        if self.orientation is None:
            return
        sl = region[self.axis]
        start = sl.start or 0
        stop = sl.stop if sl.stop is not None else self.doc.labels.shape_zyx[self.axis]
        self._overlays.invalidate(start, stop)
        if start <= self.slice_index < stop:
            self._render_overlay()

    def _on_doc_table_changed(self) -> None:
        if self.orientation is None:
            return
        self._overlays.clear()
        self._render_overlay()
        self._on_doc_preview_changed()

    def _on_doc_change_preview_changed(self) -> None:
        delta = self.doc.change_preview
        if delta is None or self.orientation is None:
            self._change_item.set_image(None)
            return
        self._change_item.set_image(change_image(self.display.apply(slice_2d(delta, self.axis, self.slice_index))))

    def _on_doc_preview_changed(self) -> None:
        self._on_doc_change_preview_changed()  # both follow the slice shown
        if self.orientation is not None and self.doc.has_volume:
            self._render_overlay()  # a correction's preview hides the mask it replaces
        preview = self.doc.preview
        if preview is None or preview.axis != self.axis or preview.index != self.slice_index:
            self._preview_item.set_image(None)
            return
        colour = PREVIEW_COLOUR
        self._preview_item.set_image(mask_image(self.display.apply(preview.mask), colour, 0.35))

    def _on_doc_prompts_changed(self, axis: int, index: int) -> None:
        if axis == self.axis and index == self.slice_index:
            self._update_prompts()

    def _update_prompts(self) -> None:
        for item in self._prompt_items:
            self.scene().removeItem(item)
        self._prompt_items.clear()
        if self.orientation is None:
            return
        prompts = self.doc.prompts(self.axis, self.slice_index)
        if prompts.box is not None:
            b = prompts.box
            a, c = self.raw_to_item(b.y_min, b.x_min), self.raw_to_item(b.y_max, b.x_max)
            rect = QGraphicsRectItem(QRectF(a, c).normalized().adjusted(-0.5, -0.5, 0.5, 0.5), self._root)
            pen = QPen(QColor(0, 200, 255))
            pen.setCosmetic(True)
            pen.setWidth(2)
            rect.setPen(pen)
            self._prompt_items.append(rect)
        for point in prompts.points:
            centre = self._root.mapToScene(self.raw_to_item(point.y, point.x))
            dot = QGraphicsEllipseItem(-5, -5, 10, 10)
            dot.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
            dot.setPos(centre)
            dot.setBrush(QBrush(QColor(40, 220, 60) if point.positive else QColor(240, 50, 50)))
            dot.setPen(QPen(QColor(255, 255, 255)))
            self.scene().addItem(dot)
            self._prompt_items.append(dot)

    def _update_crosshair(self) -> None:
        if self.orientation is None:
            return
        r_axis, c_axis = in_plane_axes(self.axis)
        cursor = self.doc.cursor_zyx
        pt = self.raw_to_item(cursor[r_axis], cursor[c_axis])
        rect = self._root.rect()
        self._cross_h.setLine(rect.left(), pt.y(), rect.right(), pt.y())
        self._cross_v.setLine(pt.x(), rect.top(), pt.x(), rect.bottom())

    # ---- drawing on top: orientation letters, slice number, status ----------------------------
    def drawForeground(self, painter: QPainter, rect: QRectF | QRect) -> None:  # Qt override
        if self.orientation is None:
            return
        painter.save()
        painter.resetTransform()
        w, h = self.viewport().width(), self.viewport().height()
        font = QFont(painter.font())
        font.setPointSize(11)
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(QColor(255, 200, 60))
        left, right, top, bottom = self.display.edge_letters
        painter.drawText(QRectF(4, 0, 30, h), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, left)
        painter.drawText(QRectF(w - 34, 0, 30, h), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, right)
        painter.drawText(QRectF(0, 2, w, 20), Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, top)
        painter.drawText(QRectF(0, h - 22, w, 20), Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom, bottom)
        font.setBold(False)
        font.setPointSize(9)
        painter.setFont(font)
        painter.setPen(QColor(230, 230, 230))
        count = self.doc.slice_count(self.axis)
        painter.drawText(QRectF(6, 4, w - 12, 18), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop,
                         f"{self.plane.capitalize()}  {self.slice_index + 1}/{count}")
        win = self.doc.window
        painter.drawText(QRectF(6, 4, w - 12, 18), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop,
                         f"W {win.width:.0f} L {win.center:.0f}")
        if self._status_text:
            painter.setPen(QColor(255, 220, 0))
            # Above the bottom orientation letter, with a dark band so it reads on any image.
            band = QRectF(0, h - 46, w, 20)
            painter.fillRect(band, QColor(0, 0, 0, 160))
            painter.drawText(band.adjusted(6, 0, -6, 0),
                             Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, self._status_text)
        painter.restore()

    # ---- input ------------------------------------------------------------------------------
    def resizeEvent(self, event: QResizeEvent) -> None:  # Qt override
        super().resizeEvent(event)
        if not self._user_zoomed:
            self.fit()

    def wheelEvent(self, event: QWheelEvent) -> None:  # Qt override
        if not self.doc.has_volume:
            return
        delta = event.angleDelta().y()
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.zoom(1.15 if delta > 0 else 1 / 1.15)
        elif delta:
            self.doc.step_slice(self.axis, 1 if delta > 0 else -1)
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # Qt override
        key = Qt.Key(event.key())
        steps = {Qt.Key.Key_Up: 1, Qt.Key.Key_Down: -1, Qt.Key.Key_PageUp: _SLICE_PAGE,
                 Qt.Key.Key_PageDown: -_SLICE_PAGE}
        if key in steps and self.doc.has_volume:
            self.doc.step_slice(self.axis, steps[key])
            event.accept()
            return
        if key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom(1.25)
        elif key == Qt.Key.Key_Minus:
            self.zoom(0.8)
        elif key == Qt.Key.Key_Home:
            self.fit()
        else:
            super().keyPressEvent(event)

    def _event(self, event: QMouseEvent, button: str = "none") -> ViewEvent:
        from annotator.qt.canvas.tools import ViewEvent

        row, col = self.viewport_to_raw(event.position())
        mods = event.modifiers()
        return ViewEvent(axis=self.axis, index=self.slice_index, row=row, col=col,
                         inside=self.index_zyx_at(row, col) is not None, button=button,
                         shift=bool(mods & Qt.KeyboardModifier.ShiftModifier),
                         ctrl=bool(mods & Qt.KeyboardModifier.ControlModifier), raw_shape=self.raw_shape)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # Qt override
        if not self.doc.has_volume:
            return
        self.setFocus()
        self.activated.emit(self.axis)
        button = event.button()
        pos = event.position()
        if button == Qt.MouseButton.MiddleButton:
            self._drag = {"kind": "pan", "last": pos}
        elif button == Qt.MouseButton.RightButton:
            self._drag = {"kind": "right", "start": pos, "window": self.doc.window, "moved": False}
        elif button == Qt.MouseButton.LeftButton:
            ev = self._event(event, "left")
            if ev.ctrl or (self.tools is None) or self.tools.active_name == "crosshair":
                self._drag = {"kind": "cursor"}
                self._move_cursor(ev)
            else:
                self._drag = {"kind": "tool"}
                self.tools.press(self, ev)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # Qt override
        if not self.doc.has_volume:
            return
        ev = self._event(event)
        self.hovered.emit(self.index_zyx_at(ev.row, ev.col))
        drag = self._drag
        pos = event.position()
        if drag is None:
            if self.tools is not None:
                self.tools.hover(self, ev)
        elif drag["kind"] == "pan":
            delta = pos - drag["last"]
            drag["last"] = pos
            self._user_zoomed = True
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - round(delta.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - round(delta.y()))
        elif drag["kind"] == "right":
            delta = pos - drag["start"]
            if drag["moved"] or abs(delta.x()) + abs(delta.y()) > 3:
                drag["moved"] = True
                start: Window = drag["window"]
                width = max(1.0, start.width * math.exp(delta.x() / 200.0))
                centre = start.center - delta.y() * start.width / 256.0
                self.doc.set_window(Window(centre, width))
        elif drag["kind"] == "cursor":
            self._move_cursor(ev)
        elif drag["kind"] == "tool" and self.tools is not None:
            self.tools.move(self, ev)
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # Qt override
        drag, self._drag = self._drag, None
        if drag is None or not self.doc.has_volume:
            return
        if drag["kind"] == "tool" and self.tools is not None:
            self.tools.release(self, self._event(event, "left"))
        elif drag["kind"] == "right" and not drag["moved"] and self.tools is not None:
            ev = self._event(event, "right")
            self.tools.press(self, ev)
            self.tools.release(self, ev)
        event.accept()

    def leaveEvent(self, event: QEvent) -> None:  # Qt override
        self.hovered.emit(None)
        self._brush.hide()
        super().leaveEvent(event)

    def _move_cursor(self, ev: ViewEvent) -> None:
        index = self.index_zyx_at(ev.row, ev.col)
        if index is not None:
            self.doc.set_cursor(index)


def display_pixels(view: SliceView) -> np.ndarray:
    """The (H, W) image the view shows now, in display orientation (for tests and screenshots)."""
    return view.display.apply(slice_2d(view.doc.current_volume().array, view.axis, view.slice_index))
