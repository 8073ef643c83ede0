"""Tools turn mouse input on a slice view into intents on the document (or the engine bridge).

Coordinates arrive as raw-slice pixel centres (row, col), already mapped from the screen by the
view, so a tool never needs to know how the slice is flipped or stretched for display.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, Signal

from annotator.core.document import AnnotationDocument
from annotator.core.prompts import BoxPrompt, PointPrompt

if TYPE_CHECKING:
    from annotator.qt.canvas.slice_view import SliceView
    from annotator.qt.engine_bridge import EngineBridge


@dataclass(frozen=True)
class ViewEvent:
    """A mouse event on a slice: raw-slice pixel centre (row, col), fractional."""

    axis: int
    index: int
    row: float
    col: float
    inside: bool
    button: str  # "left", "right" or "none"
    shift: bool
    ctrl: bool
    raw_shape: tuple[int, int]

    def clamped_rc(self) -> tuple[int, int]:
        return (int(np.clip(round(self.row), 0, self.raw_shape[0] - 1)),
                int(np.clip(round(self.col), 0, self.raw_shape[1] - 1)))


class Tool:
    """Base tool: ignores everything. Subclasses override what they use."""

    name = "tool"
    title = "Tool"
    shortcut = ""

    def __init__(self, controller: ToolController) -> None:
        self.controller = controller

    @property
    def doc(self) -> AnnotationDocument:
        return self.controller.doc

    def press(self, view: SliceView, ev: ViewEvent) -> None: ...
    def move(self, view: SliceView, ev: ViewEvent) -> None: ...
    def release(self, view: SliceView, ev: ViewEvent) -> None: ...

    def hover(self, view: SliceView, ev: ViewEvent) -> None:
        view.hide_transient()

    def deactivate(self, views: list[SliceView]) -> None:
        for view in views:
            view.hide_transient()


class CrosshairTool(Tool):
    """Left click/drag moves the linked cursor (the view handles it directly)."""

    name, title, shortcut = "crosshair", "Crosshair", "C"


class BoxTool(Tool):
    """Drag a box; on release it becomes the slice's box prompt and the engine is asked for a mask."""

    name, title, shortcut = "box", "Box", "B"

    def __init__(self, controller: ToolController) -> None:
        super().__init__(controller)
        self._start: tuple[float, float] | None = None

    def press(self, view: SliceView, ev: ViewEvent) -> None:
        if ev.button != "left":
            return
        self._start = ev.clamped_rc()

    def move(self, view: SliceView, ev: ViewEvent) -> None:
        if self._start is not None:
            r, c = ev.clamped_rc()
            view.show_box(self._start[0], self._start[1], r, c)

    def release(self, view: SliceView, ev: ViewEvent) -> None:
        if self._start is None:
            return
        (r0, c0), (r1, c1) = self._start, ev.clamped_rc()
        self._start = None
        view.hide_transient()
        if abs(r1 - r0) < 2 and abs(c1 - c0) < 2:
            return  # a click, not a box
        box = BoxPrompt.from_corners(c0, r0, c1, r1)
        self.doc.set_box(ev.axis, ev.index, box)
        self.controller.request_prediction(ev.axis, ev.index, at_once=True)


class PointTool(Tool):
    """Left click = positive, right click or Shift+click = negative; applied by the click strategy."""

    name, title, shortcut = "point", "Point", "K"

    def press(self, view: SliceView, ev: ViewEvent) -> None:
        if not ev.inside or ev.button not in ("left", "right"):
            return
        positive = ev.button == "left" and not ev.shift
        r, c = ev.clamped_rc()
        self.controller.add_click(ev.axis, ev.index, PointPrompt(float(c), float(r), positive))


class BrushTool(Tool):
    """Paint discs of the active label along the drag; one stroke is one undo step."""

    name, title, shortcut = "brush", "Brush", "R"
    erase = False

    def __init__(self, controller: ToolController) -> None:
        super().__init__(controller)
        self._last: tuple[float, float] | None = None

    def press(self, view: SliceView, ev: ViewEvent) -> None:
        if ev.button != "left":
            return
        self.doc.begin_stroke(ev.axis, ev.index, self.title.lower())
        self._last = (ev.row, ev.col)
        self.doc.stroke_dab((ev.row, ev.col), self.controller.brush_radius, self.erase)
        view.show_brush(ev.row, ev.col, self.controller.brush_radius)

    def move(self, view: SliceView, ev: ViewEvent) -> None:
        view.show_brush(ev.row, ev.col, self.controller.brush_radius)
        if self._last is None:
            return
        radius = self.controller.brush_radius
        r0, c0 = self._last
        steps = max(1, int(math.hypot(ev.row - r0, ev.col - c0) / max(radius / 2.0, 0.5)))
        for t in np.linspace(1.0 / steps, 1.0, steps):
            self.doc.stroke_dab((r0 + t * (ev.row - r0), c0 + t * (ev.col - c0)), radius, self.erase)
        self._last = (ev.row, ev.col)

    def release(self, view: SliceView, ev: ViewEvent) -> None:
        if self._last is None:
            return
        self._last = None
        self.doc.end_stroke()

    def hover(self, view: SliceView, ev: ViewEvent) -> None:
        view.show_brush(ev.row, ev.col, self.controller.brush_radius)


class EraserTool(BrushTool):
    name, title, shortcut = "eraser", "Eraser", "E"
    erase = True


class FillContourTool(Tool):
    """Draw a closed contour; everything inside it becomes the active label (one undo step)."""

    name, title, shortcut = "fill", "Fill inside contour", "F"

    def __init__(self, controller: ToolController) -> None:
        super().__init__(controller)
        self._points: list[tuple[float, float]] = []

    def press(self, view: SliceView, ev: ViewEvent) -> None:
        if ev.button == "left":
            self._points = [(ev.row, ev.col)]

    def move(self, view: SliceView, ev: ViewEvent) -> None:
        if self._points:
            self._points.append((ev.row, ev.col))
            view.show_contour(self._points)

    def release(self, view: SliceView, ev: ViewEvent) -> None:
        points, self._points = self._points, []
        view.hide_transient()
        if len(points) < 3 or not self.doc.active_label:
            return
        mask = polygon_mask(points, ev.raw_shape)
        if mask.any():
            name = self.doc.labels.table[self.doc.active_label].name
            self.doc.paint_slice_mask(ev.axis, ev.index, mask, self.doc.active_label, f"fill {name}")


def polygon_mask(points_rc: list[tuple[float, float]], shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: pixels whose centre lies inside the closed polygon (vertices as row, col)."""
    from skimage.draw import polygon2mask

    return polygon2mask(shape, np.asarray(points_rc, dtype=np.float64))


TOOL_CLASSES = (BoxTool, PointTool, BrushTool, EraserTool, FillContourTool, CrosshairTool)


class ToolController(QObject):
    """Which tool is active, brush size, and the route from prompts to the engine bridge."""

    tool_changed = Signal(str)
    brush_radius_changed = Signal(float)
    message = Signal(str)

    def __init__(self, doc: AnnotationDocument, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.doc = doc
        self.bridge: EngineBridge | None = None  # set once an engine is available
        self.views: list = []
        self.tools: dict[str, Tool] = {cls.name: cls(self) for cls in TOOL_CLASSES}
        self.active_name = "box"  # the bundled model was trained on boxes
        self.brush_radius = 4.0

    @property
    def active(self) -> Tool:
        return self.tools[self.active_name]

    def set_tool(self, name: str) -> None:
        if name not in self.tools:
            raise KeyError(f"unknown tool {name!r}")
        if name != self.active_name:
            self.active.deactivate(self.views)
            self.active_name = name
            self.tool_changed.emit(name)

    def set_brush_radius(self, radius: float) -> None:
        radius = float(np.clip(radius, 0.5, 64.0))
        if radius != self.brush_radius:
            self.brush_radius = radius
            self.brush_radius_changed.emit(radius)

    def grow_brush(self, factor: float) -> None:
        """Scale the radius, by at least one pixel per step so small brushes still change."""
        r = self.brush_radius
        self.set_brush_radius(max(r * factor, r + 1) if factor > 1 else min(r * factor, r - 1))

    # routed from the views
    def press(self, view: SliceView, ev: ViewEvent) -> None:
        self.active.press(view, ev)

    def move(self, view: SliceView, ev: ViewEvent) -> None:
        self.active.move(view, ev)

    def release(self, view: SliceView, ev: ViewEvent) -> None:
        self.active.release(view, ev)

    def hover(self, view: SliceView, ev: ViewEvent) -> None:
        self.active.hover(view, ev)

    # towards the engine
    def request_prediction(self, axis: int, index: int, *, at_once: bool = False) -> None:
        if self.bridge is None:
            self.message.emit("No segmentation engine is loaded; use the brush, or choose a model.")
            return
        self.bridge.request_prediction(axis, index, at_once=at_once)

    def add_click(self, axis: int, index: int, point: PointPrompt) -> None:
        if self.bridge is None:
            self.message.emit("No segmentation engine is loaded; use the brush, or choose a model.")
            return
        self.bridge.add_click(axis, index, point)
