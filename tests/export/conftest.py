"""Fixtures for export tests: small volumes with known geometry and label maps with known content."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.core.labels import LabelMap, LabelTable
from annotator.core.volume import Volume


def oblique_direction(angle_deg: float = 17.0) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    # rotation about the x (L) axis: an oblique acquisition like nibabel's someones_epi
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


@pytest.fixture
def volume() -> Volume:
    rng = np.random.default_rng(0)
    array = rng.integers(-1000, 1000, size=(6, 20, 24)).astype(np.int16)
    return Volume(array, spacing_zyx_mm=(3.0, 0.8, 0.7), origin_lps_mm=(-10.5, 20.25, 33.0),
                  direction_lps=oblique_direction(), modality="CT",
                  metadata={"patient_name": "DOE^JANE", "patient_id": "PID4711",
                            "patient_birth_date": "19700215"})


@pytest.fixture
def label_map(volume: Volume) -> LabelMap:
    table = LabelTable()
    table.add("liver", (200, 80, 60), label_id=1)
    table.add("kidney", (60, 200, 80), label_id=3)
    array = np.zeros(volume.shape_zyx, dtype=np.uint16)
    array[1, 2:8, 3:10] = 1          # a rectangle
    array[1, 12:15, 15:18] = 1       # a second component of the same label on the same slice
    array[3, 5:15, 5:15] = 3         # a square with a hole
    array[3, 8:11, 8:11] = 0
    array[4, 0:4, 20:24] = 3         # touches the image border
    return LabelMap(volume.shape_zyx, table, array=array)
