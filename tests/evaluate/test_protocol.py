"""The evaluation protocol on small synthetic arrays with answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.evaluate import protocol


def _disk(shape, center_rc, radius):
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    return (rr - center_rc[0]) ** 2 + (cc - center_rc[1]) ** 2 <= radius**2


def test_fn_blob_gets_a_positive_click_at_its_centre():
    truth = _disk((40, 50), (20, 30), 6)
    pred = np.zeros_like(truth)
    assert protocol.next_click(pred, truth) == (30, 20, True)  # (x = column, y = row, positive)


def test_fp_blob_gets_a_negative_click_at_its_centre():
    truth = _disk((40, 50), (10, 10), 3)
    pred = truth | _disk((40, 50), (25, 35), 5)
    assert protocol.next_click(pred, truth) == (35, 25, False)


def test_perfect_mask_gives_no_click():
    truth = _disk((20, 20), (10, 10), 4)
    assert protocol.next_click(truth.copy(), truth) is None


def test_tie_between_fn_and_fp_goes_to_fn():
    truth = np.zeros((21, 41), dtype=bool)
    pred = np.zeros_like(truth)
    truth[5:16, 5:16] = True   # FN square 11x11: depth 6 at its centre (10, 10)
    pred[5:16, 25:36] = True   # FP square of the same size: depth 6 at (10, 30)
    assert protocol.next_click(pred, truth) == (10, 10, True)


def test_tie_within_a_region_is_first_in_row_major_order():
    truth = np.zeros((10, 12), dtype=bool)
    truth[2:4, 2:10] = True    # a 2-row bar: every pixel has depth 1; the first is (row 2, col 2)
    assert protocol.next_click(np.zeros_like(truth), truth) == (2, 2, True)


def test_image_edge_counts_as_boundary():
    truth = np.zeros((20, 20), dtype=bool)
    truth[:, :7] = True        # touches the left/top/bottom edges: without the False border the
    x, y, positive = protocol.next_click(np.zeros_like(truth), truth)   # deepest pixel would sit on the edge
    assert positive
    assert x == 3
    assert y == 3               # first row at depth 4 in row-major order


def test_items_pick_the_fullest_slice_lowest_on_ties_and_skip_small_labels():
    labels = np.zeros((5, 20, 20), dtype=np.uint8)
    labels[1, :10, :10] = 3    # 100 px on slice 1
    labels[3, :10, :10] = 3    # 100 px on slice 3: tie -> slice 1
    labels[2, :5, :5] = 7      # 25 px < 64: skipped
    items, skipped = protocol.select_items(labels, {3: "liver", 7: "rib_left_1"})
    assert [(i.label, i.slice_index, i.pixels) for i in items] == [(3, 1, 100)]
    assert skipped == [{"label": 7, "name": "rib_left_1", "slice": 2, "pixels": 25}]
    coronal, _ = protocol.select_items(labels, {3: "liver"}, axis=1, plane="coronal", min_pixels=1)
    assert coronal[0].slice_index == 0
    assert coronal[0].pixels == 20


def test_organ_filter():
    assert protocol.is_organ("liver")
    assert protocol.is_organ("kidney_left")
    for name in ("rib_left_7", "vertebrae_L1", "costal_cartilages", "hip_left", "sacrum", "femur_right"):
        assert not protocol.is_organ(name)


def test_ct_window_and_mr_zero_restore():
    ct = np.array([[-1000, -160, 40, 240, 1000]], dtype=np.int16)[None]
    u8, window = protocol.windowed_volume_u8(ct)
    assert window == (-160.0, 240.0)
    assert u8.ravel().tolist() == [0, 0, 127, 255, 255]
    mr = np.array([[0, 10, 20, 30, 40] * 40], dtype=np.float32)[None]
    u8, (low, high) = protocol.windowed_volume_u8(mr)
    assert low == pytest.approx(np.percentile([10, 20, 30, 40] * 40, 0.5))
    assert (u8[mr == 0] == 0).all()
    assert u8.max() == 255


def test_noc_counts_the_box_and_never_reaching_is_k_plus_two():
    assert protocol.clicks_to_reach([0.9, 0.95], 0.85, 5) == 1
    assert protocol.clicks_to_reach([0.5, 0.6, 0.86], 0.85, 5) == 3
    assert protocol.clicks_to_reach([0.5] * 6, 0.85, 5) == 7


def test_dice():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert protocol.dice(a, b) == 1.0
    a[0, :2] = True
    b[0, 1:3] = True
    assert protocol.dice(a, b) == pytest.approx(0.5)


def test_pieces_to_box_are_the_big_pieces_largest_first_up_to_the_budget():
    mask = np.zeros((40, 60), dtype=bool)
    mask[2:12, 2:12] = True      # 100 px
    mask[20:35, 30:45] = True    # 225 px, the largest
    mask[2:5, 50:53] = True      # 9 px: under a tenth of the largest, left to the clicks
    mask[30:38, 2:10] = True     # 64 px
    mask[12, 12] = True          # touches the first piece diagonally: the same piece (8-connected)
    pieces = protocol.pieces_to_box(mask, at_most=5)
    assert [int(p.sum()) for p in pieces] == [225, 101, 64]
    assert pieces[1][12, 12]
    assert not pieces[1][20, 30]
    assert [int(p.sum()) for p in protocol.pieces_to_box(mask, at_most=2)] == [225, 101]
    assert protocol.pieces_to_box(np.zeros((4, 4), dtype=bool), at_most=3) == []
