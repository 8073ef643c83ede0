"""Rendering tables: the grey LUT equals core.geometry.apply_window; label colours, hidden labels,
outline mode and the per-slice cache invalidation."""

from __future__ import annotations

import numpy as np

from annotator.core.geometry import Window, apply_window
from annotator.core.labels import LabelTable
from annotator.qt.canvas.overlay import GreyRenderer, LabelOverlayCache, outline_of


def test_grey_lut_matches_apply_window_exactly():
    rng = np.random.default_rng(0)
    values = rng.integers(-1100, 2000, size=(37, 53)).astype(np.int16)
    window = Window(40, 400)
    image = GreyRenderer().render(values, window)
    grey = (image.array & 0xFF).astype(np.uint8)
    assert np.array_equal(grey, apply_window(values, window))
    assert np.all(image.array >> 24 == 0xFF)  # opaque
    floats = values.astype(np.float32) + 0.25
    assert np.array_equal(GreyRenderer().render(floats, window).array & 0xFF, apply_window(floats, window))


def test_label_overlay_colours_hidden_labels_and_outline():
    table = LabelTable()
    table.add("liver", (200, 100, 50))
    table.add("spleen", (10, 20, 30))
    labels = np.zeros((10, 10), np.uint16)
    labels[2:8, 2:8] = 1
    labels[0, 0] = 2
    cache = LabelOverlayCache()
    image = cache.image(0, labels, table, 1.0, False)
    assert image.array[4, 4] == (0xFF << 24) | (200 << 16) | (100 << 8) | 50
    assert image.array[9, 9] == 0
    table.update(2, visible=False)
    image = cache.image(0, labels, table, 1.0, False)  # style change drops the cache
    assert image.array[0, 0] == 0
    half = cache.image(0, labels, table, 0.5, False)
    assert half.array[4, 4] >> 24 == 128
    outline = cache.image(0, labels, table, 0.5, True)
    assert outline.array[4, 4] == 0  # inside: clear
    assert outline.array[2, 4] >> 24 == 255  # edge: opaque
    assert np.array_equal(outline_of(labels)[2:8, 2:8].sum(), 20)


def test_overlay_cache_invalidation_by_slice_range():
    table = LabelTable()
    table.add("a")
    cache = LabelOverlayCache()
    labels = np.ones((4, 4), np.uint16)
    first = cache.image(3, labels, table, 0.5, False)
    assert cache.image(3, labels * 0, table, 0.5, False) is first  # cached: not re-rendered
    cache.invalidate(0, 3)
    assert cache.image(3, labels * 0, table, 0.5, False) is first
    cache.invalidate(3, 4)
    assert cache.image(3, labels * 0, table, 0.5, False) is None  # re-rendered: empty slice
