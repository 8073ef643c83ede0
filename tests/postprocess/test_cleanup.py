"""Clean-up operations with known answers, in physical units on anisotropic grids."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.postprocess.cleanup import (
    CleanupOptions,
    clean_label_map,
    fill_holes,
    keep_largest_component,
    remove_small_islands,
    smooth,
)

ANISO = (2.0, 0.5, 0.5)  # voxel volume 0.5 mm³


def test_fill_holes_fills_exactly_the_enclosed_cavity():
    mask = np.zeros((9, 9, 9), bool)
    mask[1:8, 1:8, 1:8] = True
    mask[3:5, 3:6, 3:5] = False  # a 2x3x2 = 12-voxel cavity
    filled = fill_holes(mask)
    assert np.count_nonzero(filled & ~mask) == 12
    assert filled[1:8, 1:8, 1:8].all()


def test_per_slice_fill_closes_a_tube_that_3d_fill_leaves_open():
    tube = np.zeros((5, 9, 9), bool)
    tube[:, 2:7, 2:7] = True
    tube[:, 4, 4] = False  # a channel running through every slice: open at both ends in 3-D
    assert np.array_equal(fill_holes(tube), tube)
    per_slice = fill_holes(tube, per_slice_axis=0)
    assert np.count_nonzero(per_slice & ~tube) == 5


@pytest.mark.parametrize("n", [1, 7, 12])
def test_island_of_n_voxels_is_kept_at_n_and_removed_at_n_plus_1(n):
    mask = np.zeros((4, 20, 20), bool)
    mask[0:3, 0:10, 0:10] = True              # the big object (300 voxels)
    island = np.zeros_like(mask)
    island.reshape(-1)[np.ravel_multi_index((np.full(n, 3), np.full(n, 15), 5 + np.arange(n)), mask.shape)] = True
    mask |= island
    voxel_mm3 = float(np.prod(ANISO))
    kept = remove_small_islands(mask, n * voxel_mm3, ANISO)
    removed = remove_small_islands(mask, (n + 1) * voxel_mm3, ANISO)
    assert np.array_equal(kept, mask)
    assert np.array_equal(removed, mask & ~island)


def test_island_threshold_is_in_mm3_not_voxels():
    mask = np.zeros((3, 10, 10), bool)
    mask[1, 1:3, 1:3] = True  # 4 voxels
    # 4 voxels are 2 mm³ at 0.5 mm³ per voxel, 32 mm³ at 8 mm³ per voxel
    assert remove_small_islands(mask, 2.0, ANISO).any()
    assert not remove_small_islands(mask, 2.1, ANISO).any()
    assert remove_small_islands(mask, 32.0, (2.0, 2.0, 2.0)).any()
    assert not remove_small_islands(mask, 33.0, (2.0, 2.0, 2.0)).any()


def test_per_slice_islands_use_pixel_area_in_mm2():
    mask = np.zeros((3, 10, 10), bool)
    mask[1, 1:3, 1:3] = True  # 4 pixels of 0.25 mm² = 1 mm²
    assert remove_small_islands(mask, 1.0, ANISO, per_slice_axis=0).any()
    assert not remove_small_islands(mask, 1.01, ANISO, per_slice_axis=0).any()


def test_keep_largest_component():
    mask = np.zeros((5, 10, 10), bool)
    mask[0:2, 0:3, 0:3] = True   # 18
    mask[3:5, 5:9, 5:9] = True   # 32
    assert np.count_nonzero(keep_largest_component(mask)) == 32


def test_smoothing_sigma_is_in_mm_along_each_axis():
    # A plate one slice thick: 5 mm thick at 5 mm slices survives 1 mm smoothing, while the
    # same one-slice plate at 1 mm slices (1 mm thick) is blurred away.
    plate = np.zeros((9, 30, 30), bool)
    plate[4, 5:25, 5:25] = True
    thick = smooth(plate, 1.0, (5.0, 1.0, 1.0))
    thin = smooth(plate, 1.0, (1.0, 1.0, 1.0))
    assert np.count_nonzero(thick & plate) > 0.8 * plate.sum()
    assert not thin.any()


def test_smoothing_removes_a_one_voxel_spike_and_keeps_a_ball():
    z, y, x = np.mgrid[:21, :21, :21]
    ball = (z - 10) ** 2 + (y - 10) ** 2 + (x - 10) ** 2 <= 36
    spiky = ball.copy()
    spiky[10, 10, 16:20] = True
    out = smooth(spiky, 1.0, (1.0, 1.0, 1.0))
    assert not out[10, 10, 18:20].any()
    assert abs(int(out.sum()) - int(ball.sum())) < 0.1 * ball.sum()


def test_clean_label_map_reports_changes_and_never_paints_over_other_labels():
    array = np.zeros((3, 12, 12), np.uint16)
    array[:, 1:8, 1:8] = 1
    array[1, 3:5, 4] = 2          # label 2 (2 voxels = 1 mm³) sits inside a "hole" of label 1
    array[1, 5, 5] = 0            # a real one-voxel hole of label 1
    array[0, 10, 10] = 1          # a one-voxel island of label 1
    options = CleanupOptions(fill_holes=True, min_size_mm3=2 * 0.5)
    out, changes = clean_label_map(array, ANISO, options)
    by_id = {c.label_id: c for c in changes}
    assert (by_id[1].added, by_id[1].removed) == (1, 1)
    assert out[1, 3:5, 4].tolist() == [2, 2]  # kept (1 mm³ >= 1 mm³), not painted over
    assert out[1, 5, 5] == 1
    assert out[0, 10, 10] == 0
    assert (by_id[2].added, by_id[2].removed) == (0, 0)
    assert CleanupOptions().is_noop()
