"""NIfTI-1/2 (nibabel) and NRRD/MHA (SimpleITK) to and from core.Volume with the files' exact geometry."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from annotator.core.atomic import atomic_path
from annotator.core.errors import InputError
from annotator.core.volume import Volume, affine_ras_of, lps_of_ras

log = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
# Single-file formats only: a write must be one atomic rename (.mhd/.nhdr would leave a data file behind).
WRITE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")


def has_suffix(path: str | os.PathLike[str], suffixes: tuple[str, ...]) -> bool:
    name = Path(path).name.lower()
    return any(name.endswith(s) for s in suffixes)


# ---- geometry helpers ----------------------------------------------------------------------------
def geometry_from_ras_affine(affine_ras: np.ndarray) -> tuple[tuple[float, float, float], tuple[float, float, float], np.ndarray]:
    """(spacing_zyx_mm, origin_lps_mm, direction_lps) that reproduce a NIfTI affine exactly.

    The columns of the affine's 3x3 part are (spacing * unit direction) of index axes i, j, k,
    which are the Volume's x, y, z; RAS -> LPS flips the first two world rows.
    """
    affine = np.asarray(affine_ras, dtype=np.float64)
    matrix_lps = lps_of_ras(affine[:3, :3])
    spacing_xyz = np.linalg.norm(matrix_lps, axis=0)
    direction = matrix_lps / spacing_xyz
    origin = lps_of_ras(affine[:3, 3])
    return (
        (float(spacing_xyz[2]), float(spacing_xyz[1]), float(spacing_xyz[0])),
        (float(origin[0]), float(origin[1]), float(origin[2])),
        direction,
    )


def affine_problem(affine: np.ndarray) -> str | None:
    """Why an index->world affine cannot place voxels in space, or None when it can."""
    affine = np.asarray(affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        return "affine contains NaN or infinite values"
    matrix = affine[:3, :3]
    norms = np.linalg.norm(matrix, axis=0)
    if np.any(norms < 1e-6):
        return f"affine is singular (a voxel axis has zero length: {np.round(matrix, 6).tolist()})"
    if abs(np.linalg.det(matrix / norms)) < 1e-6:
        return f"affine is singular (voxel axes are parallel: {np.round(matrix, 6).tolist()})"
    return None


def is_sheared(direction: np.ndarray, tol: float = 1e-4) -> bool:
    d = np.asarray(direction, dtype=np.float64)
    return not np.allclose(d.T @ d, np.eye(3), atol=tol)


def _native(array: np.ndarray) -> np.ndarray:
    """Native byte order (big-endian files give '>i2'), C-contiguous."""
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return np.ascontiguousarray(array)


def _check_finite(path: Path, array: np.ndarray) -> None:
    if array.dtype.kind not in "biuf":
        raise InputError(path, f"voxel type {array.dtype} is not a scalar image (RGB/complex "
                               "images are not supported)")
    if array.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise InputError(path, f"image contains {bad} NaN or infinite voxel values")


# ---- NIfTI ---------------------------------------------------------------------------------------
def _nifti_image(path: Path, *, mmap: bool = True) -> Any:
    import nibabel as nib

    try:
        img = nib.load(str(path), mmap=mmap)
    except FileNotFoundError as exc:
        raise InputError(path, "file does not exist") from exc
    except Exception as exc:  # nibabel raises many types for damaged files; all mean "unreadable"
        raise InputError(path, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(path, f"not a NIfTI image (nibabel read it as {type(img).__name__})")
    return img


def _nifti_shape_xyzt(path: Path, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(x, y, z, t): 2-D images get z=1; dimensions beyond 4 must be singletons."""
    dims = list(shape)
    if len(dims) < 2:
        raise InputError(path, f"image has {len(dims)} dimension(s); need at least 2")
    while len(dims) > 4 and dims[-1] == 1:
        dims.pop()
    if len(dims) > 4:
        # (x, y, z, 1, n) is how some tools store vector/multi-volume data: treat n as volumes
        if all(d == 1 for d in dims[3:-1]):
            dims = dims[:3] + [dims[-1]]
        else:
            raise InputError(path, f"{len(shape)}-D image of shape {shape} is not supported")
    while len(dims) < 4:
        dims.append(1)
    return dims[0], dims[1], dims[2], dims[3]


def nifti_header_geometry(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Shape, affine and volume count from the header only (no voxel data read)."""
    path = Path(path)
    img = _nifti_image(path)
    affine = np.asarray(img.affine, dtype=np.float64)
    problem = affine_problem(affine)
    if problem:
        raise InputError(path, problem)
    x, y, z, t = _nifti_shape_xyzt(path, img.shape)
    spacing, _, direction = geometry_from_ras_affine(affine)
    return {
        "shape_zyx": (z, y, x),
        "n_volumes": t,
        "affine_ras": affine,
        "spacing_zyx_mm": spacing,
        "direction_lps": direction,
        "dtype": str(img.get_data_dtype()),
        "description": _nifti_description(img),
    }


def _nifti_description(img: Any) -> str:
    return _header_description(img.header)


def _header_description(header: Any) -> str:
    try:
        raw = header["descrip"]
        text = raw.item().decode("latin-1") if hasattr(raw, "item") else str(raw)
        return text.strip("\x00 ").strip()
    except (KeyError, ValueError, AttributeError, UnicodeDecodeError):
        return ""


_CHUNK = 1 << 24


def _gz_header_and_volume(path: Path, volume_index: int) -> tuple[Any, np.ndarray, int]:
    """(header, (x, y, z) on-disk voxels of one volume, n_volumes) of a .nii.gz in one pass.

    Inflates straight into the output array in 16 MB chunks and stops after the wanted volume:
    about twice as fast as streaming through Python's gzip module, and a 4-D file's later volumes
    are never inflated. Concatenated gzip members (pigz) are followed.
    """
    import io
    import zlib

    import nibabel as nib

    try:
        remaining = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from exc

    inflater = zlib.decompressobj(wbits=31)

    def chunks() -> Iterator[bytes]:
        nonlocal inflater
        pending = remaining
        while True:
            piece = inflater.decompress(pending, _CHUNK)
            if piece:
                yield piece
            pending = inflater.unconsumed_tail
            if inflater.eof:
                rest = inflater.unused_data.lstrip(b"\0")
                if not rest:
                    return
                inflater = zlib.decompressobj(wbits=31)
                pending = rest
            elif not pending and not piece:
                raise InputError(path, "gzip stream is truncated (file cut short?)")

    stream = chunks()
    try:
        head = bytearray()
        while len(head) < 540:
            try:
                head += next(stream)
            except StopIteration:
                break
        if len(head) < 348:
            raise InputError(path, f"too short for a NIfTI header ({len(head)} bytes)")
        sizeof_hdr = int.from_bytes(head[:4], "little")
        if sizeof_hdr not in (348, 540):
            sizeof_hdr = int.from_bytes(head[:4], "big")
        klass = nib.Nifti2Header if sizeof_hdr == 540 else nib.Nifti1Header
        try:
            header = klass.from_fileobj(io.BytesIO(bytes(head[:sizeof_hdr])))
        except Exception as exc:  # nibabel raises many types for damaged headers; all mean "unreadable"
            raise InputError(path, f"not a readable NIfTI header ({type(exc).__name__}: {exc})") from exc
        x, y, z, t = _nifti_shape_xyzt(path, header.get_data_shape())
        if not 0 <= volume_index < t:
            raise InputError(path, f"volume {volume_index} requested but the file holds {t} volume(s) (0..{t - 1})")
        dtype = header.get_data_dtype()
        volume_bytes = x * y * z * dtype.itemsize
        start = int(header.get_data_offset()) + volume_index * volume_bytes
        stop = start + volume_bytes
        out = np.empty(volume_bytes, dtype=np.uint8)
        position = 0  # bytes of the inflated stream seen so far
        piece = bytes(head)
        while True:
            lo, hi = max(start, position), min(stop, position + len(piece))
            if hi > lo:
                out[lo - start:hi - start] = np.frombuffer(piece, np.uint8, hi - lo, lo - position)
            position += len(piece)
            if position >= stop:
                break
            try:
                piece = next(stream)
            except StopIteration:
                raise InputError(path, f"voxel data is truncated ({max(0, position - start)} of "
                                       f"{volume_bytes} bytes)") from None
    except zlib.error as exc:
        raise InputError(path, f"not a readable gzip-compressed NIfTI file ({exc})") from exc
    return header, out.view(dtype).reshape((x, y, z), order="F"), t


def load_nifti(path: str | os.PathLike[str], *, volume_index: int = 0) -> Volume:
    """Read one 3-D volume of a NIfTI-1/2 file; the affine is nibabel's choice (sform, else qform)."""
    path = Path(path)
    if path.name.lower().endswith(".gz"):
        header, raw, t = _gz_header_and_volume(path, volume_index)
        slope, inter = header.get_slope_inter()
        if slope is not None and (slope != 1.0 or (inter or 0.0) != 0.0):
            scaled_type = np.float32 if raw.dtype.itemsize <= 2 and raw.dtype.kind in "iub" else np.float64
            data = raw.astype(scaled_type) * scaled_type(slope) + scaled_type(inter or 0.0)
        else:
            data = raw
        affine = np.asarray(header.get_best_affine(), dtype=np.float64)
    else:
        # no memory map: the Volume must not keep the file open (Windows could not replace it)
        img = _nifti_image(path, mmap=False)
        header = img.header
        affine = np.asarray(img.affine, dtype=np.float64)
        x, y, z, t = _nifti_shape_xyzt(path, img.shape)
        if not 0 <= volume_index < t:
            raise InputError(path, f"volume {volume_index} requested but the file holds {t} volume(s) (0..{t - 1})")
        proxy = img.dataobj
        try:
            if len(img.shape) <= 3:
                data = np.asanyarray(proxy)
            elif len(img.shape) == 4:
                data = np.asanyarray(proxy[..., volume_index])  # reads one time point only
            else:
                data = np.asanyarray(proxy).reshape((x, y, z, t), order="F")[..., volume_index]
        except Exception as exc:  # truncated/corrupt payloads surface as EOFError, zlib.error, ValueError...
            raise InputError(path, f"voxel data cannot be read ({type(exc).__name__}: {exc})") from exc
        data = np.asarray(data).reshape((x, y, z), order="F")
    problem = affine_problem(affine)
    if problem:
        raise InputError(path, problem)
    if data.dtype.kind == "f" and data.dtype.itemsize > 4 and _fits_float32(data):
        data = data.astype(np.float32)
    array = _native(data.T)  # (x, y, z) Fortran-ordered on disk -> (z, y, x) C-ordered, no copy
    _check_finite(path, array)
    spacing, origin, direction = geometry_from_ras_affine(affine)
    warnings: list[str] = []
    if is_sheared(direction):
        warnings.append("affine is sheared (axes not orthogonal); kept as stored")
    if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
        warnings.append("neither sform nor qform is set; geometry is voxel size only (origin 0)")
    for w in warnings:
        log.warning("%s: %s", path, w)
    metadata: dict[str, Any] = {
        "source_path": str(path),
        "warnings": warnings,
        "n_volumes": t,
        "volume_index": volume_index,
        "format": "nifti",
        "series_description": _header_description(header),
    }
    return Volume(array, spacing_zyx_mm=spacing, origin_lps_mm=origin, direction_lps=direction,
                  modality="", metadata=metadata)


def _fits_float32(data: np.ndarray) -> bool:
    finite = data[np.isfinite(data)]
    return finite.size == 0 or float(np.abs(finite).max()) < 3e38


def _nifti_ready_array(array: np.ndarray) -> np.ndarray:
    """Cast dtypes NIfTI readers handle poorly (bool, int64, float16) to the nearest safe one."""
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype in (np.int64, np.uint64):
        lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
        for candidate in (np.int16, np.uint16, np.int32, np.uint32):
            info = np.iinfo(candidate)
            if info.min <= lo and hi <= info.max:
                return array.astype(candidate)
    return array


def write_nifti(volume: Volume, path: Path) -> None:
    """NIfTI-1 with sform and qform both set to the Volume's RAS affine (code 1, scanner)."""
    import nibabel as nib

    data = _nifti_ready_array(np.asarray(volume.array)).T  # (z, y, x) -> (x, y, z)
    affine = volume.affine_ras()
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units(xyz="mm")
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    description = str(volume.metadata.get("series_description", ""))[:79]
    if description:
        img.header["descrip"] = description.encode("ascii", "replace")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))


# ---- NRRD / MHA via SimpleITK --------------------------------------------------------------------
def _read_itk(path: Path) -> Any:
    import SimpleITK as sitk

    if not path.exists():
        raise InputError(path, "file does not exist")
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = next((line.strip() for line in reversed(first) if line.strip()), "unreadable")
        raise InputError(path, f"cannot be read as an image ({detail[:200]})") from exc


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
    array = _native(array)
    _check_finite(path, array)
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
    if not path.exists():
        raise InputError(path, "file does not exist")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(path, "cannot be read as an image") from exc
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
