"""The in-plane motion of a structure along a propagation run (engine.propagate): a structure that
moves across the slice slips out of a box drawn around where it was, and the run's mask then
trails it and shrinks slice by slice (the shared CT's stomach stopped 14 slices early so)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from annotator.engine.propagation_pieces import pieces_to_follow


def drift_per_slice(masks: Sequence[np.ndarray], min_step_px: float) -> tuple[int, int]:
    """The (rows, cols) pixels the mask's centre moved per slice over `masks` (a run's last masks,
    in order), rounded, per axis only where every step moved at least `min_step_px` the same way:
    a centre's wobble is not motion. (0, 0) with fewer than two masks or an empty one."""
    if len(masks) < 2 or not all(m.any() for m in masks):
        return 0, 0
    centres = np.array([np.argwhere(m).mean(axis=0) for m in masks])
    steps = np.diff(centres, axis=0)
    drift = []
    for axis in range(2):
        moves = steps[:, axis]
        steady = bool(np.all(np.abs(moves) >= min_step_px) and (np.all(moves > 0) or np.all(moves < 0)))
        drift.append(int(round(float(moves.mean()))) if steady else 0)
    return drift[0], drift[1]


def shifted(mask: np.ndarray, drift: tuple[int, int]) -> np.ndarray:
    """`mask` moved by (rows, cols) pixels; what leaves the slice is dropped."""
    from scipy.ndimage import shift

    return shift(mask, drift, order=0, cval=False)


def steady_drift(masks: Sequence[np.ndarray], min_step_px: float, piece_side_px: float,
                 reach_px: float) -> tuple[int, int]:
    """drift_per_slice over a run's last masks while each is one piece (a centre between pieces
    tells nothing) and the drift is within a slice's reach; else (0, 0)."""
    if len(masks) < 2 or any(pieces_to_follow(m, piece_side_px) for m in masks):
        return 0, 0
    drift = drift_per_slice(masks, min_step_px)
    return drift if max(abs(drift[0]), abs(drift[1])) <= reach_px else (0, 0)
