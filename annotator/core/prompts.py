"""Prompts in raw-slice pixel coordinates (x = column, y = row): points, a box, an immutable set."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PointPrompt:
    """A click at pixel (x, y) of a raw slice; positive = "this is the structure"."""

    x: float
    y: float
    positive: bool = True


@dataclass(frozen=True)
class BoxPrompt:
    """A box [x_min, y_min, x_max, y_max] in raw-slice pixel indices, inclusive corners."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float

    def __post_init__(self) -> None:
        if self.x_max < self.x_min or self.y_max < self.y_min:
            raise ValueError(f"box corners out of order: {self.xyxy()}")

    @classmethod
    def from_corners(cls, x0: float, y0: float, x1: float, y1: float) -> BoxPrompt:
        return cls(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    @classmethod
    def of_mask(cls, mask_hw: np.ndarray) -> BoxPrompt | None:
        """Tight box around the True pixels of a (H, W) mask, or None if it is empty."""
        rows = np.flatnonzero(mask_hw.any(axis=1))
        cols = np.flatnonzero(mask_hw.any(axis=0))
        if rows.size == 0:
            return None
        return cls(float(cols[0]), float(rows[0]), float(cols[-1]), float(rows[-1]))

    def xyxy(self) -> np.ndarray:
        return np.array([self.x_min, self.y_min, self.x_max, self.y_max], dtype=np.float64)


@dataclass(frozen=True, eq=False)
class BaseMask:
    """A label's mask on the slice when the user began clicking there (propagated, or accepted
    before): the clicks correct it instead of starting afresh. `window` is the model input window
    (low, high) it was made in, None when unknown (the default is used)."""

    label_id: int
    mask: np.ndarray
    window: tuple[float, float] | None = None


@dataclass(frozen=True)
class PromptSet:
    """Everything the user said about one slice: clicks in order, at most one box, and the mask the
    clicks correct when there is no box."""

    points: tuple[PointPrompt, ...] = ()
    box: BoxPrompt | None = None
    base: BaseMask | None = None

    def __bool__(self) -> bool:
        return bool(self.points) or self.box is not None

    def with_point(self, point: PointPrompt) -> PromptSet:
        return PromptSet(self.points + (point,), self.box, self.base)

    def with_box(self, box: BoxPrompt | None) -> PromptSet:
        return PromptSet(self.points, box, self.base if box is None else None)

    def points_xy(self) -> np.ndarray:
        """(N, 2) float64, pixel x then y."""
        return np.array([[p.x, p.y] for p in self.points], dtype=np.float64).reshape(-1, 2)

    def point_labels(self) -> np.ndarray:
        """(N,) int64: 1 positive, 0 negative (SAM's convention)."""
        return np.array([1 if p.positive else 0 for p in self.points], dtype=np.int64)
