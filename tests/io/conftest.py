"""Shared fixtures for io tests: the real data folder (skipped when absent) and small synthetic volumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from annotator.core.volume import Volume

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"shared test data not found at {DATA}")
    return DATA


def oblique_direction(angle_deg: float = 17.0) -> np.ndarray:
    """A rotation about x then z (LPS), so every axis is oblique and mistakes show up."""
    a, b = np.radians(angle_deg), np.radians(angle_deg / 2)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    return rz @ rx


@pytest.fixture
def oblique_volume() -> Volume:
    rng = np.random.default_rng(0)
    array = rng.integers(-1000, 2000, size=(7, 9, 11)).astype(np.int16)
    return Volume(array, spacing_zyx_mm=(2.5, 0.8, 0.7), origin_lps_mm=(-120.25, 33.5, 701.125),
                  direction_lps=oblique_direction(), modality="CT")
