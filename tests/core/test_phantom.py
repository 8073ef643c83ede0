"""The demo phantom is deterministic, CT-like and anatomically placed (liver on the patient's right)."""

from __future__ import annotations

import numpy as np

from annotator.core.geometry import display_orientation
from annotator.core.phantom import DEMO_SHAPE_ZYX, PHANTOM_LABELS, demo_volume, make_phantom


def test_demo_volume_has_the_promised_grid():
    vol = demo_volume()
    assert vol.shape_zyx == DEMO_SHAPE_ZYX == (64, 256, 256)
    assert vol.spacing_zyx_mm == (2.5, 0.8, 0.8)
    assert all(o != 0 for o in vol.origin_lps_mm)
    assert vol.modality == "CT"
    assert vol.array.dtype == np.int16


def test_phantom_is_deterministic_and_seed_dependent():
    a = make_phantom((16, 48, 48), (5.0, 4.0, 4.0))
    b = make_phantom((16, 48, 48), (5.0, 4.0, 4.0))
    c = make_phantom((16, 48, 48), (5.0, 4.0, 4.0), seed=1)
    assert a.volume.content_id == b.volume.content_id
    assert np.array_equal(a.truth.array, b.truth.array)
    assert a.volume.content_id != c.volume.content_id
    assert np.array_equal(a.truth.array, c.truth.array)  # noise only, same anatomy


def test_hounsfield_values_are_realistic_per_structure():
    ph = make_phantom()
    img, truth = ph.volume.array, ph.truth.array
    assert int(img[0, 0, 0]) < -900  # air outside the body
    expected = {"liver": (45, 75), "spleen": (35, 60), "kidney_right": (20, 45), "aorta": (150, 190),
                "liver_lesion": (0, 30)}
    for label_id, (name, _) in PHANTOM_LABELS.items():
        if name not in expected:
            continue
        median = float(np.median(img[truth == label_id]))
        lo, hi = expected[name]
        assert lo <= median <= hi, (name, median)
    assert float(np.median(img[truth == 6])) > 200  # bone
    assert (img < -700).sum() > 0
    assert (img > 700).sum() > 0


def test_every_structure_is_present_and_the_lesion_is_inside_the_liver():
    ph = make_phantom()
    counts = ph.truth.voxel_counts()
    assert set(counts) == set(PHANTOM_LABELS)
    lesion = ph.truth.array == 7
    grown = np.zeros_like(lesion)
    grown[:, 1:-1, 1:-1] = lesion[:, :-2, 1:-1] | lesion[:, 2:, 1:-1] | lesion[:, 1:-1, :-2] | lesion[:, 1:-1, 2:]
    rim = grown & ~lesion
    assert np.all(ph.truth.array[rim] == 1)  # surrounded by liver in-plane


def test_liver_lies_on_the_patient_right_and_shows_on_screen_left():
    ph = make_phantom()
    vol = ph.volume
    zz, yy, xx = np.nonzero(ph.truth.array == 1)
    centre_world = vol.index_zyx_to_world_lps(np.array([zz.mean(), yy.mean(), xx.mean()]))
    body_centre = vol.index_zyx_to_world_lps((np.array(vol.shape_zyx) - 1) / 2.0)
    assert centre_world[0] < body_centre[0]  # LPS x smaller = patient right
    orient = display_orientation(vol, 0)
    assert orient.edge_letters[:2] == ("R", "L")
    displayed = orient.apply(ph.truth.array[int(zz.mean())] == 1)
    cols = np.nonzero(displayed)[1]
    assert cols.mean() < displayed.shape[1] / 2
