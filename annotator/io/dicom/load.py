"""The two entry points: list the series under a path, and load one volume of one of them."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from annotator.core.errors import InputError
from annotator.core.volume import Volume
from annotator.io.dicom.pixels import read_planes, rescaled_stack
from annotator.io.dicom.resample import regularize_stack
from annotator.io.dicom.scan import series_plans
from annotator.io.dicom.stack import SeriesPlan, plan_affine_ras
from annotator.io.series import SeriesInfo

log = logging.getLogger(__name__)


def _no_series_error(path: Path, unreadable: list[str]) -> InputError:
    if unreadable:
        return InputError(path, f"no readable DICOM images; {len(unreadable)} damaged file(s), e.g. {unreadable[0]}")
    return InputError(path, "no DICOM images found" + (" in this folder (searched recursively)" if path.is_dir() else ""))


def _series_info(plan: SeriesPlan, path: Path) -> SeriesInfo:
    warnings_list = list(plan.warnings)
    if plan.refusal:
        warnings_list.insert(0, f"cannot be loaded: {plan.refusal}")
    elif plan.irregular:
        warnings_list.insert(0, "not a regular grid: loading refuses unless resampling is requested")
    first_volume = plan.frames_by_volume[0]
    return SeriesInfo(
        uid=plan.uid, source_path=str(path), format="dicom",
        shape_zyx=(len(first_volume), first_volume[0].rows, first_volume[0].cols),
        spacing_zyx_mm=plan.spacing_zyx_mm, affine_ras=plan_affine_ras(plan),
        n_volumes=len(plan.frames_by_volume), modality=plan.info["modality"],
        description=plan.info["series_description"], series_instance_uid=plan.series_instance_uid,
        series_number=plan.info["series_number"], n_files=len(plan.files),
        warnings=tuple(warnings_list), files=plan.files,
    )


def discover_dicom(path: str | os.PathLike[str]) -> list[SeriesInfo]:
    """Every DICOM series under `path` (a folder, searched recursively, or one file), headers only."""
    path = Path(path)
    plans, unreadable = series_plans(path)
    if not plans:
        raise _no_series_error(path, unreadable)
    return [_series_info(plan, path) for plan in plans]


def _choose_plan(path: Path, plans: list[SeriesPlan], series_uid: str | None) -> SeriesPlan:
    if series_uid is None:
        if len(plans) == 1:
            return plans[0]
        listing = "; ".join(f"{p.uid} ({p.info['modality']} '{p.info['series_description']}', "
                            f"{len(p.frames_by_volume[0])} slices)" for p in plans)
        raise InputError(path, f"holds {len(plans)} series; choose one with its UID: {listing}")
    exact = [p for p in plans if p.uid == series_uid]
    if exact:
        return exact[0]
    parts = [p for p in plans if p.series_instance_uid == series_uid]
    if len(parts) == 1:
        return parts[0]
    if parts:
        raise InputError(path, f"series {series_uid} has {len(parts)} parts that cannot be one volume; "
                               f"choose one of: {', '.join(p.uid for p in parts)}")
    raise InputError(path, f"no series with UID {series_uid}; found: {', '.join(p.uid for p in plans)}")


def load_dicom(path: str | os.PathLike[str], *, series_uid: str | None = None, volume_index: int = 0,
               regularize: bool = False) -> Volume:
    """One volume (time point `volume_index`) of one DICOM series under `path`."""
    path = Path(path)
    plans, unreadable = series_plans(path)
    if not plans:
        raise _no_series_error(path, unreadable)
    plan = _choose_plan(path, plans, series_uid)
    if plan.refusal:
        raise InputError(path, plan.refusal)
    if plan.irregular and not regularize:
        raise InputError(path, f"series {plan.uid}: {'; '.join(w for w in plan.warnings if 'tilt' in w or 'uneven' in w)}"
                               " - the slices are not a regular grid, so they are not stacked; "
                               "ask for resampling (convert --resample, regularize=True) to resample "
                               "them onto a regular grid in patient space")
    n_volumes = len(plan.frames_by_volume)
    if not 0 <= volume_index < n_volumes:
        raise InputError(path, f"volume {volume_index} requested but series {plan.uid} has {n_volumes} volume(s)")
    frames = plan.frames_by_volume[volume_index]
    planes, decode_warnings = read_planes(frames)
    stack = rescaled_stack(frames, planes)
    warnings_list = list(plan.warnings) + decode_warnings
    geometry: dict[str, Any] = {"spacing_zyx_mm": plan.spacing_zyx_mm, "origin_lps_mm": plan.origin_lps_mm,
                "direction_lps": plan.direction_lps}
    resampled = False
    if plan.irregular:
        stack, geometry = regularize_stack(plan, frames, stack)
        resampled = True
        warnings_list.append("slices resampled onto a regular grid in patient space (linear interpolation)")
    for message in warnings_list:
        log.warning("%s: %s", path, message)
    info = plan.info
    metadata: dict[str, Any] = {
        "source_path": str(path),
        "format": "dicom",
        "series_uid": plan.uid,
        "series_instance_uid": plan.series_instance_uid,
        "study_instance_uid": info["study_instance_uid"],
        "frame_of_reference_uid": info["frame_of_reference_uid"],
        "series_description": info["series_description"],
        "series_number": info["series_number"],
        "sop_class_uid": info["sop_class_uid"],
        "sop_instance_uids": [] if resampled else [f.sop_uid for f in frames],
        "frame_numbers": [] if resampled else [None if f.frame_index is None else f.frame_index + 1 for f in frames],
        "source_files": [] if resampled else [f.path for f in frames],
        "patient_name": info["patient_name"],
        "patient_id": info["patient_id"],
        "patient_birth_date": info["patient_birth_date"],
        "manufacturer": info["manufacturer"],
        "window_center": info["window_center"],
        "window_width": info["window_width"],
        "warnings": warnings_list,
        "resampled": resampled,
        "n_volumes": n_volumes,
        "volume_index": volume_index,
    }
    return Volume(np.ascontiguousarray(stack), modality=info["modality"], metadata=metadata, **geometry)
