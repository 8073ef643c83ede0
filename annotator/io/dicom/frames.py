"""Per-plane header records: every 2-D image plane of a DICOM file (a single-frame file, one frame
of an enhanced or cine multi-frame file, or one tile of a Siemens mosaic) as a Frame, from the
header alone."""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from annotator.core.errors import InputError
from annotator.io.dicom.raw import EXPLICIT_LE, IMPLICIT_LE, native_pixel_format
from annotator.io.dicom.values import (
    as_float,
    as_int,
    fg_item,
    float_list,
    image_kind,
    image_type,
    positive_spacing,
    seconds_of_time,
    sequence_item,
    valid_iop,
)
from annotator.io.limits import DEFLATE_MAX_RATIO, check_fits_file, check_within_cap

log = logging.getLogger(__name__)

IDENTITY_IOP = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
ENHANCED_FRAME_TYPE_SEQUENCES = ("MRImageFrameTypeSequence", "CTImageFrameTypeSequence",
                                 "XAXRFFrameCharacteristicsSequence", "PETFrameTypeSequence")


@dataclass
class Frame:
    """One 2-D image plane: a single-frame file, one frame of a multi-frame file, or a mosaic tile."""

    path: str
    frame_index: int | None          # 0-based frame in a multi-frame file (None: single-frame file)
    tile_index: int | None           # mosaic tile (None: not a mosaic)
    group_key: tuple[Any, ...]       # what must be equal for frames to share one volume
    rows: int
    cols: int
    iop: np.ndarray                  # (6,) row cosine then column cosine, LPS
    ipp: np.ndarray                  # (3,) centre of the first transmitted pixel, LPS mm
    pixel_spacing: tuple[float, float]  # (between rows = dy, between columns = dx) mm
    slope: float
    intercept: float
    order_key: tuple[Any, ...]       # sorts repeated positions into time points
    sop_uid: str
    normal: np.ndarray | None = None  # explicit slice normal (Siemens mosaic CSA), else row x col
    has_geometry: bool = True
    slice_spacing_hint: float | None = None
    # (explicit VR?, bits allocated, bits stored, signed?) when the pixels are plain little-endian
    # bytes we can read without pydicom's per-element parsing; None means "decode with pydicom"
    native_pixels: tuple[bool, int, int, bool] | None = None


def mosaic_info(ds: Any) -> tuple[int, np.ndarray | None] | None:
    """(number of slices, slice normal or None) for a Siemens mosaic, else None."""
    if "MOSAIC" not in image_type(ds.get("ImageType")):
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
        n_slices = as_int(ds.get((0x0019, 0x100A)).value if (0x0019, 0x100A) in ds else None)
    if not n_slices or n_slices < 1:
        return None
    return n_slices, normal


def series_fields(ds: Any) -> dict[str, Any]:
    return {
        "series_instance_uid": str(ds.get("SeriesInstanceUID", "") or ""),
        "study_instance_uid": str(ds.get("StudyInstanceUID", "") or ""),
        "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID", "") or ""),
        "series_description": str(ds.get("SeriesDescription", "") or ""),
        "series_number": as_int(ds.get("SeriesNumber")),
        "modality": str(ds.get("Modality", "") or ""),
        "patient_name": str(ds.get("PatientName", "") or ""),
        "patient_id": str(ds.get("PatientID", "") or ""),
        "patient_birth_date": str(ds.get("PatientBirthDate", "") or ""),
        "manufacturer": str(ds.get("Manufacturer", "") or ""),
        "sop_class_uid": str(ds.get("SOPClassUID", "") or ""),
        "window_center": as_float(ds.get("WindowCenter")),
        "window_width": as_float(ds.get("WindowWidth")),
        "gantry_tilt_deg": as_float(ds.get("GantryDetectorTilt")),
    }


@dataclass(frozen=True)
class _FileFacts:
    """What every plane of one file shares."""

    path: str
    rows: int
    cols: int
    series_uid: str
    series_number: int | None
    base_type: tuple[str, ...]
    echo: int | None
    sop_uid: str
    instance: int
    samples: int
    n_frames: int
    spacing_hint: float | None

    def group_key(self, image_type_: tuple[str, ...], spacing: tuple[float, float], echo: int | None) -> tuple[Any, ...]:
        # orientation is clustered later with a tolerance; here only exact, discrete properties
        return (self.series_uid, self.series_number, self.rows, self.cols, self.samples, image_type_, echo,
                round(spacing[0], 4), round(spacing[1], 4))


def frames_of_dataset(ds: Any, path: str) -> list[Frame]:
    """Header records of every 2-D plane in one DICOM file (no pixel data needed)."""
    rows, cols = as_int(ds.get("Rows"), 0), as_int(ds.get("Columns"), 0)
    if not rows or not cols:
        return []
    facts = _FileFacts(
        path=path, rows=rows, cols=cols, series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        series_number=as_int(ds.get("SeriesNumber")), base_type=image_type(ds.get("ImageType")),
        echo=as_int(ds.get("EchoNumbers")), sop_uid=str(ds.get("SOPInstanceUID", "") or ""),
        instance=as_int(ds.get("InstanceNumber"), 0) or 0, samples=as_int(ds.get("SamplesPerPixel"), 1) or 1,
        n_frames=as_int(ds.get("NumberOfFrames"), 1) or 1,
        spacing_hint=as_float(ds.get("SpacingBetweenSlices")) or as_float(ds.get("SliceThickness")),
    )
    check_pixel_claims(ds, facts)
    if ds.get("PerFrameFunctionalGroupsSequence"):
        return _enhanced_frames(ds, facts)
    classic = _ClassicGeometry.of(ds, facts)
    mosaic = mosaic_info(ds) if classic.has_geometry and facts.n_frames == 1 else None
    if mosaic is not None:
        if math.ceil(math.sqrt(mosaic[0])) > min(facts.rows, facts.cols):
            raise InputError(path, f"mosaic of {mosaic[0]} images cannot fit a {facts.rows}x{facts.cols} image")
        return _mosaic_frames(facts, classic, *mosaic)
    if facts.n_frames > 1:
        return _cine_frames(facts, classic)
    return [_classic_frame(ds, facts, classic)]


# Native (uncompressed) encodings: every frame's bytes are in the file; deflate may expand 1032x.
_NATIVE_SYNTAXES = {EXPLICIT_LE: 1.0, IMPLICIT_LE: 1.0, "1.2.840.10008.1.2.2": 1.0,
                    "1.2.840.10008.1.2.1.99": float(DEFLATE_MAX_RATIO)}


def check_pixel_claims(ds: Any, facts: _FileFacts) -> None:
    """Rows x Columns x NumberOfFrames against the cap and the file's size, before a frame record
    is made or a byte decoded: a tiny file claiming 2^31 frames must not hang the folder scan."""
    bits = as_int(ds.get("BitsAllocated"), 16) or 16
    claimed = math.ceil(facts.rows * facts.cols * facts.samples * facts.n_frames * max(bits, 1) / 8)
    check_within_cap(facts.path, claimed, "pixel data")
    try:
        size = os.path.getsize(facts.path)
    except OSError:
        return  # the reader that opens it next reports the file
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if syntax in _NATIVE_SYNTAXES:
        check_fits_file(facts.path, claimed, size, expansion=_NATIVE_SYNTAXES[syntax], what="pixel data")
    elif facts.n_frames * 8 > size:  # encapsulated: every frame is at least one 8-byte item
        raise InputError(facts.path, f"header claims {facts.n_frames} frames, more than a {size}-byte file can hold")


def _enhanced_frames(ds: Any, facts: _FileFacts) -> list[Frame]:
    """Enhanced multi-frame: geometry lives in the per-frame and shared functional groups."""
    per_frame_groups = ds.get("PerFrameFunctionalGroupsSequence")
    shared = sequence_item(ds, "SharedFunctionalGroupsSequence")
    frames = []
    for index in range(facts.n_frames):
        pf = per_frame_groups[index] if index < len(per_frame_groups) else None
        position = fg_item(pf, shared, "PlanePositionSequence")
        orientation = fg_item(pf, shared, "PlaneOrientationSequence")
        measures = fg_item(pf, shared, "PixelMeasuresSequence")
        transform = fg_item(pf, shared, "PixelValueTransformationSequence")
        content = fg_item(pf, None, "FrameContentSequence")
        frame_type = None
        for type_seq in ENHANCED_FRAME_TYPE_SEQUENCES:
            item = fg_item(pf, shared, type_seq)
            if item is not None and item.get("FrameType") is not None:
                frame_type = image_type(item.get("FrameType"))
                break
        ipp = float_list(position.get("ImagePositionPatient") if position else None, 3)
        iop = valid_iop(float_list(orientation.get("ImageOrientationPatient") if orientation else None, 6))
        measured = positive_spacing(float_list(measures.get("PixelSpacing") if measures else None, 2))
        spacing = (float(measured[0]), float(measured[1])) if measured else (1.0, 1.0)
        slope = as_float(transform.get("RescaleSlope") if transform else ds.get("RescaleSlope"), 1.0)
        intercept = as_float(transform.get("RescaleIntercept") if transform else ds.get("RescaleIntercept"), 0.0)
        echo_item = fg_item(pf, shared, "MREchoSequence")
        echo_time = as_float(echo_item.get("EffectiveEchoTime")) if echo_item else None
        temporal = as_int(content.get("TemporalPositionIndex")) if content else None
        acq = seconds_of_time(content.get("FrameAcquisitionDateTime")) if content else None
        stack_id = str(content.get("StackID", "")) if content else ""
        frames.append(Frame(
            path=facts.path, frame_index=index, tile_index=None,
            group_key=facts.group_key(frame_type or facts.base_type, spacing, None) + (stack_id, echo_time),
            rows=facts.rows, cols=facts.cols, iop=np.asarray(iop if iop else IDENTITY_IOP, dtype=np.float64),
            ipp=np.asarray(ipp if ipp else [0.0, 0.0, float(index)], dtype=np.float64),
            pixel_spacing=spacing, slope=slope or 1.0, intercept=intercept or 0.0,
            order_key=(temporal if temporal is not None else 0, acq if acq is not None else 0.0,
                       facts.instance, index),
            sop_uid=facts.sop_uid, has_geometry=ipp is not None and iop is not None,
            slice_spacing_hint=as_float(measures.get("SpacingBetweenSlices")) if measures else facts.spacing_hint,
        ))
    return frames


@dataclass(frozen=True)
class _ClassicGeometry:
    """Top-level geometry, rescale and ordering of a classic (not enhanced) image."""

    iop: np.ndarray
    ipp: np.ndarray
    spacing: tuple[float, float]
    has_geometry: bool
    slope: float
    intercept: float
    order_key: tuple[Any, ...]

    @classmethod
    def of(cls, ds: Any, facts: _FileFacts) -> _ClassicGeometry:
        ipp = float_list(ds.get("ImagePositionPatient"), 3)
        iop = valid_iop(float_list(ds.get("ImageOrientationPatient"), 6))
        spacing = positive_spacing(float_list(ds.get("PixelSpacing"), 2)) \
            or positive_spacing(float_list(ds.get("ImagerPixelSpacing"), 2))
        acq = seconds_of_time(ds.get("AcquisitionDateTime")) or seconds_of_time(ds.get("AcquisitionTime")) \
            or seconds_of_time(ds.get("ContentTime"))
        temporal = as_int(ds.get("TemporalPositionIdentifier"))
        trigger = as_float(ds.get("TriggerTime"))
        return cls(
            iop=np.asarray(iop if iop else IDENTITY_IOP, dtype=np.float64),
            ipp=np.asarray(ipp if ipp else [0.0, 0.0, 0.0], dtype=np.float64),
            spacing=(float(spacing[0]), float(spacing[1])) if spacing else (1.0, 1.0),
            has_geometry=ipp is not None and iop is not None,
            slope=as_float(ds.get("RescaleSlope"), 1.0) or 1.0,
            intercept=as_float(ds.get("RescaleIntercept"), 0.0) or 0.0,
            order_key=(temporal if temporal is not None else 0, acq if acq is not None else 0.0,
                       trigger if trigger is not None else 0.0, facts.instance),
        )


def _mosaic_frames(facts: _FileFacts, geo: _ClassicGeometry, n_slices: int, csa_normal: np.ndarray | None) -> list[Frame]:
    """A Siemens mosaic: one frame per tile, each placed along the slice normal."""
    tiles_per_side = math.ceil(math.sqrt(n_slices))
    tile_rows, tile_cols = facts.rows // tiles_per_side, facts.cols // tiles_per_side
    row_cos, col_cos = geo.iop[:3], geo.iop[3:]
    dy, dx = geo.spacing
    # The mosaic's IPP is the corner of the whole mosaic; move it to the corner of one tile
    # (the correction nibabel's MosaicWrapper and dcm2niix apply).
    first = geo.ipp + col_cos * dy * (facts.rows - tile_rows) / 2.0 + row_cos * dx * (facts.cols - tile_cols) / 2.0
    normal = csa_normal if csa_normal is not None else np.cross(row_cos, col_cos)
    gap = facts.spacing_hint or 1.0
    key = facts.group_key(image_kind(facts.base_type), geo.spacing, facts.echo) + ("mosaic", tiles_per_side)
    return [Frame(path=facts.path, frame_index=None, tile_index=tile, group_key=key, rows=tile_rows, cols=tile_cols,
                  iop=geo.iop, ipp=first + normal * gap * tile, pixel_spacing=geo.spacing, slope=geo.slope,
                  intercept=geo.intercept, order_key=geo.order_key, sop_uid=facts.sop_uid, normal=normal,
                  slice_spacing_hint=gap)
            for tile in range(n_slices)]


def _cine_frames(facts: _FileFacts, geo: _ClassicGeometry) -> list[Frame]:
    """Multi-frame without functional groups (ultrasound/XA cine, old NM): frames form a stack along
    the normal with no patient geometry of their own."""
    gap = facts.spacing_hint or 1.0
    normal = np.cross(geo.iop[:3], geo.iop[3:])
    key = facts.group_key(image_kind(facts.base_type), geo.spacing, facts.echo) + ("cine", facts.path)
    return [Frame(path=facts.path, frame_index=index, tile_index=None, group_key=key, rows=facts.rows,
                  cols=facts.cols, iop=geo.iop, ipp=geo.ipp + normal * gap * index, pixel_spacing=geo.spacing,
                  slope=geo.slope, intercept=geo.intercept, order_key=(0, 0.0, 0.0, index), sop_uid=facts.sop_uid,
                  has_geometry=False, slice_spacing_hint=gap)
            for index in range(facts.n_frames)]


def _classic_frame(ds: Any, facts: _FileFacts, geo: _ClassicGeometry) -> Frame:
    """A classic single-frame image (the usual CT/MR slice)."""
    key = facts.group_key(image_kind(facts.base_type), geo.spacing, facts.echo) \
        + (() if geo.has_geometry else ("nogeom", facts.path))
    return Frame(path=facts.path, frame_index=None, tile_index=None, group_key=key, rows=facts.rows,
                 cols=facts.cols, iop=geo.iop, ipp=geo.ipp, pixel_spacing=geo.spacing, slope=geo.slope,
                 intercept=geo.intercept, order_key=geo.order_key, sop_uid=facts.sop_uid,
                 has_geometry=geo.has_geometry, slice_spacing_hint=facts.spacing_hint,
                 native_pixels=native_pixel_format(ds, facts.samples))
