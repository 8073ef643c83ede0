"""NRRD and MetaImage (SimpleITK) to and from core.Volume, LPS geometry as stored. The text header
is checked by us before ITK sees it: ITK's MetaIO faults on some malformed headers (a process
crash, not an exception), and a header's sizes must never drive an allocation unchecked."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from annotator.core.atomic import atomic_path
from annotator.core.errors import InputError
from annotator.core.volume import Volume, affine_ras_of
from annotator.io.limits import DEFLATE_MAX_RATIO, check_fits_file, check_within_cap
from annotator.io.nifti import ITK_SUFFIXES, check_finite, has_suffix, native_order

_META_VECTORS = ("elementspacing", "elementsize", "offset", "position", "origin", "centerofrotation")
_META_MATRICES = ("transformmatrix", "rotation", "orientation")


@dataclass(frozen=True)
class _TextHeader:
    """An NRRD or MetaImage header as text, read once per file."""

    kind: str  # "nrrd" or "meta"
    fields: dict[str, str]  # lower-case keys
    length: int  # bytes before the voxel data
    file_size: int


def _text_header(path: Path) -> _TextHeader:
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from exc
    text = head.decode("latin-1")
    fields: dict[str, str] = {}
    if head.startswith(b"NRRD"):
        end = head.find(b"\n\n")
        header_len = end + 2 if end >= 0 else len(head)
        for line in text[:header_len].splitlines()[1:]:
            key, sep, value = line.partition(":")
            if sep and not line.startswith("#"):
                fields[key.strip().lower().replace(" ", "")] = value.lstrip("=").strip()
        return _TextHeader("nrrd", fields, header_len, size)
    header_len = 0  # MetaImage: "Key = Value" lines, the last is ElementDataFile
    for line in text.splitlines(keepends=True):
        header_len += len(line)
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip().lower()] = value.strip()
        if key.strip().lower() == "elementdatafile":
            break
    return _TextHeader("meta", fields, header_len, size)


def nrrd_fields(path: str | os.PathLike[str]) -> dict[str, str]:
    """The header fields of an NRRD file (keys lower-case, key:=value pairs included); {} for others."""
    header = _text_header(Path(path))
    return header.fields if header.kind == "nrrd" else {}


def _numbers(path: Path, fields: dict[str, str], key: str, count: int, *, integer: bool = False) -> list[float]:
    text = fields.get(key, "")
    try:
        values = [int(v) if integer else float(v) for v in text.replace("(", " ").replace(")", " ").replace(",", " ").split()]
    except ValueError:
        raise InputError(path, f"header field {key} is not {'whole ' if integer else ''}numbers: {text[:60]!r}") from None
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise InputError(path, f"header field {key} needs {count} finite values, has {text[:60]!r}")
    return values


def check_text_header(path: Path, header: _TextHeader) -> None:
    """Refuse a malformed NRRD or MetaImage header before ITK parses it (its MetaIO reader crashes
    the process on some, e.g. an absurd NDims) with a message naming the field."""
    fields = header.fields
    if header.kind == "meta":
        (ndims,) = _numbers(path, fields, "ndims", 1, integer=True)
        if not 2 <= ndims <= 4:
            raise InputError(path, f"header says NDims = {int(ndims)}; 2-, 3- and 4-D images are read")
        n = int(ndims)
        if min(_numbers(path, fields, "dimsize", n, integer=True)) < 1:
            raise InputError(path, f"header DimSize {fields['dimsize']!r} has a size below 1")
        for key in _META_VECTORS:
            if key in fields:
                _numbers(path, fields, key, n)
        for key in _META_MATRICES:
            if key in fields:
                _numbers(path, fields, key, n * n)
        if "elementnumberofchannels" in fields:
            (channels,) = _numbers(path, fields, "elementnumberofchannels", 1, integer=True)
            if not 1 <= channels <= 64:
                raise InputError(path, f"header says {int(channels)} channels per voxel")
    else:
        (dimension,) = _numbers(path, fields, "dimension", 1, integer=True)
        if not 1 <= dimension <= 5:
            raise InputError(path, f"header says dimension: {int(dimension)}; up to 4-D images (+ vectors) are read")
        if min(_numbers(path, fields, "sizes", int(dimension), integer=True)) < 1:
            raise InputError(path, f"header sizes {fields['sizes']!r} has a size below 1")


def _itk_payload(path: Path, header: _TextHeader) -> tuple[int, float]:
    """(bytes of stored voxel data, how far one stored byte may expand) of an NRRD or MetaImage
    file, from its own header text; expansion 0 where it cannot be known (bzip2, file lists)."""
    fields = header.fields
    if header.kind == "nrrd":
        data_file = fields.get("datafile")
        encoding = fields.get("encoding", "raw").lower()
        expansion = {"raw": 1.0, "gzip": DEFLATE_MAX_RATIO, "gz": DEFLATE_MAX_RATIO}.get(encoding, 0.0)
    else:
        data_file = fields.get("elementdatafile")
        data_file = None if (data_file or "").upper() == "LOCAL" else data_file
        compressed = fields.get("compresseddata", "false").lower() == "true"
        expansion = DEFLATE_MAX_RATIO if compressed else 1.0
    if data_file:
        if data_file.upper().startswith("LIST") or "%" in data_file or " " in data_file:
            return 0, 0.0  # a list or pattern of files: the cap alone applies
        target = Path(data_file) if Path(data_file).is_absolute() else path.parent / data_file
        try:
            return target.stat().st_size, expansion
        except OSError as exc:
            raise InputError(target, f"data file named by {path.name} cannot be read ({exc.strerror or exc})") from exc
    return header.file_size - header.length, expansion


def _check_itk_claims(path: Path, reader: Any, header: _TextHeader | None) -> None:
    import SimpleITK as sitk

    size = [int(n) for n in reader.GetSize()]
    if min(size, default=0) < 1:
        raise InputError(path, f"header gives an empty image (size {size})")
    component_bytes = sitk.Image([1] * len(size), reader.GetPixelID()).GetSizeOfPixelComponent()
    claimed = math.prod(size) * max(1, reader.GetNumberOfComponents()) * component_bytes
    check_within_cap(path, claimed)
    if header is not None:
        stored, expansion = _itk_payload(path, header)
        check_fits_file(path, claimed, stored, expansion=expansion)


def _checked_reader(path: Path) -> Any:
    """An ImageFileReader with the header read and every claim checked; no voxel read yet."""
    import SimpleITK as sitk

    if not path.exists():
        raise InputError(path, "file does not exist")
    header = _text_header(path) if has_suffix(path, ITK_SUFFIXES) else None
    if header is not None:
        check_text_header(path, header)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(path, f"cannot be read as an image ({_last_line(exc)})") from exc
    _check_itk_claims(path, reader, header)
    return reader


def _last_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "unreadable")[:200]


def _read_itk(path: Path) -> Any:
    reader = _checked_reader(path)
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise InputError(path, f"cannot be read as an image ({_last_line(exc)})") from exc


def load_itk(path: str | os.PathLike[str], *, volume_index: int = 0) -> Volume:
    """NRRD / MetaImage (2-D, 3-D, 4-D or vector-valued) through SimpleITK, LPS geometry as stored."""
    import SimpleITK as sitk

    path = Path(path)
    img = _read_itk(path)
    dim = img.GetDimension()
    components = img.GetNumberOfComponentsPerPixel()
    array = sitk.GetArrayFromImage(img)  # reversed index order: (t,) z, y, x (, components)
    spacing = list(img.GetSpacing())
    origin = list(img.GetOrigin())
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(dim, dim)
    if components > 1:
        n_volumes = components
        array = np.moveaxis(array, -1, 0)
    elif dim == 4:
        n_volumes = array.shape[0]
    else:
        n_volumes = 1
        array = array[None]
    if dim == 4 and components > 1:
        raise InputError(path, "4-D images with vector pixels are not supported")
    if not 0 <= volume_index < n_volumes:
        raise InputError(path, f"volume {volume_index} requested but the file holds {n_volumes} volume(s)")
    array = array[volume_index]
    if dim == 2:
        array = array[None]
        spacing = [*spacing, 1.0]
        origin = [*origin, 0.0]
        d3 = np.eye(3)
        d3[:2, :2] = direction
        direction = d3
    elif dim in (3, 4):
        spacing, origin, direction = spacing[:3], origin[:3], direction[:3, :3]
    else:
        raise InputError(path, f"{dim}-D images are not supported")
    if array.ndim != 3:
        raise InputError(path, f"unexpected array shape {array.shape}")
    array = native_order(array)
    check_finite(path, array)
    if abs(np.linalg.det(direction)) < 1e-6:
        raise InputError(path, f"direction matrix is singular: {np.round(direction, 6).tolist()}")
    metadata = {"source_path": str(path), "warnings": [], "n_volumes": n_volumes,
                "volume_index": volume_index, "format": path.suffix.lower().lstrip(".")}
    return Volume(array, spacing_zyx_mm=(spacing[2], spacing[1], spacing[0]),
                  origin_lps_mm=tuple(origin), direction_lps=direction, modality="", metadata=metadata)


def itk_header_geometry(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Shape and geometry of an NRRD/MHA file from its header (SimpleITK's ImageFileReader)."""
    import SimpleITK as sitk

    path = Path(path)
    reader = _checked_reader(path)
    dim = reader.GetDimension()
    size = list(reader.GetSize())
    spacing = list(reader.GetSpacing())
    origin = list(reader.GetOrigin())
    direction = np.asarray(reader.GetDirection(), dtype=np.float64).reshape(dim, dim)
    n_volumes = reader.GetNumberOfComponents() if reader.GetNumberOfComponents() > 1 else (size[3] if dim == 4 else 1)
    if dim == 2:
        size, spacing, origin = size + [1], spacing + [1.0], origin + [0.0]
        d3 = np.eye(3)
        d3[:2, :2] = direction
        direction = d3
    else:
        size, spacing, origin, direction = size[:3], spacing[:3], origin[:3], direction[:3, :3]
    affine = affine_ras_of(direction, tuple(spacing), tuple(origin))
    return {
        "shape_zyx": (size[2], size[1], size[0]),
        "n_volumes": n_volumes,
        "affine_ras": affine,
        "spacing_zyx_mm": (spacing[2], spacing[1], spacing[0]),
        "direction_lps": direction,
        "dtype": sitk.GetPixelIDValueAsString(reader.GetPixelID()),
        "description": "",
    }


def write_itk(volume: Volume, path: Path) -> None:
    import SimpleITK as sitk

    array = np.asarray(volume.array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    img.SetSpacing(volume.spacing_xyz_mm)
    img.SetOrigin(volume.origin_lps_mm)
    img.SetDirection(tuple(float(v) for v in np.asarray(volume.direction_lps).ravel()))
    with atomic_path(path) as tmp:
        sitk.WriteImage(img, str(tmp), useCompression=True)
