"""From frames to a stack: frames of one series sorted into volumes x slices along the slice normal,
and the regular grid they define, or why they define none (missing slice, uneven gaps, gantry tilt)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from annotator.core.volume import affine_ras_of
from annotator.io.dicom.frames import Frame

IOP_TOL = 1e-3          # direction cosines equal within this are one orientation
POSITION_TOL_MM = 1e-2  # slice positions closer than this along the normal are one position
GAP_REL_TOL = 0.01      # slice gaps may vary by 1 % (scanner rounding) and still be "even"


@dataclass
class SeriesPlan:
    """Everything needed to load one series, worked out from headers."""

    uid: str
    series_instance_uid: str
    info: dict[str, Any]
    frames_by_volume: list[list[Frame]]   # [volume][slice], slices sorted along the normal
    spacing_zyx_mm: tuple[float, float, float]
    origin_lps_mm: tuple[float, float, float]
    direction_lps: np.ndarray
    warnings: list[str] = field(default_factory=list)
    refusal: str | None = None        # why this series cannot be loaded as is
    irregular: bool = False           # tilt or uneven gaps: loadable only with regularize=True
    slice_positions_mm: np.ndarray | None = None
    files: tuple[str, ...] = ()



@dataclass
class StackGeometry:
    """The grid one part of a series defines, or why it cannot be loaded as is."""

    frames_by_volume: list[list[Frame]]
    spacing_zyx_mm: tuple[float, float, float]
    origin_lps_mm: tuple[float, float, float]
    direction_lps: np.ndarray
    slice_positions_mm: np.ndarray
    warnings: list[str] = field(default_factory=list)
    refusal: str | None = None
    irregular: bool = False


def cluster_orientations(frames: list[Frame]) -> list[list[Frame]]:
    clusters: list[tuple[np.ndarray, list[Frame]]] = []
    for frame in frames:
        for iop, members in clusters:
            if np.allclose(iop, frame.iop, atol=IOP_TOL):
                members.append(frame)
                break
        else:
            clusters.append((frame.iop, [frame]))
    return [members for _, members in clusters]


def _unique(frames: list[Frame]) -> list[Frame]:
    """Frames without copies of the same instance (the same file twice in a folder)."""
    seen: set[tuple[str, int | None, int | None]] = set()
    unique: list[Frame] = []
    for frame in frames:
        ident = (frame.sop_uid, frame.frame_index, frame.tile_index)
        if frame.sop_uid and ident in seen:
            continue
        seen.add(ident)
        unique.append(frame)
    return unique


def _positions(frames: list[Frame], normal: np.ndarray) -> tuple[list[list[Frame]], list[float]]:
    """Frames grouped by slice position along `normal` (ascending), and those positions in mm."""
    distances = np.array([float(f.ipp @ normal) for f in frames])
    positions: list[list[Frame]] = []
    position_mm: list[float] = []
    for i in np.argsort(distances, kind="stable"):
        if position_mm and abs(distances[i] - position_mm[-1]) <= POSITION_TOL_MM:
            positions[-1].append(frames[i])
        else:
            positions.append([frames[i]])
            position_mm.append(float(distances[i]))
    return positions, position_mm


def _uneven_counts(positions: list[list[Frame]], position_mm: list[float], uid: str) -> str | None:
    """Why positions holding different numbers of images cannot be volumes, or None."""
    counts = {len(p) for p in positions}
    if len(counts) <= 1:
        return None
    per_count = defaultdict(list)
    for mm, p in zip(position_mm, positions, strict=True):
        per_count[len(p)].append(mm)
    detail = ", ".join(f"{len(v)} position(s) with {k} image(s)" for k, v in sorted(per_count.items()))
    return f"series {uid}: slice positions hold different numbers of images ({detail}); a time point or slice is missing"


def _check_gaps(position_mm: list[float], positions: list[list[Frame]], uid: str, geo: StackGeometry) -> None:
    """A missing slice (gaps that are whole multiples of the spacing) refuses; other uneven gaps
    make the stack irregular (loadable only resampled)."""
    d = np.asarray(position_mm)
    gaps = np.diff(d)
    even_gap = (d[-1] - d[0]) / (len(d) - 1)
    tol = max(POSITION_TOL_MM, GAP_REL_TOL * even_gap)
    if np.max(np.abs(gaps - even_gap)) <= tol:
        return
    nominal = float(np.min(gaps))
    rounded = np.rint(gaps / nominal)
    if np.all(np.abs(gaps - rounded * nominal) <= max(POSITION_TOL_MM, GAP_REL_TOL * nominal)) and rounded.max() >= 2:
        k = int(np.argmax(rounded >= 2))
        missing = int(rounded.sum() - len(gaps))
        geo.refusal = (f"series {uid}: {missing} slice(s) missing (gap of {gaps[k]:.3f} mm between slice "
                       f"positions {d[k]:.3f} and {d[k + 1]:.3f} mm where the spacing is {nominal:.3f} mm; "
                       f"next to {Path(positions[k][0].path).name})")
    else:
        geo.irregular = True
        geo.warnings.append(f"uneven slice gaps ({gaps.min():.3f} to {gaps.max():.3f} mm)")


def _check_tilt(positions: list[list[Frame]], normal: np.ndarray, pixel_mm: float, geo: StackGeometry) -> None:
    """Gantry tilt: slice origins that do not move along the slice normal make the stack irregular."""
    ipps = np.array([p[0].ipp for p in positions])
    offsets = ipps - ipps[0]
    perpendicular = offsets - np.outer(offsets @ normal, normal)
    shear_mm = float(np.max(np.linalg.norm(perpendicular, axis=1)))
    if shear_mm > max(0.02, 0.1 * pixel_mm):
        geo.irregular = True
        stack = offsets[-1] / (np.linalg.norm(offsets[-1]) or 1.0)
        tilt = math.degrees(math.acos(min(1.0, abs(float(stack @ normal)))))
        geo.warnings.append(f"gantry tilt / sheared stack ({tilt:.2f} degrees between slice normal and slice positions)")


def plan_geometry(plan_frames: list[Frame], uid: str) -> StackGeometry:
    """Sort frames into volumes x slices and derive a regular grid, or say why there is none."""
    first = plan_frames[0]
    row_cos, col_cos = first.iop[:3], first.iop[3:]
    normal = first.normal if first.normal is not None else np.cross(row_cos, col_cos)
    normal = normal / (np.linalg.norm(normal) or 1.0)
    positions, position_mm = _positions(_unique(plan_frames), normal)
    refusal = _uneven_counts(positions, position_mm, uid)
    n_volumes = min(len(p) for p in positions)
    for p in positions:
        p.sort(key=lambda f: f.order_key)
    dy, dx = first.pixel_spacing
    if len(positions) == 1:
        hint = first.slice_spacing_hint
        spacing_z = hint if hint and hint > 0 else 1.0
    else:
        spacing_z = float((position_mm[-1] - position_mm[0]) / (len(positions) - 1))
    origin = positions[0][0].ipp
    geo = StackGeometry(
        frames_by_volume=[[p[v] for p in positions] for v in range(n_volumes)],
        spacing_zyx_mm=(float(spacing_z), float(dy), float(dx)),
        origin_lps_mm=(float(origin[0]), float(origin[1]), float(origin[2])),
        direction_lps=np.column_stack([row_cos, col_cos, normal]),
        slice_positions_mm=np.asarray(position_mm),
        refusal=refusal,
    )
    if len(positions) > 1:
        _check_gaps(position_mm, positions, uid, geo)
        _check_tilt(positions, normal, min(dx, dy), geo)
    if not first.has_geometry:
        geo.warnings.append("no patient position/orientation in the file: identity geometry assumed")
    return geo


def plan_affine_ras(plan: SeriesPlan) -> np.ndarray:
    """The NIfTI (RAS) affine of a plan's grid, for listing series without loading them."""
    return affine_ras_of(plan.direction_lps, plan.spacing_zyx_mm[::-1], plan.origin_lps_mm)
