"""DICOM series discovery (headers only) and loading into core.Volume, geometry from IPP/IOP/functional groups."""

# Handles classic single-frame series, enhanced multi-frame objects, Siemens mosaics, repeated
# positions (time points), compressed transfer syntaxes (pydicom + pylibjpeg) and single 2-D
# images. Slice stacks that are not a regular grid (gantry tilt, uneven gaps) are never stacked as
# if they were: they are refused with a clear message, or resampled in patient space when the
# caller asks for it (`regularize=True`). A missing slice is always refused.

from __future__ import annotations

import logging
import math
import os
import threading
import warnings
from collections import OrderedDict, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from annotator.core.errors import InputError
from annotator.core.volume import Volume
from annotator.io.dicom_header import read_fast_header
from annotator.io.series import SeriesInfo

log = logging.getLogger(__name__)

_FLIP_LPS_RAS = np.diag([-1.0, -1.0, 1.0])
# SOP classes with Rows/Columns that are not images to show (labels, reports, raw data).
_NON_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.481.3",  # RT Structure Set
    "1.2.840.10008.5.1.4.1.1.481.2",  # RT Dose (a dose grid, not an image to label)
    "1.2.840.10008.5.1.4.1.1.66",  # Raw data
    "1.2.840.10008.1.3.10",  # DICOMDIR
}
_IOP_TOL = 1e-3          # direction cosines equal within this are one orientation
_POSITION_TOL_MM = 1e-2  # slice positions closer than this along the normal are one position
_GAP_REL_TOL = 0.01      # slice gaps may vary by 1 % (scanner rounding) and still be "even"
_SKIP_NAMES = {"DICOMDIR", "LOCKFILE", "VERSION"}
# Never DICOM: skipping them keeps a scan of a mixed folder fast (NIfTI etc. are listed separately).
_SKIP_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".raw", ".zraw", ".json",
                  ".txt", ".md", ".csv", ".tsv", ".xml", ".html", ".pdf", ".png", ".jpg", ".jpeg",
                  ".py", ".zip", ".npy", ".npz", ".pth", ".onnx")
# Discovery parses only these elements (plus the file meta): 3-5x faster than a full header on
# files with large private sections. Functional-group sequences are parsed when present.
_HEADER_TAGS = [
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
    "SeriesDescription", "SeriesNumber", "Modality", "Manufacturer", "PatientName", "PatientID",
    "PatientBirthDate", "ImageType", "EchoNumbers", "InstanceNumber", "AcquisitionTime",
    "AcquisitionDateTime", "ContentTime", "TemporalPositionIdentifier", "TriggerTime",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "ImagerPixelSpacing",
    "SliceThickness", "SpacingBetweenSlices", "GantryDetectorTilt", "Rows", "Columns",
    "SamplesPerPixel", "NumberOfFrames", "RescaleSlope", "RescaleIntercept", "WindowCenter",
    "WindowWidth", "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence",
    "BitsAllocated", "BitsStored", "PixelRepresentation",
    0x0019100A, 0x00291010, 0x00290010, 0x00190010,  # Siemens mosaic count, CSA image header, creators
]


# ---- per-frame header records ---------------------------------------------------------------------
@dataclass
class Frame:
    """One 2-D image plane: a single-frame file, one frame of a multi-frame file, or a mosaic tile."""

    path: str
    frame_index: int | None          # 0-based frame in a multi-frame file (None: single-frame file)
    tile_index: int | None           # mosaic tile (None: not a mosaic)
    group_key: tuple                 # what must be equal for frames to share one volume
    rows: int
    cols: int
    iop: np.ndarray                  # (6,) row cosine then column cosine, LPS
    ipp: np.ndarray                  # (3,) centre of the first transmitted pixel, LPS mm
    pixel_spacing: tuple[float, float]  # (between rows = dy, between columns = dx) mm
    slope: float
    intercept: float
    order_key: tuple                 # sorts repeated positions into time points
    sop_uid: str
    normal: np.ndarray | None = None  # explicit slice normal (Siemens mosaic CSA), else row x col
    has_geometry: bool = True
    slice_spacing_hint: float | None = None
    # (explicit VR?, bits allocated, bits stored, signed?) when the pixels are plain little-endian
    # bytes we can read without pydicom's per-element parsing; None means "decode with pydicom"
    native_pixels: tuple[bool, int, int, bool] | None = None


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


def _float_list(value: Any, n: int) -> list[float] | None:
    if value is None:
        return None
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return values if len(values) == n and all(math.isfinite(v) for v in values) else None


def _float(value: Any, default: float | None = None) -> float | None:
    if value is None or value == "":
        return default
    if not isinstance(value, (str, bytes, int, float)) and hasattr(value, "__getitem__"):
        value = value[0] if len(value) else None  # multi-valued (pydicom MultiValue, list): first
        if value is None:
            return default
    try:
        number = float(value)
    except (TypeError, ValueError, IndexError):
        return default
    return number if math.isfinite(number) else default


def _int(value: Any, default: int | None = None) -> int | None:
    number = _float(value)
    return default if number is None else int(number)


def _seconds_of_time(value: Any) -> float | None:
    """DICOM TM 'HHMMSS.ffffff' (or DT 'YYYYMMDDHHMMSS.ffffff') -> seconds, for ordering only."""
    if not value:
        return None
    text = str(value).strip()
    if len(text) >= 14 and text[:8].isdigit():  # DT: keep the date so midnight does not reorder
        days = int(text[:8])
        text = text[8:]
    else:
        days = 0
    try:
        hours = int(text[0:2] or 0)
        minutes = int(text[2:4] or 0)
        seconds = float(text[4:] or 0)
    except ValueError:
        return None
    return days * 86400.0 + hours * 3600.0 + minutes * 60.0 + seconds


def _valid_iop(iop: list[float] | None) -> list[float] | None:
    """Row/column cosines renormalised (scanners write 5-6 decimals), or None when degenerate."""
    if iop is None:
        return None
    row, col = np.asarray(iop[:3]), np.asarray(iop[3:])
    row_norm, col_norm = np.linalg.norm(row), np.linalg.norm(col)
    if row_norm < 0.9 or col_norm < 0.9 or row_norm > 1.1 or col_norm > 1.1:
        return None
    row, col = row / row_norm, col / col_norm
    if abs(float(row @ col)) > 0.01:  # not perpendicular: no usable orientation
        return None
    return [*row.tolist(), *col.tolist()]


def _positive_spacing(spacing: list[float] | None) -> list[float] | None:
    return spacing if spacing and all(v > 0 for v in spacing) else None


def _sequence_item(dataset: Any, keyword: str) -> Any:
    seq = dataset.get(keyword) if dataset is not None else None
    return seq[0] if seq else None


def _fg_item(per_frame: Any, shared: Any, keyword: str) -> Any:
    """A functional group macro item: per-frame first, else shared."""
    return _sequence_item(per_frame, keyword) or _sequence_item(shared, keyword)


def _image_type(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip().upper() for v in value.split("\\"))
    return tuple(str(v).strip().upper() for v in value)


# ImageType values (3rd on) that name what a classic image shows. Only these split a series:
# other values (vendor processing flags) may differ between slices of one volume.
_KIND_OF_TOKEN = {
    "M": "magnitude", "MAGNITUDE": "magnitude", "P": "phase", "PHASE": "phase", "PHASE MAP": "phase",
    "R": "real", "REAL": "real", "I": "imaginary", "IMAGINARY": "imaginary",
    "B0 MAP": "field map", "FIELD_MAP": "field map", "FIELDMAP": "field map", "B0": "field map",
    "LOCALIZER": "localizer", "ADC": "adc", "TRACEW": "trace", "FA": "fa", "VELOCITY": "velocity",
}
_KIND_OF_PREFIX = {"M_": "magnitude", "P_": "phase", "R_": "real", "I_": "imaginary"}  # Philips M_FFE...


def _image_kind(image_type: tuple[str, ...]) -> tuple[str, ...]:
    """What a classic image shows (magnitude, phase, localizer, ...) from its ImageType."""
    kinds = set()
    for token in image_type[2:]:
        kind = _KIND_OF_TOKEN.get(token) or _KIND_OF_PREFIX.get(token[:2])
        if kind:
            kinds.add(kind)
    return tuple(sorted(kinds))


def _mosaic_info(ds: Any) -> tuple[int, np.ndarray | None] | None:
    """(number of slices, slice normal or None) for a Siemens mosaic, else None."""
    if "MOSAIC" not in _image_type(ds.get("ImageType")):
        return None
    n_slices = None
    normal = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from nibabel.nicom import csareader

            csa = csareader.get_csa_header(ds, "image")
        tags = (csa or {}).get("tags", {})
        items = tags.get("NumberOfImagesInMosaic", {}).get("items") or []
        n_slices = int(items[0]) if items else None
        vec = tags.get("SliceNormalVector", {}).get("items") or []
        if len(vec) == 3:
            normal = np.asarray(vec, dtype=np.float64)
            normal /= np.linalg.norm(normal) or 1.0
    except Exception as exc:  # noqa: BLE001 - CSA is a private vendor format: fall back to the public tag
        log.debug("CSA header unreadable: %s", exc)
    if n_slices is None:
        n_slices = _int(ds.get((0x0019, 0x100A)).value if (0x0019, 0x100A) in ds else None)
    if not n_slices or n_slices < 1:
        return None
    return n_slices, normal


def _series_fields(ds: Any) -> dict[str, Any]:
    return {
        "series_instance_uid": str(ds.get("SeriesInstanceUID", "") or ""),
        "study_instance_uid": str(ds.get("StudyInstanceUID", "") or ""),
        "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID", "") or ""),
        "series_description": str(ds.get("SeriesDescription", "") or ""),
        "series_number": _int(ds.get("SeriesNumber")),
        "modality": str(ds.get("Modality", "") or ""),
        "patient_name": str(ds.get("PatientName", "") or ""),
        "patient_id": str(ds.get("PatientID", "") or ""),
        "patient_birth_date": str(ds.get("PatientBirthDate", "") or ""),
        "manufacturer": str(ds.get("Manufacturer", "") or ""),
        "sop_class_uid": str(ds.get("SOPClassUID", "") or ""),
        "window_center": _float(ds.get("WindowCenter")),
        "window_width": _float(ds.get("WindowWidth")),
        "gantry_tilt_deg": _float(ds.get("GantryDetectorTilt")),
    }


def frames_of_dataset(ds: Any, path: str) -> list[Frame]:
    """Header records of every 2-D plane in one DICOM file (no pixel data needed)."""
    rows, cols = _int(ds.get("Rows"), 0), _int(ds.get("Columns"), 0)
    if not rows or not cols:
        return []
    series_uid = str(ds.get("SeriesInstanceUID", "") or "")
    series_number = _int(ds.get("SeriesNumber"))
    base_type = _image_type(ds.get("ImageType"))
    echo = _int(ds.get("EchoNumbers"))
    sop_uid = str(ds.get("SOPInstanceUID", "") or "")
    instance = _int(ds.get("InstanceNumber"), 0)
    samples = _int(ds.get("SamplesPerPixel"), 1)
    n_frames = _int(ds.get("NumberOfFrames"), 1) or 1
    per_frame_groups = ds.get("PerFrameFunctionalGroupsSequence")
    shared = _sequence_item(ds, "SharedFunctionalGroupsSequence")
    spacing_hint = _float(ds.get("SpacingBetweenSlices")) or _float(ds.get("SliceThickness"))

    def key(iop: np.ndarray | None, image_type: tuple[str, ...], spacing: tuple[float, float],
            echo_number: int | None) -> tuple:
        # orientation is clustered later with a tolerance; here only exact, discrete properties
        return (series_uid, series_number, rows, cols, samples, image_type, echo_number,
                round(spacing[0], 4), round(spacing[1], 4))

    frames: list[Frame] = []
    if per_frame_groups:  # enhanced multi-frame: geometry lives in the functional groups
        for index in range(n_frames):
            pf = per_frame_groups[index] if index < len(per_frame_groups) else None
            position = _fg_item(pf, shared, "PlanePositionSequence")
            orientation = _fg_item(pf, shared, "PlaneOrientationSequence")
            measures = _fg_item(pf, shared, "PixelMeasuresSequence")
            transform = _fg_item(pf, shared, "PixelValueTransformationSequence")
            content = _fg_item(pf, None, "FrameContentSequence")
            frame_type = None
            for type_seq in ("MRImageFrameTypeSequence", "CTImageFrameTypeSequence",
                             "XAXRFFrameCharacteristicsSequence", "PETFrameTypeSequence"):
                item = _fg_item(pf, shared, type_seq)
                if item is not None and item.get("FrameType") is not None:
                    frame_type = _image_type(item.get("FrameType"))
                    break
            ipp = _float_list(position.get("ImagePositionPatient") if position else None, 3)
            iop = _valid_iop(_float_list(orientation.get("ImageOrientationPatient") if orientation else None, 6))
            spacing = _positive_spacing(_float_list(measures.get("PixelSpacing") if measures else None, 2))
            has_geometry = ipp is not None and iop is not None
            spacing = tuple(spacing) if spacing else (1.0, 1.0)
            slope = _float(transform.get("RescaleSlope") if transform else ds.get("RescaleSlope"), 1.0)
            intercept = _float(transform.get("RescaleIntercept") if transform else ds.get("RescaleIntercept"), 0.0)
            echo_item = _fg_item(pf, shared, "MREchoSequence")
            echo_time = _float(echo_item.get("EffectiveEchoTime")) if echo_item else None
            temporal = _int(content.get("TemporalPositionIndex")) if content else None
            acq = _seconds_of_time(content.get("FrameAcquisitionDateTime")) if content else None
            stack_id = str(content.get("StackID", "")) if content else ""
            iop_arr = np.asarray(iop if iop else [1, 0, 0, 0, 1, 0], dtype=np.float64)
            frames.append(Frame(
                path=path, frame_index=index, tile_index=None,
                group_key=key(iop_arr, frame_type or base_type, spacing, None) + (stack_id, echo_time),
                rows=rows, cols=cols, iop=iop_arr,
                ipp=np.asarray(ipp if ipp else [0.0, 0.0, float(index)], dtype=np.float64),
                pixel_spacing=spacing, slope=slope or 1.0, intercept=intercept or 0.0,
                order_key=(temporal if temporal is not None else 0, acq if acq is not None else 0.0,
                           instance, index),
                sop_uid=sop_uid, has_geometry=has_geometry,
                slice_spacing_hint=_float(measures.get("SpacingBetweenSlices")) if measures else spacing_hint,
            ))
        return frames

    ipp = _float_list(ds.get("ImagePositionPatient"), 3)
    iop = _valid_iop(_float_list(ds.get("ImageOrientationPatient"), 6))
    spacing = _positive_spacing(_float_list(ds.get("PixelSpacing"), 2)) \
        or _positive_spacing(_float_list(ds.get("ImagerPixelSpacing"), 2))
    has_geometry = ipp is not None and iop is not None
    spacing_t = (float(spacing[0]), float(spacing[1])) if spacing else (1.0, 1.0)
    slope = _float(ds.get("RescaleSlope"), 1.0) or 1.0
    intercept = _float(ds.get("RescaleIntercept"), 0.0) or 0.0
    acq = _seconds_of_time(ds.get("AcquisitionDateTime")) or _seconds_of_time(ds.get("AcquisitionTime")) \
        or _seconds_of_time(ds.get("ContentTime"))
    temporal = _int(ds.get("TemporalPositionIdentifier"))
    trigger = _float(ds.get("TriggerTime"))
    order_key = (temporal if temporal is not None else 0, acq if acq is not None else 0.0,
                 trigger if trigger is not None else 0.0, instance)
    iop_arr = np.asarray(iop if iop else [1, 0, 0, 0, 1, 0], dtype=np.float64)
    ipp_arr = np.asarray(ipp if ipp else [0.0, 0.0, 0.0], dtype=np.float64)

    mosaic = _mosaic_info(ds) if has_geometry and n_frames == 1 else None
    if mosaic is not None:
        n_slices, csa_normal = mosaic
        tiles_per_side = math.ceil(math.sqrt(n_slices))
        tile_rows, tile_cols = rows // tiles_per_side, cols // tiles_per_side
        row_cos, col_cos = iop_arr[:3], iop_arr[3:]
        dy, dx = spacing_t
        # The mosaic's IPP is the corner of the whole mosaic; move it to the corner of one tile
        # (the correction nibabel's MosaicWrapper and dcm2niix apply).
        first = ipp_arr + col_cos * dy * (rows - tile_rows) / 2.0 + row_cos * dx * (cols - tile_cols) / 2.0
        normal = csa_normal if csa_normal is not None else np.cross(row_cos, col_cos)
        gap = spacing_hint or 1.0
        for tile in range(n_slices):
            frames.append(Frame(
                path=path, frame_index=None, tile_index=tile,
                group_key=key(iop_arr, _image_kind(base_type), spacing_t, echo) + ("mosaic", tiles_per_side),
                rows=tile_rows, cols=tile_cols, iop=iop_arr, ipp=first + normal * gap * tile,
                pixel_spacing=spacing_t, slope=slope, intercept=intercept, order_key=order_key,
                sop_uid=sop_uid, normal=normal, slice_spacing_hint=gap,
            ))
        return frames

    if n_frames > 1:
        # Multi-frame without functional groups (ultrasound/XA cine, old NM): frames form a stack
        # along the normal with no patient geometry of their own.
        gap = spacing_hint or 1.0
        normal = np.cross(iop_arr[:3], iop_arr[3:])
        for index in range(n_frames):
            frames.append(Frame(
                path=path, frame_index=index, tile_index=None,
                group_key=key(iop_arr, _image_kind(base_type), spacing_t, echo) + ("cine", path),
                rows=rows, cols=cols, iop=iop_arr, ipp=ipp_arr + normal * gap * index,
                pixel_spacing=spacing_t, slope=slope, intercept=intercept,
                order_key=(0, 0.0, 0.0, index), sop_uid=sop_uid, has_geometry=False,
                slice_spacing_hint=gap,
            ))
        return frames

    frames.append(Frame(
        path=path, frame_index=None, tile_index=None,
        group_key=key(iop_arr, _image_kind(base_type), spacing_t, echo) + (() if has_geometry else ("nogeom", path)),
        rows=rows, cols=cols, iop=iop_arr, ipp=ipp_arr, pixel_spacing=spacing_t, slope=slope,
        intercept=intercept, order_key=order_key, sop_uid=sop_uid, has_geometry=has_geometry,
        slice_spacing_hint=spacing_hint, native_pixels=_native_pixel_format(ds, samples),
    ))
    return frames


_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_IMPLICIT_LE = "1.2.840.10008.1.2"


def _native_pixel_format(ds: Any, samples: int | None) -> tuple[bool, int, int, bool] | None:
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if ts not in (_EXPLICIT_LE, _IMPLICIT_LE) or samples != 1:
        return None
    allocated, stored = _int(ds.get("BitsAllocated")), _int(ds.get("BitsStored"))
    if allocated not in (8, 16, 32) or not stored or stored > allocated:
        return None
    return ts == _EXPLICIT_LE, allocated, stored, _int(ds.get("PixelRepresentation"), 0) == 1


def _read_native_plane(frame: Frame) -> np.ndarray | None:
    """The stored pixels of an uncompressed little-endian single-frame file, read straight from
    its bytes (the Pixel Data element is validated by tag, VR and exact length), or None to let
    pydicom decode it. Values are masked / sign-extended to BitsStored exactly as pydicom does."""
    explicit, allocated, stored, signed = frame.native_pixels  # type: ignore[misc]
    expected = frame.rows * frame.cols * allocated // 8
    try:
        data = Path(frame.path).read_bytes()
    except OSError as exc:
        raise InputError(frame.path, f"cannot be read ({exc.strerror or exc})") from exc
    header = 12 if explicit else 8
    tag = b"\xe0\x7f\x10\x00"

    def valid(pos: int) -> bool:
        if pos < 0 or data[pos:pos + 4] != tag:
            return False
        if explicit and data[pos + 4:pos + 6] not in (b"OW", b"OB"):
            return False
        length = int.from_bytes(data[pos + header - 4:pos + header], "little")
        return length in (expected, expected + 1) and pos + header + expected <= len(data)

    pos = next((p for p in (len(data) - expected - header, len(data) - expected - 1 - header) if valid(p)), None)
    end = len(data) - expected
    for _ in range(4):  # trailing elements after the pixel data are rare; look a little further back
        if pos is not None:
            break
        found = data.rfind(tag, 0, max(0, end))
        if found < 0:
            break
        pos = found if valid(found) else None
        end = found
    if pos is None:
        return None
    dtype = np.dtype(f"<{'i' if signed else 'u'}{allocated // 8}")
    plane = np.frombuffer(data, dtype=dtype, count=frame.rows * frame.cols, offset=pos + header)
    plane = plane.reshape(frame.rows, frame.cols)
    if stored < allocated:
        plane = plane.astype(dtype.newbyteorder("="), copy=True)
        if signed:
            shift = allocated - stored
            plane = (plane << shift) >> shift  # arithmetic shift sign-extends from BitsStored
        else:
            plane &= (1 << stored) - 1
    return plane


# ---- reading headers -----------------------------------------------------------------------------
def _looks_like_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) >= 132 and head[128:132] == b"DICM"


def read_header(path: str | os.PathLike[str], *, strict: bool) -> Any | None:
    """Header of one file (pixel data skipped), or None when it is not DICOM.

    strict=True raises InputError for anything unreadable (a file the user named); strict=False
    returns None for non-DICOM files but still raises for a damaged file with a DICOM preamble.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from exc
    if size == 0:
        if strict:
            raise InputError(path, "file is empty (0 bytes)")
        return None
    has_preamble = _looks_like_dicom(path)
    if has_preamble:
        fast = read_fast_header(str(path))
        if fast is not None and "Rows" in fast:
            return fast
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=not has_preamble,
                             specific_tags=_HEADER_TAGS)
    except InvalidDicomError as exc:
        if strict:
            raise InputError(path, "not a DICOM file (no DICM preamble)") from exc
        return None
    except Exception as exc:  # pydicom raises many types for damaged files; all mean "unreadable"
        if has_preamble or strict:
            raise InputError(path, f"DICOM header is truncated or corrupt ({type(exc).__name__}: {exc})") from exc
        return None
    if has_preamble and "Rows" not in ds:
        # pydicom stops quietly at the end of a cut file: an image object without Rows, or an
        # object without even its SOP class, was cut short (reports and other non-images pass)
        sop_class = ds.get("SOPClassUID") or getattr(ds.get("file_meta", None), "MediaStorageSOPClassUID", None)
        class_name = getattr(sop_class, "name", "") if sop_class else ""
        if "SOPClassUID" not in ds or "Image Storage" in class_name:
            raise InputError(path, "DICOM header is truncated or corrupt (it ends before the image "
                                   "description)")
    if not has_preamble and "SOPClassUID" not in ds and "Rows" not in ds:
        # force=True accepts any bytes; without the usual tags this was not DICOM at all
        if strict:
            raise InputError(path, "not a DICOM file")
        return None
    return ds


def _candidate_files(folder: Path) -> Iterable[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or name.upper() in _SKIP_NAMES or name.lower().endswith(_SKIP_SUFFIXES):
                continue
            yield Path(root) / name


def _scan(path: Path, files: list[Path]) -> tuple[list[Frame], dict[str, dict[str, Any]], list[str]]:
    """Frames of every DICOM image in `files`, series-level fields per file, unreadable files."""
    frames: list[Frame] = []
    fields_by_file: dict[str, dict[str, Any]] = {}
    unreadable: list[str] = []
    fields_by_series: dict[tuple, dict[str, Any]] = {}
    for file in files:
        try:
            ds = read_header(file, strict=path.is_file())
        except InputError as exc:
            if path.is_file():
                raise
            unreadable.append(f"{file.name}: {exc.problem}")
            log.warning("%s", exc)
            continue
        if ds is None:
            continue
        if str(ds.get("SOPClassUID", "")) in _NON_IMAGE_SOP_CLASSES:
            continue
        if "PixelData" not in ds and "Rows" not in ds:
            continue
        try:
            file_frames = frames_of_dataset(ds, str(file))
        except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
            # malformed header values (wrong VR, empty sequence items): unusable, not fatal
            problem = f"header values cannot be interpreted ({type(exc).__name__}: {exc})"
            if path.is_file():
                raise InputError(file, problem) from exc
            unreadable.append(f"{file.name}: {problem}")
            continue
        if not file_frames:
            continue
        frames.extend(file_frames)
        series_key = file_frames[0].group_key[:2]  # (SeriesInstanceUID, SeriesNumber)
        fields = fields_by_series.get(series_key)
        if fields is None:  # series-level fields are equal across a series: parse them once
            fields = fields_by_series[series_key] = _series_fields(ds)
        fields_by_file[str(file)] = fields
    return frames, fields_by_file, unreadable


# ---- grouping and geometry -----------------------------------------------------------------------
def _cluster_orientations(frames: list[Frame]) -> list[list[Frame]]:
    clusters: list[tuple[np.ndarray, list[Frame]]] = []
    for frame in frames:
        for iop, members in clusters:
            if np.allclose(iop, frame.iop, atol=_IOP_TOL):
                members.append(frame)
                break
        else:
            clusters.append((frame.iop, [frame]))
    return [members for _, members in clusters]


def _plan_geometry(plan_frames: list[Frame], uid: str) -> dict[str, Any]:
    """Sort frames into volumes x slices and derive a regular grid, or say why there is none."""
    first = plan_frames[0]
    row_cos, col_cos = first.iop[:3], first.iop[3:]
    normal = first.normal if first.normal is not None else np.cross(row_cos, col_cos)
    normal = normal / (np.linalg.norm(normal) or 1.0)
    # de-duplicate copies of the same instance (the same file twice in a folder)
    seen: set[tuple] = set()
    unique: list[Frame] = []
    for frame in plan_frames:
        ident = (frame.sop_uid, frame.frame_index, frame.tile_index)
        if frame.sop_uid and ident in seen:
            continue
        seen.add(ident)
        unique.append(frame)
    distances = np.array([float(f.ipp @ normal) for f in unique])
    order = np.argsort(distances, kind="stable")
    positions: list[list[Frame]] = []
    position_mm: list[float] = []
    for i in order:
        if position_mm and abs(distances[i] - position_mm[-1]) <= _POSITION_TOL_MM:
            positions[-1].append(unique[i])
        else:
            positions.append([unique[i]])
            position_mm.append(float(distances[i]))
    result: dict[str, Any] = {"warnings": [], "refusal": None, "irregular": False}
    counts = {len(p) for p in positions}
    if len(counts) > 1:
        per_count = defaultdict(list)
        for mm, p in zip(position_mm, positions, strict=True):
            per_count[len(p)].append(mm)
        detail = ", ".join(f"{len(v)} position(s) with {k} image(s)" for k, v in sorted(per_count.items()))
        result["refusal"] = (f"series {uid}: slice positions hold different numbers of images ({detail}); "
                             "a time point or slice is missing")
        n_volumes = min(counts)
    else:
        n_volumes = counts.pop()
    for p in positions:
        p.sort(key=lambda f: f.order_key)
    frames_by_volume = [[p[v] for p in positions] for v in range(n_volumes)]
    n_slices = len(positions)
    dy, dx = first.pixel_spacing
    if n_slices == 1:
        spacing_z = first.slice_spacing_hint if first.slice_spacing_hint and first.slice_spacing_hint > 0 else 1.0
        z_dir = normal
    else:
        d = np.asarray(position_mm)
        gaps = np.diff(d)
        even_gap = (d[-1] - d[0]) / (n_slices - 1)
        spacing_z = float(even_gap)
        z_dir = normal
        tol = max(_POSITION_TOL_MM, _GAP_REL_TOL * even_gap)
        if np.max(np.abs(gaps - even_gap)) > tol:
            nominal = float(np.min(gaps))
            multiples = gaps / nominal
            rounded = np.rint(multiples)
            if np.all(np.abs(gaps - rounded * nominal) <= max(_POSITION_TOL_MM, _GAP_REL_TOL * nominal)) \
                    and rounded.max() >= 2:
                k = int(np.argmax(rounded >= 2))
                missing = int(rounded.sum() - len(gaps))
                result["refusal"] = (
                    f"series {uid}: {missing} slice(s) missing (gap of {gaps[k]:.3f} mm between slice "
                    f"positions {d[k]:.3f} and {d[k + 1]:.3f} mm where the spacing is {nominal:.3f} mm; "
                    f"next to {Path(positions[k][0].path).name})")
            else:
                result["irregular"] = True
                result["warnings"].append(
                    f"uneven slice gaps ({gaps.min():.3f} to {gaps.max():.3f} mm)")
        # gantry tilt: slice origins do not move along the slice normal
        ipps = np.array([p[0].ipp for p in positions])
        offsets = ipps - ipps[0]
        perpendicular = offsets - np.outer(offsets @ normal, normal)
        shear_mm = float(np.max(np.linalg.norm(perpendicular, axis=1)))
        if shear_mm > max(0.02, 0.1 * min(dx, dy)):
            result["irregular"] = True
            stack = offsets[-1] / (np.linalg.norm(offsets[-1]) or 1.0)
            tilt = math.degrees(math.acos(min(1.0, abs(float(stack @ normal)))))
            result["warnings"].append(f"gantry tilt / sheared stack ({tilt:.2f} degrees between slice "
                                      "normal and slice positions)")
    direction = np.column_stack([row_cos, col_cos, z_dir])
    origin = positions[0][0].ipp
    result.update(
        frames_by_volume=frames_by_volume,
        spacing_zyx_mm=(float(spacing_z), float(dy), float(dx)),
        origin_lps_mm=(float(origin[0]), float(origin[1]), float(origin[2])),
        direction_lps=direction,
        slice_positions_mm=np.asarray(position_mm),
    )
    if not first.has_geometry:
        result["warnings"].append("no patient position/orientation in the file: identity geometry assumed")
    return result


# Discovery results of the last few folders, keyed by every file's (name, size, mtime): choosing a
# series after `discover_series` (or loading another time point) does not parse headers again.
_PLAN_CACHE: OrderedDict[tuple, tuple[list[SeriesPlan], list[str]]] = OrderedDict()
_PLAN_CACHE_SIZE = 4
_PLAN_CACHE_LOCK = threading.Lock()  # the GUI discovers and loads from worker threads


def clear_cache() -> None:
    """Forget cached discovery results (benchmarks measure a cold discovery)."""
    with _PLAN_CACHE_LOCK:
        _PLAN_CACHE.clear()


def _plans(path: Path) -> tuple[list[SeriesPlan], list[str]]:
    files = [path] if path.is_file() else list(_candidate_files(path))
    signature = []
    for file in files:
        try:
            st = file.stat()
        except OSError:
            continue
        signature.append((str(file), st.st_size, st.st_mtime_ns))
    key = (str(path.resolve()), tuple(signature))
    with _PLAN_CACHE_LOCK:
        cached = _PLAN_CACHE.get(key)
        if cached is not None:
            _PLAN_CACHE.move_to_end(key)
            return cached
    result = _plans_uncached(path, files)
    with _PLAN_CACHE_LOCK:
        _PLAN_CACHE[key] = result
        while len(_PLAN_CACHE) > _PLAN_CACHE_SIZE:
            _PLAN_CACHE.popitem(last=False)
    return result


def _plans_uncached(path: Path, files: list[Path]) -> tuple[list[SeriesPlan], list[str]]:
    frames, fields_by_file, unreadable = _scan(path, files)
    by_key: dict[tuple, list[Frame]] = defaultdict(list)
    for frame in frames:
        by_key[frame.group_key].append(frame)
    parts_by_uid: dict[str, list[list[Frame]]] = defaultdict(list)
    for key in sorted(by_key, key=lambda k: tuple(str(v) for v in k)):
        for cluster in _cluster_orientations(by_key[key]):
            parts_by_uid[key[0]].append(cluster)
    plans: list[SeriesPlan] = []
    for series_uid, parts in parts_by_uid.items():
        parts.sort(key=lambda p: (_int(fields_by_file[p[0].path]["series_number"], 0) or 0,
                                  min(f.order_key for f in p), p[0].path))
        for n, part in enumerate(parts, start=1):
            uid = series_uid if len(parts) == 1 else f"{series_uid}#{n}"
            uid = uid or f"(no SeriesInstanceUID)#{n}"
            info = dict(fields_by_file[part[0].path])
            geo = _plan_geometry(part, uid)
            files = tuple(dict.fromkeys(f.path for f in part))
            warnings_list = list(geo["warnings"])
            if unreadable:
                warnings_list.append(f"{len(unreadable)} unreadable file(s) skipped in the folder: "
                                     + "; ".join(unreadable[:3]))
            plans.append(SeriesPlan(
                uid=uid, series_instance_uid=series_uid, info=info,
                frames_by_volume=geo["frames_by_volume"], spacing_zyx_mm=geo["spacing_zyx_mm"],
                origin_lps_mm=geo["origin_lps_mm"], direction_lps=geo["direction_lps"],
                warnings=warnings_list, refusal=geo["refusal"], irregular=geo["irregular"],
                slice_positions_mm=geo["slice_positions_mm"], files=files,
            ))
    return plans, unreadable


def _no_series_error(path: Path, unreadable: list[str]) -> InputError:
    if unreadable:
        return InputError(path, f"no readable DICOM images; {len(unreadable)} damaged file(s), e.g. {unreadable[0]}")
    return InputError(path, "no DICOM images found" + (" in this folder (searched recursively)" if path.is_dir() else ""))


def _affine_ras(plan: SeriesPlan) -> np.ndarray:
    affine = np.eye(4)
    spacing_xyz = plan.spacing_zyx_mm[::-1]
    affine[:3, :3] = _FLIP_LPS_RAS @ plan.direction_lps @ np.diag(spacing_xyz)
    affine[:3, 3] = _FLIP_LPS_RAS @ np.asarray(plan.origin_lps_mm)
    return affine


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
        spacing_zyx_mm=plan.spacing_zyx_mm, affine_ras=_affine_ras(plan),
        n_volumes=len(plan.frames_by_volume), modality=plan.info["modality"],
        description=plan.info["series_description"], series_instance_uid=plan.series_instance_uid,
        series_number=plan.info["series_number"], n_files=len(plan.files),
        warnings=tuple(warnings_list), files=plan.files,
    )


def discover_dicom(path: str | os.PathLike[str]) -> list[SeriesInfo]:
    """Every DICOM series under `path` (a folder, searched recursively, or one file), headers only."""
    path = Path(path)
    plans, unreadable = _plans(path)
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


# ---- pixel data ----------------------------------------------------------------------------------
def _decode_file(path: str) -> tuple[Any, np.ndarray]:
    """Dataset and decoded stored pixel values ((frames,) rows, cols[, samples]) in native byte order."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=not _looks_like_dicom(Path(path)))
    except Exception as exc:  # damaged file: say which and why
        raise InputError(path, f"DICOM file is truncated or corrupt ({type(exc).__name__}: {exc})") from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise InputError(path, "DICOM file has no pixel data (truncated?)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = ds.pixel_array
    except Exception as exc:  # decoder errors: missing plugin, truncated fragments, bad lengths
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        ts_name = f"{ts.name} ({ts})" if ts is not None else "unknown transfer syntax"
        raise InputError(path, f"pixel data cannot be decoded [{ts_name}]: {exc}") from exc
    if not pixels.dtype.isnative:
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))
    return ds, pixels


def _to_grey(plane: np.ndarray) -> np.ndarray:
    if plane.ndim == 3:  # RGB (pydicom converts YBR to RGB)
        return (plane[..., 0] * 0.299 + plane[..., 1] * 0.587 + plane[..., 2] * 0.114).astype(np.float32)
    return plane


def _read_planes(frames_by_volume_slice: list[Frame]) -> tuple[list[np.ndarray], list[str]]:
    """Stored (un-rescaled) 2-D planes in slice order, decoding each file once."""
    warnings_list: list[str] = []
    by_file: dict[str, list[int]] = defaultdict(list)
    for i, frame in enumerate(frames_by_volume_slice):
        by_file[frame.path].append(i)
    planes: list[np.ndarray | None] = [None] * len(frames_by_volume_slice)
    colour = False
    for path, indices in by_file.items():
        if len(indices) == 1 and frames_by_volume_slice[indices[0]].native_pixels is not None:
            plane = _read_native_plane(frames_by_volume_slice[indices[0]])
            if plane is not None:
                planes[indices[0]] = plane
                continue
        ds, pixels = _decode_file(path)
        samples = _int(ds.get("SamplesPerPixel"), 1) or 1
        n_frames = _int(ds.get("NumberOfFrames"), 1) or 1
        for i in indices:
            frame = frames_by_volume_slice[i]
            if frame.frame_index is not None and n_frames > 1:
                if frame.frame_index >= pixels.shape[0]:
                    raise InputError(path, f"frame {frame.frame_index + 1} is missing from the pixel data")
                plane = pixels[frame.frame_index]
            else:
                plane = pixels
            if frame.tile_index is not None:
                per_side = plane.shape[1] // frame.cols
                r, c = divmod(frame.tile_index, per_side)
                plane = plane[r * frame.rows:(r + 1) * frame.rows, c * frame.cols:(c + 1) * frame.cols]
            if samples > 1:
                colour = True
                plane = _to_grey(plane)
            expected = (frame.rows, frame.cols)
            if plane.shape[:2] != expected:
                raise InputError(path, f"decoded image is {plane.shape[:2]}, header says {expected}")
            planes[i] = plane
    if colour:
        warnings_list.append("colour image converted to greyscale (luminance)")
    return planes, warnings_list  # type: ignore[return-value]


def _rescaled_stack(frames: list[Frame], planes: list[np.ndarray]) -> np.ndarray:
    """(z, y, x) voxels after each frame's own rescale slope/intercept, in the smallest exact dtype."""
    shape = (len(planes), *planes[0].shape)
    identity = all(f.slope == 1.0 and f.intercept == 0.0 for f in frames)
    raw_dtype = np.result_type(*{p.dtype for p in planes})
    if identity:
        out = np.empty(shape, dtype=raw_dtype)
        for z, plane in enumerate(planes):
            out[z] = plane
        return out
    integral = all(float(f.slope).is_integer() and float(f.intercept).is_integer() for f in frames) \
        and raw_dtype.kind in "iub"
    if not integral:
        out = np.empty(shape, dtype=np.float32)
        for z, (frame, plane) in enumerate(zip(frames, planes, strict=True)):
            np.multiply(plane, np.float32(frame.slope), out=out[z], casting="unsafe")
            out[z] += np.float32(frame.intercept)
        return out
    # integer rescale (CT HU): exact, in the smallest signed type holding every rescaled value
    raw_ranges = [(int(p.min()), int(p.max())) for p in planes]
    ends = [v * int(f.slope) + int(f.intercept) for f, (a, b) in zip(frames, raw_ranges, strict=True) for v in (a, b)]
    lo, hi = min(ends), max(ends)
    target = next((np.dtype(t) for t in (np.int16, np.int32, np.int64)
                   if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max), np.dtype(np.float64))
    out = np.empty(shape, dtype=target)
    raw_lo, raw_hi = min(r[0] for r in raw_ranges), max(r[1] for r in raw_ranges)
    fits = target.kind == "i" and np.iinfo(target).min <= raw_lo and raw_hi <= np.iinfo(target).max
    if fits and all(f.slope == 1.0 for f in frames):
        # the common CT case: copy stored values, then add the intercept in place (no overflow:
        # both the stored and the rescaled ranges fit the target type)
        for z, plane in enumerate(planes):
            np.copyto(out[z], plane, casting="unsafe")
        intercepts = {int(f.intercept) for f in frames}
        if len(intercepts) == 1:
            out += target.type(intercepts.pop())
        else:
            for z, frame in enumerate(frames):
                out[z] += target.type(int(frame.intercept))
        return out
    for z, (frame, plane) in enumerate(zip(frames, planes, strict=True)):
        out[z] = plane.astype(np.int64) * int(frame.slope) + int(frame.intercept)
    return out


def _regularize(plan: SeriesPlan, frames: list[Frame], stack: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Resample an irregular stack (tilt, uneven gaps) onto a regular orthogonal grid in patient space.

    Grid: x along the image rows' direction, z along the line through the slice origins, y
    completing a right-handed orthogonal frame; z spacing = the smallest gap, y spacing = the
    pixel spacing; extent covers every source voxel. Linear interpolation within and between slices.
    """
    from scipy.ndimage import map_coordinates

    row_cos = np.asarray(plan.direction_lps[:, 0])
    col_cos = np.asarray(plan.direction_lps[:, 1])
    normal = np.asarray(plan.direction_lps[:, 2])
    ipps = np.array([f.ipp for f in frames])
    dists = ipps @ normal
    stack_dir = ipps[-1] - ipps[0]
    stack_dir /= np.linalg.norm(stack_dir)
    x_dir = row_cos - (row_cos @ stack_dir) * stack_dir
    x_dir /= np.linalg.norm(x_dir)
    y_dir = np.cross(stack_dir, x_dir)
    if y_dir @ col_cos < 0:
        y_dir = -y_dir
    z_dir = np.cross(x_dir, y_dir)
    if z_dir @ stack_dir < 0:  # keep index order along the slice positions
        y_dir, z_dir = -y_dir, -z_dir
    dz_along = np.diff(ipps @ stack_dir)
    spacing_z = float(np.min(np.abs(dz_along)))
    _, dy, dx = plan.spacing_zyx_mm
    nz_src, ny_src, nx_src = stack.shape
    # corners of every source slice, expressed in the new frame
    corners = []
    for ipp in (ipps[0], ipps[-1]):
        for j in (0, ny_src - 1):
            for i in (0, nx_src - 1):
                corners.append(ipp + row_cos * dx * i + col_cos * dy * j)
    corners = np.array(corners)
    frame_axes = np.column_stack([x_dir, y_dir, z_dir])
    start = ipps[0]
    local = (corners - start) @ frame_axes
    lo = local.min(axis=0)
    hi = local.max(axis=0)
    lo[2], hi[2] = 0.0, float((ipps[-1] - ipps[0]) @ z_dir)
    steps = np.array([dx, dy, spacing_z])
    n = np.floor((hi - lo) / steps + 1e-6).astype(int) + 1
    if n.prod() > 4 * stack.size + 10_000_000:
        raise InputError(plan.uid, "resampling this series would need an unreasonably large grid")
    origin = start + frame_axes @ lo
    # world position of every target voxel -> fractional source (slice, row, column), one
    # target slice at a time so memory stays at a few slices whatever the volume size
    source = stack.astype(np.float32, copy=False)
    fill = float(stack.min())
    values = np.empty(tuple(n[::-1]), dtype=stack.dtype if stack.dtype.kind in "iu" else np.float32)
    yy, xx = np.meshgrid(np.arange(n[1]), np.arange(n[0]), indexing="ij")
    plane_offsets = (np.stack([xx, yy], axis=-1) * steps[:2]) @ frame_axes[:, :2].T
    for z in range(n[2]):
        world = origin + frame_axes[:, 2] * steps[2] * z + plane_offsets
        d = world @ normal
        k = np.interp(d, dists, np.arange(nz_src, dtype=np.float64))
        outside = (d < dists[0] - 1e-6) | (d > dists[-1] + 1e-6)
        k_lo = np.floor(k).astype(int)
        k_hi = np.minimum(k_lo + 1, nz_src - 1)
        frac = (k - k_lo)[..., None]
        slice_origin = ipps[k_lo] * (1 - frac) + ipps[k_hi] * frac
        rel = world - slice_origin
        col_index = (rel @ row_cos) / dx
        row_index = (rel @ col_cos) / dy
        k = np.where(outside, -10.0, k)
        plane = map_coordinates(source, [k, row_index, col_index], order=1, mode="constant", cval=fill)
        values[z] = np.rint(plane) if values.dtype.kind in "iu" else plane
    geometry = {
        "spacing_zyx_mm": (spacing_z, float(dy), float(dx)),
        "origin_lps_mm": tuple(float(v) for v in origin),
        "direction_lps": frame_axes,
    }
    return values, geometry


def load_dicom(path: str | os.PathLike[str], *, series_uid: str | None = None, volume_index: int = 0,
               regularize: bool = False) -> Volume:
    """One volume (time point `volume_index`) of one DICOM series under `path`."""
    path = Path(path)
    plans, unreadable = _plans(path)
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
    planes, decode_warnings = _read_planes(frames)
    stack = _rescaled_stack(frames, planes)
    warnings_list = list(plan.warnings) + decode_warnings
    geometry = {"spacing_zyx_mm": plan.spacing_zyx_mm, "origin_lps_mm": plan.origin_lps_mm,
                "direction_lps": plan.direction_lps}
    resampled = False
    if plan.irregular:
        stack, geometry = _regularize(plan, frames, stack)
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
