"""NIfTI-1/2 (nibabel) to and from core.Volume with the file's exact geometry, and the suffix and
geometry helpers the other single-file formats (io/itk_image: NRRD, MetaImage) share."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from annotator.core.atomic import atomic_path
from annotator.core.errors import InputError
from annotator.core.volume import Volume, lps_of_ras
from annotator.io.limits import DEFLATE_MAX_RATIO, check_fits_file, check_within_cap

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


def native_order(array: np.ndarray) -> np.ndarray:
    """Native byte order (big-endian files give '>i2'), C-contiguous."""
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return np.ascontiguousarray(array)


def check_finite(path: Path, array: np.ndarray) -> None:
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


def _check_nifti_claims(path: Path, header: Any, shape_xyzt: tuple[int, int, int, int], stored_bytes: int,
                        *, compressed: bool, data_offset: int | None = None) -> None:
    """The header's voxel count against the cap and against what the file can hold."""
    x, y, z, t = shape_xyzt
    if min(shape_xyzt) < 1:
        raise InputError(path, f"header gives an empty image (dimensions {shape_xyzt})")
    itemsize = header.get_data_dtype().itemsize
    check_within_cap(path, x * y * z * itemsize)
    offset = int(header.get_data_offset()) if data_offset is None else data_offset
    payload = stored_bytes if compressed else stored_bytes - offset
    check_fits_file(path, x * y * z * t * itemsize, payload, expansion=DEFLATE_MAX_RATIO if compressed else 1.0)


def _data_offset(img: Any) -> int:
    # a loaded image's header may report offset 0; the array proxy holds where the voxels start
    return int(getattr(img.dataobj, "offset", None) or img.header.get_data_offset())


def nifti_header_geometry(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Shape, affine and volume count from the header only (no voxel data read)."""
    path = Path(path)
    img = _nifti_image(path)
    _check_nifti_claims(path, img.header, _nifti_shape_xyzt(path, img.shape), path.stat().st_size,
                        compressed=path.name.lower().endswith(".gz"), data_offset=_data_offset(img))
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
        _check_nifti_claims(path, header, (x, y, z, t), len(remaining), compressed=True)
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
        _check_nifti_claims(path, header, (x, y, z, t), path.stat().st_size, compressed=False,
                            data_offset=_data_offset(img))
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
    array = native_order(data.T)  # (x, y, z) Fortran-ordered on disk -> (z, y, x) C-ordered, no copy
    check_finite(path, array)
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


def write_nifti(volume: Volume, path: Path, *, keep_description: bool = False) -> None:
    """NIfTI-1 with sform and qform both set to the Volume's RAS affine (code 1, scanner); the
    source's description in `descrip` only with keep_description (free text may identify)."""
    import nibabel as nib

    data = _nifti_ready_array(np.asarray(volume.array)).T  # (z, y, x) -> (x, y, z)
    affine = volume.affine_ras()
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units(xyz="mm")
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    description = str(volume.metadata.get("series_description", ""))[:79] if keep_description else ""
    if description:
        img.header["descrip"] = description.encode("ascii", "replace")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))


# ---- NRRD / MHA via SimpleITK --------------------------------------------------------------------
