"""Slice pixels -> QImage, fast: intensity windowing and label colouring both go through lookup tables."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from PySide6.QtGui import QImage

from annotator.core.geometry import Window, apply_window
from annotator.core.labels import LabelTable


class ArrayImage:
    """A QImage that shares memory with a numpy array; keeps the array alive as long as it lives."""

    __slots__ = ("array", "qimage")

    def __init__(self, array: np.ndarray, fmt: QImage.Format) -> None:
        self.array = np.ascontiguousarray(array)
        h, w = self.array.shape[:2]
        self.qimage = QImage(self.array.data, w, h, self.array.strides[0], fmt)


def grey_to_rgb32(grey_u8: np.ndarray) -> np.ndarray:
    """uint8 grey -> uint32 0xFFgggggg (QImage.Format_RGB32, the raster engine's fast path)."""
    g = grey_u8.astype(np.uint32)
    return np.uint32(0xFF000000) | (g << 16) | (g << 8) | g


class GreyRenderer:
    """Windowed grey image of a slice as RGB32. Integer volumes go through a 65536-entry table
    built once per window (the same values as core.geometry.apply_window); others are windowed."""

    def __init__(self) -> None:
        self._lut: np.ndarray | None = None
        self._lut_window: Window | None = None

    def _table(self, window: Window) -> np.ndarray:
        if self._lut is None or self._lut_window != window:
            self._lut = grey_to_rgb32(apply_window(np.arange(-32768, 32768, dtype=np.int32), window))
            self._lut_window = window
        return self._lut

    def render(self, display_slice: np.ndarray, window: Window) -> ArrayImage:
        if display_slice.dtype == np.int16:
            rgb = self._table(window).take(display_slice.view(np.uint16) ^ np.uint16(0x8000))
        elif display_slice.dtype in (np.uint8, np.uint16):
            rgb = self._table(window).take(display_slice.astype(np.int32) + 32768)
        else:
            rgb = grey_to_rgb32(apply_window(display_slice, window))
        return ArrayImage(rgb, QImage.Format.Format_RGB32)


def premultiplied_argb32(colour: tuple[int, int, int], opacity: float) -> int:
    """One pixel of QImage.Format_ARGB32_Premultiplied (the raster engine's blending fast path)."""
    alpha = int(round(255 * min(max(opacity, 0.0), 1.0)))
    r, g, b = (int(round(c * alpha / 255)) for c in colour)
    return (alpha << 24) | (r << 16) | (g << 8) | b


def label_lut(table: LabelTable, opacity: float, size: int) -> np.ndarray:
    """(size,) uint32 premultiplied ARGB: each visible label in its colour; 0, hidden, unlisted clear."""
    lut = np.zeros(max(size, 1), dtype=np.uint32)
    for label in table:
        if label.visible and label.id < size:
            lut[label.id] = premultiplied_argb32(label.color, opacity)
    return lut


def outline_of(labels_hw: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose 4-neighbour has another value (the edges of every label region)."""
    edge = np.zeros(labels_hw.shape, dtype=bool)
    diff_r = labels_hw[1:, :] != labels_hw[:-1, :]
    diff_c = labels_hw[:, 1:] != labels_hw[:, :-1]
    edge[1:, :] |= diff_r
    edge[:-1, :] |= diff_r
    edge[:, 1:] |= diff_c
    edge[:, :-1] |= diff_c
    return edge & (labels_hw != 0)


class LabelOverlayCache:
    """RGBA overlay images of label slices, cached per slice index and invalidated by region.

    The colour table is rebuilt only when the label table or the display settings change.
    """

    def __init__(self, max_slices: int = 16) -> None:
        self.max_slices = max_slices
        self._images: OrderedDict[int, ArrayImage | None] = OrderedDict()
        self._lut: np.ndarray | None = None
        self._lut_key: tuple | None = None

    def clear(self) -> None:
        self._images.clear()

    def invalidate(self, first: int, stop: int) -> None:
        """Forget cached slices with first <= index < stop."""
        for index in [i for i in self._images if first <= i < stop]:
            del self._images[index]

    def set_style(self, table: LabelTable, opacity: float, outline_only: bool) -> None:
        key = (tuple(table), round(opacity, 3), outline_only)
        if key != self._lut_key:
            self._lut_key = key
            self._lut = None
            self._images.clear()

    def image(self, index: int, display_labels: np.ndarray, table: LabelTable, opacity: float,
              outline_only: bool, hidden: int = 0) -> ArrayImage | None:
        """The overlay of slice `index` (None when the slice has no visible label). `hidden`: a label
        left out (its mask there is being corrected and the preview stands for it); not cached."""
        self.set_style(table, opacity, outline_only)
        if hidden:
            return self._render(np.where(display_labels == hidden, 0, display_labels), table, opacity, outline_only)
        if index in self._images:
            self._images.move_to_end(index)
            return self._images[index]
        rendered = self._render(display_labels, table, opacity, outline_only)
        self._images[index] = rendered
        while len(self._images) > self.max_slices:
            self._images.popitem(last=False)
        return rendered

    def _render(self, display_labels: np.ndarray, table: LabelTable, opacity: float,
                outline_only: bool) -> ArrayImage | None:
        top = int(display_labels.max()) if display_labels.size else 0
        if top == 0:
            return None
        size = max(top + 1, max(table.ids(), default=0) + 1)
        if self._lut is None or self._lut.shape[0] < size:
            self._lut = label_lut(table, 1.0 if outline_only else opacity, size)
        lut = self._lut
        labels = display_labels
        if outline_only:
            labels = np.where(outline_of(display_labels), display_labels, 0)
        argb = lut.take(labels, mode="clip")
        return ArrayImage(argb, QImage.Format.Format_ARGB32_Premultiplied)


def mask_image(mask_hw: np.ndarray, colour: tuple[int, int, int], opacity: float) -> ArrayImage:
    """RGBA image of a boolean mask: fill at `opacity`, edges opaque (for the preview)."""
    argb = np.zeros(mask_hw.shape, dtype=np.uint32)
    argb[mask_hw] = premultiplied_argb32(colour, opacity)
    argb[outline_of(mask_hw.astype(np.uint8))] = premultiplied_argb32(colour, 1.0)
    return ArrayImage(argb, QImage.Format.Format_ARGB32_Premultiplied)


ADDED_COLOUR = (60, 230, 90)
REMOVED_COLOUR = (240, 50, 50)


def change_image(delta_hw: np.ndarray) -> ArrayImage | None:
    """A proposed change on one slice: voxels it adds in green, voxels it clears in red (opaque
    enough to see single voxels, which is what an island or hole often is)."""
    if not delta_hw.any():
        return None
    argb = np.zeros(delta_hw.shape, dtype=np.uint32)
    argb[delta_hw > 0] = premultiplied_argb32(ADDED_COLOUR, 0.8)
    argb[delta_hw < 0] = premultiplied_argb32(REMOVED_COLOUR, 0.8)
    return ArrayImage(argb, QImage.Format.Format_ARGB32_Premultiplied)
