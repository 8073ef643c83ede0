"""One entry point per operation (load, discover, write) that picks the reader/writer from the path."""

from __future__ import annotations

import os
from pathlib import Path

from annotator.core.errors import InputError
from annotator.core.volume import Volume
from annotator.io import nifti
from annotator.io.series import SeriesInfo


def source_format(path: str | os.PathLike[str]) -> str:
    """'dicom-folder', 'nifti', 'itk' or 'dicom' (any other single file is tried as DICOM)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "does not exist")
    if path.is_dir():
        return "dicom-folder"
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty (0 bytes)")
    if nifti.has_suffix(path, nifti.NIFTI_SUFFIXES):
        return "nifti"
    if nifti.has_suffix(path, nifti.ITK_SUFFIXES):
        return "itk"
    return "dicom"


def load_volume(path: str | os.PathLike[str], *, series_uid: str | None = None,
                volume_index: int = 0, regularize: bool = False) -> Volume:
    """Load a file or folder as one 3-D Volume.

    A folder is scanned for DICOM series; with several series and no `series_uid` an InputError
    lists them. `volume_index` picks a time point / volume of 4-D data (0 = first).
    DICOM slices that are not a regular grid (gantry tilt, uneven gaps) raise InputError unless
    `regularize=True`, which resamples them onto a regular grid in patient space (with a warning
    in metadata["warnings"] and metadata["resampled"] = True).
    """
    kind = source_format(path)
    if volume_index < 0:
        raise InputError(path, f"volume index must be >= 0, got {volume_index}")
    try:
        if kind == "nifti":
            return nifti.load_nifti(path, volume_index=volume_index)
        if kind == "itk":
            return nifti.load_itk(path, volume_index=volume_index)
        from annotator.io import dicom

        return dicom.load_dicom(path, series_uid=series_uid, volume_index=volume_index, regularize=regularize)
    except ValueError as exc:
        # Volume() validates geometry (zero spacing, singular direction) from the file's values
        raise InputError(path, f"cannot be loaded: {exc}") from exc


def discover_series(path: str | os.PathLike[str]) -> list[SeriesInfo]:
    """Every loadable image under `path` from headers only (no voxel data is decoded)."""
    kind = source_format(path)
    if kind in ("nifti", "itk"):
        geo = nifti.nifti_header_geometry(path) if kind == "nifti" else nifti.itk_header_geometry(path)
        fmt = "nifti" if kind == "nifti" else Path(path).suffix.lower().lstrip(".")
        return [SeriesInfo(
            uid=str(path), source_path=str(path), format=fmt, shape_zyx=tuple(geo["shape_zyx"]),
            spacing_zyx_mm=tuple(geo["spacing_zyx_mm"]), affine_ras=geo["affine_ras"],
            n_volumes=int(geo["n_volumes"]), description=geo["description"], files=(str(path),),
        )]
    from annotator.io import dicom

    return dicom.discover_dicom(path)


def write_volume(volume: Volume, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Write NIfTI (.nii/.nii.gz), NRRD (.nrrd) or MetaImage (.mha) with the Volume's exact geometry.

    The write is atomic (temporary file + rename). An existing file is replaced only with
    overwrite=True.
    """
    path = Path(path)
    if not nifti.has_suffix(path, nifti.WRITE_SUFFIXES):
        raise InputError(path, f"unsupported output type; use one of {', '.join(nifti.WRITE_SUFFIXES)}")
    if path.exists() and not overwrite:
        raise InputError(path, "already exists (refusing to overwrite; ask for overwrite explicitly)")
    if path.is_dir():
        raise InputError(path, "is a folder, not a file name")
    if nifti.has_suffix(path, nifti.NIFTI_SUFFIXES):
        nifti.write_nifti(volume, path)
    else:
        nifti.write_itk(volume, path)
