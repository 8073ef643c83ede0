"""The window on a phantom: planes, mapping from screen to voxels, scrolling, W/L, manual editing,
undo/redo with the history list."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent

from annotator.core.geometry import Window
from annotator.core.prompts import BoxPrompt

pytestmark = pytest.mark.gui


def view_of(window, plane):
    return next(v for v in window.views if v.plane == plane)


def vp(view, row, col) -> QPoint:
    return view.raw_to_viewport(row, col).toPoint()


def test_three_planes_with_radiological_letters_and_true_aspect(window):
    axial, coronal, sagittal = (view_of(window, p) for p in ("axial", "coronal", "sagittal"))
    assert (axial.axis, coronal.axis, sagittal.axis) == (0, 1, 2)
    assert axial.orientation.edge_letters == ("R", "L", "A", "P")
    assert coronal.orientation.edge_letters == ("R", "L", "S", "I")
    assert sagittal.orientation.edge_letters == ("A", "P", "S", "I")
    # Coronal: 64 columns of 3.2 mm vs 24 rows of 5 mm -> on screen 204.8 mm wide, 120 mm high.
    a, b = coronal.raw_to_viewport(0, 0), coronal.raw_to_viewport(23, 63)
    ratio = abs(b.x() - a.x()) / abs(b.y() - a.y())
    assert ratio == pytest.approx((63 * 3.2) / (23 * 5.0), rel=0.03)
    # Superior (high z) is shown at the top.
    assert coronal.raw_to_viewport(23, 0).y() < coronal.raw_to_viewport(0, 0).y()


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_screen_to_voxel_round_trip(window, plane):
    view = view_of(window, plane)
    rows, cols = view.raw_shape
    for row, col in [(0, 0), (rows - 1, cols - 1), (rows // 3, cols // 2 + 1)]:
        back = view.viewport_to_raw(QPointF(view.raw_to_viewport(row, col)))
        assert round(back[0]) == row
        assert round(back[1]) == col


def test_wheel_keys_and_page_keys_scroll_the_slice(window, qtbot):
    axial = view_of(window, "axial")
    start = window.doc.slice_index(0)
    qtbot.keyClick(axial, Qt.Key.Key_Up)
    assert window.doc.slice_index(0) == start + 1
    qtbot.keyClick(axial, Qt.Key.Key_PageDown)
    assert window.doc.slice_index(0) == start + 1 - 5
    centre = QPointF(axial.viewport().rect().center())
    wheel = QWheelEvent(centre, axial.viewport().mapToGlobal(centre), QPoint(0, 0), QPoint(0, 120),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    axial.wheelEvent(wheel)
    assert window.doc.slice_index(0) == start - 3


def test_ctrl_click_moves_the_linked_crosshair(window, qtbot):
    coronal = view_of(window, "coronal")
    qtbot.mouseClick(coronal.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier,
                     vp(coronal, 5, 40))
    assert window.doc.cursor_zyx[0] == 5
    assert window.doc.cursor_zyx[2] == 40
    assert view_of(window, "axial").slice_index == 5


def test_right_drag_changes_window_level(window, qtbot):
    axial = view_of(window, "axial")
    before = window.doc.window
    start = axial.viewport().rect().center()
    qtbot.mousePress(axial.viewport(), Qt.MouseButton.RightButton, pos=start)
    qtbot.mouseMove(axial.viewport(), start + QPoint(60, -30))
    qtbot.mouseRelease(axial.viewport(), Qt.MouseButton.RightButton, pos=start + QPoint(60, -30))
    after = window.doc.window
    assert after.width > before.width
    assert after.center > before.center


def test_presets_from_the_menu(window):
    window.actions_by_name["preset_lung"].trigger()
    assert window.doc.window == Window(-600, 1500)


def test_brush_on_sagittal_paints_the_voxels_under_the_mouse_and_undo_redo(window, qtbot):
    doc = window.doc
    sagittal = view_of(window, "sagittal")
    window.tools.set_tool("brush")
    window.tools.set_brush_radius(1.0)
    x = sagittal.slice_index
    qtbot.mousePress(sagittal.viewport(), Qt.MouseButton.LeftButton, pos=vp(sagittal, 10, 20))
    qtbot.mouseMove(sagittal.viewport(), vp(sagittal, 10, 30))
    qtbot.mouseRelease(sagittal.viewport(), Qt.MouseButton.LeftButton, pos=vp(sagittal, 10, 30))
    painted = doc.labels.array == doc.active_label
    zz, yy, xx = np.nonzero(painted)
    assert set(xx) == {x}
    assert painted[10, 20, x]
    assert painted[10, 30, x]
    assert painted[10, 25, x]  # the drag was interpolated
    assert set(zz) <= {9, 10, 11}
    assert window.history_panel.entries()[-1] == ("brush", True)
    window.actions_by_name["undo"].trigger()
    assert not doc.labels.array.any()
    assert window.history_panel.entries()[-1] == ("brush", False)
    window.actions_by_name["redo"].trigger()
    assert np.array_equal(doc.labels.array == doc.active_label, painted)


def test_eraser_and_brush_size_keys(window, qtbot):
    doc = window.doc
    axial = view_of(window, "axial")
    doc.paint_slice_mask(0, axial.slice_index, np.ones((64, 64), bool), doc.active_label, "paint")
    window.tools.set_tool("eraser")
    window.tools.set_brush_radius(2.0)
    window.actions_by_name["brush_bigger"].trigger()
    assert window.tools.brush_radius > 2.0
    window.actions_by_name["brush_smaller"].trigger()
    assert window.tools.brush_radius == pytest.approx(2.0)
    qtbot.mouseClick(axial.viewport(), Qt.MouseButton.LeftButton, pos=vp(axial, 30, 12))
    erased = doc.labels.array[axial.slice_index] == 0
    assert erased[30, 12]
    assert 5 <= erased.sum() <= 20
    window.actions_by_name["undo"].trigger()
    assert doc.labels.array[axial.slice_index].all()


def test_fill_inside_contour(window, qtbot):
    doc = window.doc
    axial = view_of(window, "axial")
    window.tools.set_tool("fill")
    corners = [(10, 10), (10, 40), (40, 40), (40, 10), (10, 10)]
    qtbot.mousePress(axial.viewport(), Qt.MouseButton.LeftButton, pos=vp(axial, *corners[0]))
    for r, c in corners[1:]:
        qtbot.mouseMove(axial.viewport(), vp(axial, r, c))
    qtbot.mouseRelease(axial.viewport(), Qt.MouseButton.LeftButton, pos=vp(axial, 10, 10))
    filled = doc.labels.array[axial.slice_index] == doc.active_label
    assert filled[25, 25]
    assert not filled[5, 5]
    assert abs(int(filled.sum()) - 30 * 30) < 100


def test_layouts_switch_and_keep_views_alive(window, qtbot):
    window.actions_by_name["layout_single"].trigger()
    assert [v.isVisible() for v in window.views].count(True) == 1
    window.actions_by_name["layout_2x2"].trigger()
    assert all(v.isVisible() for v in window.views)
    assert window.info.isVisible()
    window.actions_by_name["layout_1x3"].trigger()
    assert not window.info.isVisible()
    qtbot.wait(5)  # let the queued fit() calls run


def test_labels_panel_add_rename_hide_lock_and_counts(window, qtbot):
    doc = window.doc
    panel = window.labels_panel
    window.actions_by_name["add_label"].trigger()
    assert doc.active_label == 2
    panel.table.item(1, 1).setText("spleen")
    assert doc.labels.table[2].name == "spleen"
    panel.table.item(1, 3).setCheckState(Qt.CheckState.Checked)
    assert doc.labels.table[2].locked
    panel.table.selectRow(0)
    assert doc.active_label == 1
    doc.paint_slice_mask(0, 3, np.ones((64, 64), bool), 1, "paint")
    qtbot.waitUntil(lambda: panel.count_of(1) == 64 * 64, timeout=2000)
    assert panel.table.item(0, 5).text() == f"{64 * 64 * 5.0 * 3.2 * 3.2 / 1000:.1f}"


def test_esc_discards_a_preview_without_touching_labels(window):
    from annotator.core.document import Preview

    doc = window.doc
    doc.set_box(0, 4, BoxPrompt(5, 5, 20, 20))
    doc.set_preview(Preview(0, 4, np.ones((1, 64, 64), bool)))
    window.actions_by_name["discard"].trigger()
    assert doc.preview is None
    assert not doc.labels.array.any()
    assert not doc.prompts(0, 4)


def test_shortcuts_dialog_lists_every_action(window):
    window.actions_by_name["shortcuts"].trigger()
    rows = [(window.shortcuts_dialog.table.item(r, 0).text(), window.shortcuts_dialog.table.item(r, 1).text())
            for r in range(window.shortcuts_dialog.table.rowCount())]
    texts = {t for _, t in rows}
    assert {"Undo", "Accept mask", "Propagate through the volume", "Brush", "Box"} <= texts
    window.shortcuts_dialog.close()
