"""One entry point per operation (load, discover, write) that picks the reader/writer from the path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from annotator.core.errors import InputError
from annotator.core.volume import Volume
from annotator.io import itk_image, nifti
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
    plugin_reader = _plugin_reader(path)
    if plugin_reader is not None:
        volume = plugin_reader(path)
        if not isinstance(volume, Volume):
            raise InputError(path, "the plugin reader for this file type returned no volume")
        return volume
    kind = source_format(path)
    if volume_index < 0:
        raise InputError(path, f"volume index must be >= 0, got {volume_index}")
    if kind == "dicom-folder":
        chosen = _image_file_in_folder(Path(path), series_uid)
        if chosen is not None:
            return load_volume(chosen, volume_index=volume_index)
    try:
        if kind == "nifti":
            return nifti.load_nifti(path, volume_index=volume_index)
        if kind == "itk":
            return itk_image.load_itk(path, volume_index=volume_index)
        from annotator.io import dicom

        return dicom.load_dicom(path, series_uid=series_uid, volume_index=volume_index, regularize=regularize)
    except ValueError as exc:
        # Volume() validates geometry (zero spacing, singular direction) from the file's values
        raise InputError(path, f"cannot be loaded: {exc}") from exc


def _plugin_reader(path: str | os.PathLike[str]) -> Any:
    """A plugin's image reader (`read(path) -> Volume`) claiming this file's suffix, if any; the
    builtin formats are read below, so plugins add formats rather than replace ours."""
    from annotator.builtins import manifest as builtins
    from annotator.plugin_host.manager import get_registry

    if Path(path).is_dir():
        return None
    chosen = get_registry().by_suffix("readers", Path(path).name,
                                      skip=frozenset(c.id for c in builtins.readers))
    return None if chosen is None else get_registry().get("readers", chosen)


def discover_series(path: str | os.PathLike[str]) -> list[SeriesInfo]:
    """Every loadable image under `path` from headers only (no voxel data is decoded)."""
    kind = source_format(path)
    if kind in ("nifti", "itk"):
        return [_file_info(Path(path))]
    from annotator.io import dicom

    if kind != "dicom-folder":
        return dicom.discover_dicom(path)
    files = [_file_info(f) for f in image_files(Path(path))]
    try:
        return dicom.discover_dicom(path) + files
    except InputError:
        if files:
            return files
        raise


def _file_info(path: Path) -> SeriesInfo:
    geo = nifti.nifti_header_geometry(path) if nifti.has_suffix(path, nifti.NIFTI_SUFFIXES) \
        else itk_image.itk_header_geometry(path)
    fmt = "nifti" if nifti.has_suffix(path, nifti.NIFTI_SUFFIXES) else path.suffix.lower().lstrip(".")
    return SeriesInfo(
        uid=str(path), source_path=str(path), format=fmt, shape_zyx=tuple(geo["shape_zyx"]),
        spacing_zyx_mm=tuple(geo["spacing_zyx_mm"]), affine_ras=geo["affine_ras"],
        n_volumes=int(geo["n_volumes"]), description=geo["description"], files=(str(path),),
    )


def image_files(folder: Path) -> list[Path]:
    """NIfTI / NRRD / MetaImage files under `folder` (recursive; hidden entries skipped)."""
    from annotator.io.folders import files_under

    return list(files_under(folder, lambda name: nifti.has_suffix(name, nifti.NIFTI_SUFFIXES + nifti.ITK_SUFFIXES)))


def _image_file_in_folder(folder: Path, series_uid: str | None) -> Path | None:
    """The NIfTI/NRRD/MHA file a folder load means, or None to load DICOM from the folder.

    A uid naming one of the folder's image files picks it; with no uid, a folder whose only
    image is one such file loads it (several images raise the usual 'choose one' error).
    """
    files = image_files(folder)
    if not files:
        return None
    if series_uid is not None:
        wanted = Path(series_uid)
        for file in files:
            if str(file) == series_uid or (wanted.exists() and file.resolve() == wanted.resolve()):
                return file
        return None
    from annotator.io import dicom

    try:
        series = dicom.discover_dicom(folder)
    except InputError:
        series = []
    if not series and len(files) == 1:
        return files[0]
    listing = "; ".join([s.uid for s in series] + [str(f) for f in files])
    raise InputError(folder, f"holds {len(series) + len(files)} images; choose one with its UID/path: {listing}")


def write_volume(volume: Volume, path: str | os.PathLike[str], *, overwrite: bool = False,
                 keep_description: bool = False) -> None:
    """Write NIfTI (.nii/.nii.gz), NRRD (.nrrd) or MetaImage (.mha) with the Volume's exact geometry.

    The write is atomic (temporary file + rename). An existing file is replaced only with
    overwrite=True. The source's free-text description (a series description may name the
    patient) goes into the NIfTI header only with keep_description.
    """
    path = Path(path)
    if not nifti.has_suffix(path, nifti.WRITE_SUFFIXES):
        raise InputError(path, f"unsupported output type; use one of {', '.join(nifti.WRITE_SUFFIXES)}")
    if path.exists() and not overwrite:
        raise InputError(path, "already exists (refusing to overwrite; ask for overwrite explicitly)")
    if path.is_dir():
        raise InputError(path, "is a folder, not a file name")
    if nifti.has_suffix(path, nifti.NIFTI_SUFFIXES):
        nifti.write_nifti(volume, path, keep_description=keep_description)
    else:
        itk_image.write_itk(volume, path)
