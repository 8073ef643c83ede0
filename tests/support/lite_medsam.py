"""Shared, process-wide pieces of the LiteMedSAM tests: one loaded engine (torch fp32, the reference
runtime) and the labelled shared CT, so the tests load weights and data once."""

from __future__ import annotations

import threading
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

CASE_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "labelled" / "ct_totalseg_abdomen_3mm"
LIVER, SPLEEN, KIDNEY_RIGHT, KIDNEY_LEFT = 5, 1, 2, 3


def require_case() -> Path:
    if not (CASE_DIR / "image.nii.gz").is_file():
        pytest.skip(f"shared labelled CT not found at {CASE_DIR}")
    return CASE_DIR


@lru_cache(maxsize=1)
def torch_engine():
    """The bundled LiteMedSAM on torch fp32 (the reference our other runtimes are checked against)."""
    from annotator.engine.lite_medsam.engine import LiteMedSamEngine

    return LiteMedSamEngine.load(checkpoint=None, device="cpu", runtime="torch")


@lru_cache(maxsize=1)
def shared_case():
    """(Volume, LabelMap) of the shared abdominal CT, read through annotator.io."""
    from annotator.io import load_volume, read_labels_onto

    case = require_case()
    volume = load_volume(case / "image.nii.gz")
    return volume, read_labels_onto(volume, case / "labels.nii.gz")


def largest_slice(labels: np.ndarray, label: int) -> int:
    return int(np.argmax(np.count_nonzero(labels == label, axis=(1, 2))))


def tight_box(mask: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * np.count_nonzero(a & b) / max(1, a.sum() + b.sum())


class CountingEngine:
    """Wraps an engine and counts encoder runs per distinct slice image (to prove "at most once")."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self.embeds: Counter[bytes] = Counter()
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def embed(self, image_hw3_u8, **kwargs):
        import hashlib

        # Counted when the encoder actually ran: a call refused because its cancel event was set
        # (a superseded prefetch) costs nothing and is not an embedding.
        embedding = self._engine.embed(image_hw3_u8, **kwargs)
        with self._lock:
            self.embeds[hashlib.sha1(np.ascontiguousarray(image_hw3_u8).tobytes()).digest()] += 1
        return embedding

    def predict(self, embedding, **kwargs):
        return self._engine.predict(embedding, **kwargs)
