"""Islands, holes and volumes per label, checked against scipy's own component labelling."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.postprocess.cleanup import fill_holes
from annotator.postprocess.findings import label_stats


def test_counts_islands_holes_and_volume():
    a = np.zeros((10, 12, 12), np.uint16)
    a[1:9, 1:9, 1:9] = 3
    a[4, 4, 4] = 0  # one enclosed hole voxel
    a[5:7, 5:7, 5:7] = 0  # a second hole, 8 voxels
    a[0, 11, 11] = 3  # an island, not touching the cube
    a[9, 0, 11] = 3
    a[9, 10:12, 0] = 7  # another label, one piece
    stats = {s.label_id: s for s in label_stats(a, (2.0, 1.0, 0.5))}
    s3 = stats[3]
    assert (s3.islands, s3.island_voxels, s3.holes, s3.hole_voxels) == (2, 2, 2, 9)
    assert s3.voxels == 8 ** 3 - 9 + 2
    assert s3.volume_ml == pytest.approx(s3.voxels * 1.0 / 1000)
    assert (stats[7].islands, stats[7].holes, stats[7].voxels) == (0, 0, 2)
    # a hole is exactly what the clean-up's fill_holes fills
    assert int(np.count_nonzero(fill_holes(a == 3) & (a != 3))) == s3.hole_voxels


def test_diagonal_touch_is_one_piece_and_open_cavity_is_no_hole():
    a = np.zeros((3, 6, 6), np.uint8)
    a[1, 1, 1] = a[1, 2, 2] = 1  # diagonal neighbours: one piece (26-connectivity)
    a[:, 3:6, 3:6] = 2
    a[:, 4, 4] = 0  # a tunnel through the whole depth opens to the outside: not a hole
    stats = {s.label_id: s for s in label_stats(a, (1, 1, 1))}
    assert stats[1].islands == 0
    assert stats[2].holes == 0


def test_absent_labels_and_float_input():
    a = np.zeros((2, 2, 2), np.uint8)
    assert label_stats(a, (1, 1, 1), label_ids=[4])[0].voxels == 0
    with pytest.raises(ValueError, match="integers"):
        label_stats(a.astype(float), (1, 1, 1))
