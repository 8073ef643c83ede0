"""SeriesInfo: what a header-only scan knows about one loadable image (DICOM series or image file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from annotator.core.volume import lps_of_ras

_PLANE_BY_NORMAL_AXIS = {0: "sagittal", 1: "coronal", 2: "axial"}


def orientation_name(direction_lps: np.ndarray, tol_deg: float = 0.5) -> str:
    """'axial', 'coronal' or 'sagittal' from the slice normal; 'oblique axial' etc. when tilted."""
    direction = np.asarray(direction_lps, dtype=np.float64)
    normal = np.cross(direction[:, 0], direction[:, 1])
    norm = np.linalg.norm(normal)
    if norm < 1e-9:
        return "unknown"
    normal = np.abs(normal / norm)
    axis = int(np.argmax(normal))
    plane = _PLANE_BY_NORMAL_AXIS[axis]
    angle = float(np.degrees(np.arccos(min(1.0, normal[axis]))))
    return plane if angle <= tol_deg else f"oblique {plane}"


def axis_codes_ras(affine_ras: np.ndarray) -> str:
    """Three letters (e.g. 'LAS') naming where index axes i, j, k point, as nibabel's aff2axcodes."""
    matrix = np.asarray(affine_ras, dtype=np.float64)[:3, :3]
    letters = (("L", "R"), ("P", "A"), ("I", "S"))
    codes = []
    for col in range(3):
        vec = matrix[:, col]
        row = int(np.argmax(np.abs(vec)))
        codes.append(letters[row][1] if vec[row] > 0 else letters[row][0])
    return "".join(codes)


@dataclass(frozen=True)
class SeriesInfo:
    """One loadable image found by discover_series; pass `uid` to load_volume(series_uid=...).

    uid is the DICOM SeriesInstanceUID, made unique with a '#n' suffix when one UID holds several
    images that cannot be one volume (different series numbers, orientations, sizes, image types).
    For a NIfTI/NRRD/MHA file, uid is the file path.
    """

    uid: str
    source_path: str
    format: str
    shape_zyx: tuple[int, int, int]
    spacing_zyx_mm: tuple[float, float, float]
    affine_ras: np.ndarray
    n_volumes: int = 1
    modality: str = ""
    description: str = ""
    series_instance_uid: str = ""
    series_number: int | None = None
    n_files: int = 1
    warnings: tuple[str, ...] = ()
    files: tuple[str, ...] = field(default=(), repr=False)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def orientation(self) -> str:
        direction = lps_of_ras(np.asarray(self.affine_ras)[:3, :3])
        return orientation_name(direction / np.linalg.norm(direction, axis=0))

    @property
    def axis_codes(self) -> str:
        return axis_codes_ras(self.affine_ras)

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "series_instance_uid": self.series_instance_uid,
            "series_number": self.series_number,
            "description": self.description,
            "modality": self.modality,
            "format": self.format,
            "source_path": self.source_path,
            "n_files": self.n_files,
            "n_volumes": self.n_volumes,
            "shape_zyx": [int(v) for v in self.shape_zyx],
            "spacing_zyx_mm": [round(float(v), 6) for v in self.spacing_zyx_mm],
            "affine_ras": [[round(float(v), 6) for v in row] for row in np.asarray(self.affine_ras)],
            "orientation": self.orientation,
            "axis_codes_ras": self.axis_codes,
            "warnings": list(self.warnings),
        }
