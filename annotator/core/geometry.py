"""Geometry helpers: anatomical planes of a volume, slice extraction, display orientation, windowing."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np

from annotator.core.volume import Volume

Plane = Literal["axial", "coronal", "sagittal"]
PLANES: tuple[Plane, ...] = ("axial", "coronal", "sagittal")

# World (LPS) axis that each plane is perpendicular to: axial ⟂ S, coronal ⟂ P, sagittal ⟂ L.
_PLANE_NORMAL_WORLD_AXIS: dict[Plane, int] = {"axial": 2, "coronal": 1, "sagittal": 0}
# Radiological display convention (as ITK-SNAP and 3D Slicer): (screen-right, screen-down) in LPS.
_PLANE_SCREEN_AXES_LPS = {
    "axial": (np.array([1.0, 0, 0]), np.array([0, 1.0, 0])),  # right = patient left, down = posterior
    "coronal": (np.array([1.0, 0, 0]), np.array([0, 0, -1.0])),  # right = patient left, down = inferior
    "sagittal": (np.array([0, 1.0, 0]), np.array([0, 0, -1.0])),  # right = posterior, down = inferior
}


def array_axis_world_directions(volume: Volume) -> np.ndarray:
    """(3, 3): row a is the unit LPS direction of array axis a (a = 0 z, 1 y, 2 x)."""
    return np.asarray(volume.direction_lps).T[::-1]


def world_axis_of_array_axes(volume: Volume) -> tuple[int, int, int]:
    """For array axes (z, y, x), the world axis (0 L, 1 P, 2 S) each runs closest to.

    Chosen as the permutation with the largest total alignment, so an oblique volume still maps
    each array axis to a distinct world axis.
    """
    dirs = np.abs(array_axis_world_directions(volume))
    best = max(itertools.permutations(range(3)), key=lambda p: sum(dirs[a, p[a]] for a in range(3)))
    return tuple(int(v) for v in best)  # type: ignore[return-value]


def plane_array_axis(volume: Volume, plane: Plane) -> int:
    """Array axis (0 z, 1 y, 2 x) along which slices of `plane` are stacked."""
    if plane not in _PLANE_NORMAL_WORLD_AXIS:
        raise ValueError(f"unknown plane {plane!r}; expected one of {PLANES}")
    mapping = world_axis_of_array_axes(volume)
    return mapping.index(_PLANE_NORMAL_WORLD_AXIS[plane])


def array_axis_plane(volume: Volume, axis: int) -> Plane:
    """The anatomical plane whose slices are stacked along array `axis`."""
    world = world_axis_of_array_axes(volume)[axis]
    return next(p for p, w in _PLANE_NORMAL_WORLD_AXIS.items() if w == world)


def in_plane_axes(axis: int) -> tuple[int, int]:
    """Array axes of the (rows, cols) of a raw slice taken along `axis`."""
    return {0: (1, 2), 1: (0, 2), 2: (0, 1)}[axis]


def slice_2d(array: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Raw 2-D slice of a (z, y, x) array: rows/cols are the remaining array axes in order.

    axis 0 -> (y, x); axis 1 -> (z, x); axis 2 -> (z, y). A view, not a copy.
    """
    if not 0 <= index < array.shape[axis]:
        raise IndexError(f"slice {index} outside 0..{array.shape[axis] - 1} along axis {axis}")
    return np.take(array, index, axis=axis) if axis else array[index]


def slice_region(shape_zyx: tuple[int, ...], axis: int, index: int) -> tuple[slice, slice, slice]:
    """Index tuple selecting one raw slice as a 3-D region (keeps the axis, length 1)."""
    region = [slice(0, n) for n in shape_zyx]
    region[axis] = slice(index, index + 1)
    return tuple(region)  # type: ignore[return-value]


def slice_pixel_to_index_zyx(axis: int, index: int, row: float, col: float) -> tuple[float, float, float]:
    """Raw-slice pixel (row, col) on slice `index` along `axis` -> volume index (z, y, x)."""
    out = [0.0, 0.0, 0.0]
    out[axis] = float(index)
    r_axis, c_axis = in_plane_axes(axis)
    out[r_axis], out[c_axis] = float(row), float(col)
    return tuple(out)  # type: ignore[return-value]


@dataclass(frozen=True)
class DisplayOrientation:
    """How a raw slice is turned for display: optional transpose, then flips.

    display = raw.T if transpose else raw; then rows flipped if flip_rows, cols if flip_cols.
    row_spacing_mm / col_spacing_mm are the pixel sizes of the *displayed* image.
    """

    transpose: bool
    flip_rows: bool
    flip_cols: bool
    row_spacing_mm: float
    col_spacing_mm: float
    # Anatomical letters at the (left, right, top, bottom) edges of the displayed image.
    edge_letters: tuple[str, str, str, str]

    def apply(self, raw: np.ndarray) -> np.ndarray:
        img = raw.T if self.transpose else raw
        if self.flip_rows:
            img = img[::-1]
        if self.flip_cols:
            img = img[:, ::-1]
        return img

    def display_shape(self, raw_shape: tuple[int, int]) -> tuple[int, int]:
        return (raw_shape[1], raw_shape[0]) if self.transpose else (raw_shape[0], raw_shape[1])

    def display_to_raw(self, row: float, col: float, raw_shape: tuple[int, int]) -> tuple[float, float]:
        """Display pixel (row, col) -> raw slice pixel (row, col); fractional positions allowed."""
        disp_rows, disp_cols = self.display_shape(raw_shape)
        if self.flip_rows:
            row = disp_rows - 1 - row
        if self.flip_cols:
            col = disp_cols - 1 - col
        return (col, row) if self.transpose else (row, col)

    def raw_to_display(self, row: float, col: float, raw_shape: tuple[int, int]) -> tuple[float, float]:
        """Raw slice pixel (row, col) -> display pixel (row, col)."""
        if self.transpose:
            row, col = col, row
        disp_rows, disp_cols = self.display_shape(raw_shape)
        if self.flip_rows:
            row = disp_rows - 1 - row
        if self.flip_cols:
            col = disp_cols - 1 - col
        return row, col


_LETTERS_POS = ("L", "P", "S")
_LETTERS_NEG = ("R", "A", "I")


def _letter(vec_lps: np.ndarray) -> str:
    axis = int(np.argmax(np.abs(vec_lps)))
    return _LETTERS_POS[axis] if vec_lps[axis] > 0 else _LETTERS_NEG[axis]


def display_orientation(volume: Volume, axis: int) -> DisplayOrientation:
    """Radiological display of slices along `axis`: patient right on screen left, etc."""
    plane = array_axis_plane(volume, axis)
    right_lps, down_lps = _PLANE_SCREEN_AXES_LPS[plane]
    dirs = array_axis_world_directions(volume)
    r_axis, c_axis = in_plane_axes(axis)
    # Which raw axis should run horizontally on screen?
    transpose = abs(dirs[r_axis] @ right_lps) > abs(dirs[c_axis] @ right_lps)
    horiz_axis, vert_axis = (r_axis, c_axis) if transpose else (c_axis, r_axis)
    flip_cols = float(dirs[horiz_axis] @ right_lps) < 0
    flip_rows = float(dirs[vert_axis] @ down_lps) < 0
    spacing = volume.spacing_zyx_mm
    h_dir = dirs[horiz_axis] * (-1 if flip_cols else 1)
    v_dir = dirs[vert_axis] * (-1 if flip_rows else 1)
    letters = (_letter(-h_dir), _letter(h_dir), _letter(-v_dir), _letter(v_dir))
    return DisplayOrientation(
        transpose=bool(transpose),
        flip_rows=bool(flip_rows),
        flip_cols=bool(flip_cols),
        row_spacing_mm=float(spacing[vert_axis]),
        col_spacing_mm=float(spacing[horiz_axis]),
        edge_letters=letters,
    )


# ---- intensity windowing ---------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    """Intensity window as clinicians name it: centre (level) and width, in image units (HU for CT)."""

    center: float
    width: float

    @property
    def low(self) -> float:
        return self.center - self.width / 2.0

    @property
    def high(self) -> float:
        return self.center + self.width / 2.0

    @classmethod
    def from_bounds(cls, low: float, high: float) -> Window:
        if not high > low:
            raise ValueError(f"window upper bound {high} must exceed lower bound {low}")
        return cls(center=(low + high) / 2.0, width=high - low)

    def key(self) -> tuple[float, float]:
        """Rounded (low, high), stable enough to be part of a cache key."""
        return (round(self.low, 3), round(self.high, 3))


CT_PRESETS: dict[str, Window] = {
    "soft tissue": Window(40, 400),
    "abdomen": Window(40, 350),
    "liver": Window(60, 160),
    "lung": Window(-600, 1500),
    "bone": Window(400, 1800),
    "brain": Window(40, 80),
}


def apply_window(image: np.ndarray, window: Window) -> np.ndarray:
    """Clip to the window and scale to 0..255, truncated to uint8 (as LiteMedSAM's pre_CT_MR.py)."""
    low, high = window.low, window.high
    scaled = (np.clip(image.astype(np.float32), low, high) - low) * np.float32(255.0 / (high - low))
    return scaled.astype(np.uint8)


def percentile_window(array: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> Window:
    """MR auto window: the given percentiles of the nonzero voxels (LiteMedSAM's MR recipe)."""
    values = array[array != 0] if np.any(array != 0) else array.ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Window(0.5, 1.0)
    low, high = (float(v) for v in np.percentile(values, [low_pct, high_pct]))
    if high <= low:
        high = low + 1.0
    return Window.from_bounds(low, high)


def default_window(volume: Volume) -> Window:
    """Soft-tissue window for CT (by modality, or a minimum <= -500 as in a NIfTI CT); else percentiles."""
    is_ct = volume.modality.upper() == "CT" or (
        volume.modality == "" and np.issubdtype(volume.array.dtype, np.number) and float(volume.array.min()) <= -500
    )
    return CT_PRESETS["soft tissue"] if is_ct else percentile_window(volume.array)
