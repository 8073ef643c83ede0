"""Volume: voxels indexed (z, y, x) plus the patient-space geometry every other module relies on."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# DICOM/ITK world space is LPS, NIfTI's is RAS: the two differ by flipping the first two axes.
# The only copy of that fact; readers and writers convert through the functions below.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def affine_ras_of(direction_lps: np.ndarray, spacing_xyz_mm: tuple[float, ...] | np.ndarray,
                  origin_lps_mm: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """4x4 NIfTI-convention affine (index (x, y, z) to world RAS mm) of an LPS grid."""
    affine = np.eye(4)
    affine[:3, :3] = LPS_TO_RAS @ np.asarray(direction_lps, dtype=np.float64) @ np.diag(np.asarray(spacing_xyz_mm, dtype=np.float64))
    affine[:3, 3] = LPS_TO_RAS @ np.asarray(origin_lps_mm, dtype=np.float64)
    return affine


def lps_of_ras(matrix_or_vector: np.ndarray) -> np.ndarray:
    """RAS rows (a 3x3 matrix or a 3-vector) as LPS (the flip is its own inverse)."""
    return LPS_TO_RAS @ np.asarray(matrix_or_vector, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3-D scalar image on a regular grid in LPS patient space (the DICOM/ITK convention).

    array:            (Z, Y, X) voxels; axis 2 (x) is the image column, axis 1 (y) the row.
    spacing_zyx_mm:   voxel size along array axes 0, 1, 2 in mm.
    origin_lps_mm:    world position (L, P, S) of the centre of voxel (0, 0, 0).
    direction_lps:    3x3 ITK direction matrix: column c is the unit world (LPS) vector of index
                      axis c, where index axes are ordered (x, y, z) as ITK orders them.
    modality:         "CT", "MR", ... or "" when unknown.
    metadata:         free-form facts from the source (series UID, description, source paths,
                      per-slice SOP instance UIDs, patient fields needed for de-identification).
    """

    array: np.ndarray
    spacing_zyx_mm: tuple[float, float, float]
    origin_lps_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction_lps: np.ndarray = field(default_factory=lambda: np.eye(3))
    modality: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"Volume array must be 3-D (z, y, x), got shape {self.array.shape}")
        spacing = tuple(float(s) for s in self.spacing_zyx_mm)
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise ValueError(f"spacing must be three positive numbers, got {self.spacing_zyx_mm}")
        origin = tuple(float(o) for o in self.origin_lps_mm)
        if len(origin) != 3 or not all(np.isfinite(origin)):
            raise ValueError(f"origin must be three finite numbers, got {self.origin_lps_mm}")
        direction = np.asarray(self.direction_lps, dtype=np.float64).reshape(3, 3)
        if not np.all(np.isfinite(direction)) or abs(np.linalg.det(direction)) < 1e-6:
            raise ValueError(f"direction matrix is singular or not finite: {direction.tolist()}")
        object.__setattr__(self, "spacing_zyx_mm", spacing)
        object.__setattr__(self, "origin_lps_mm", origin)
        direction.setflags(write=False)
        object.__setattr__(self, "direction_lps", direction)

    # ---- shape -------------------------------------------------------------------------------
    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing_xyz_mm(self) -> tuple[float, float, float]:
        return tuple(reversed(self.spacing_zyx_mm))  # type: ignore[return-value]

    # ---- geometry ----------------------------------------------------------------------------
    def affine_lps(self) -> np.ndarray:
        """4x4 matrix mapping homogeneous index (x, y, z, 1) to world LPS mm."""
        affine = np.eye(4)
        affine[:3, :3] = self.direction_lps @ np.diag(self.spacing_xyz_mm)
        affine[:3, 3] = self.origin_lps_mm
        return affine

    def affine_ras(self) -> np.ndarray:
        """4x4 NIfTI-convention affine: index (i, j, k) = (x, y, z) to world RAS mm."""
        return affine_ras_of(self.direction_lps, self.spacing_xyz_mm, self.origin_lps_mm)

    def index_zyx_to_world_lps(self, index_zyx: np.ndarray) -> np.ndarray:
        """(..., 3) index (z, y, x), fractional allowed -> (..., 3) world LPS mm."""
        idx = np.asarray(index_zyx, dtype=np.float64)[..., ::-1]
        affine = self.affine_lps()
        return idx @ affine[:3, :3].T + affine[:3, 3]

    def world_lps_to_index_zyx(self, world_lps: np.ndarray) -> np.ndarray:
        """(..., 3) world LPS mm -> (..., 3) fractional index (z, y, x)."""
        affine = self.affine_lps()
        xyz = (np.asarray(world_lps, dtype=np.float64) - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
        return xyz[..., ::-1]

    def index_zyx_to_world_ras(self, index_zyx: np.ndarray) -> np.ndarray:
        return self.index_zyx_to_world_lps(index_zyx) * np.array([-1.0, -1.0, 1.0])

    def world_ras_to_index_zyx(self, world_ras: np.ndarray) -> np.ndarray:
        return self.world_lps_to_index_zyx(np.asarray(world_ras, dtype=np.float64) * np.array([-1.0, -1.0, 1.0]))

    def same_grid(self, other: Volume | Any, atol_mm: float = 1e-4) -> bool:
        """True when `other` (anything with shape_zyx/spacing/origin/direction) lies on this grid."""
        return not grid_differences(self, other, atol_mm)

    # ---- identity ----------------------------------------------------------------------------
    @property
    def content_id(self) -> str:
        """Stable hex id of voxels + geometry: equal data gives an equal id on any machine."""
        cached = self.__dict__.get("_content_id")
        if cached is None:
            h = hashlib.blake2b(digest_size=16)
            arr = np.ascontiguousarray(self.array)
            if arr.dtype.byteorder == ">":  # same voxels read from a big-endian file hash the same
                arr = arr.astype(arr.dtype.newbyteorder("="))
            h.update(f"{arr.dtype.str}{arr.shape}".encode())
            h.update(arr.tobytes())
            h.update(np.round(self.affine_lps(), 6).tobytes())
            cached = h.hexdigest()
            object.__setattr__(self, "_content_id", cached)
        return cached

    def with_array(self, array: np.ndarray, **changes: Any) -> Volume:
        """A new Volume on the same geometry with other voxels (e.g. a cast or a time point)."""
        kwargs: dict[str, Any] = {
            "spacing_zyx_mm": self.spacing_zyx_mm,
            "origin_lps_mm": self.origin_lps_mm,
            "direction_lps": self.direction_lps,
            "modality": self.modality,
            "metadata": dict(self.metadata),
        }
        kwargs.update(changes)
        return Volume(array, **kwargs)


def grid_differences(a: Any, b: Any, atol_mm: float = 1e-4) -> list[str]:
    """Human-readable list of how grid `b` differs from grid `a` (empty when identical)."""
    diffs: list[str] = []
    if tuple(a.shape_zyx) != tuple(b.shape_zyx):
        diffs.append(f"shape (z,y,x) {tuple(a.shape_zyx)} vs {tuple(b.shape_zyx)}")
    if not np.allclose(a.spacing_zyx_mm, b.spacing_zyx_mm, atol=atol_mm, rtol=0):
        diffs.append(f"spacing (z,y,x) mm {_fmt(a.spacing_zyx_mm)} vs {_fmt(b.spacing_zyx_mm)}")
    if not np.allclose(a.origin_lps_mm, b.origin_lps_mm, atol=max(atol_mm, 1e-3), rtol=0):
        diffs.append(f"origin LPS mm {_fmt(a.origin_lps_mm)} vs {_fmt(b.origin_lps_mm)}")
    if not np.allclose(a.direction_lps, b.direction_lps, atol=1e-4, rtol=0):
        diffs.append(
            f"direction {np.round(np.asarray(a.direction_lps), 4).tolist()} vs "
            f"{np.round(np.asarray(b.direction_lps), 4).tolist()}"
        )
    return diffs


def _fmt(values: Any) -> str:
    return "(" + ", ".join(f"{float(v):.4f}" for v in values) + ")"
