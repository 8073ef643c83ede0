"""Finding series: headers of every file under a path (the fast reader first, pydicom for the
rest), frames grouped into series and orientation parts, each planned into a stack. The plans of
the last few folders are cached by every file's name, size and time, so choosing a series or a
time point after a discovery parses nothing again."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from annotator.core.errors import InputError
from annotator.io.dicom.frames import Frame, frames_of_dataset, series_fields
from annotator.io.dicom.raw import has_dicm_preamble, read_fast_header
from annotator.io.dicom.stack import SeriesPlan, cluster_orientations, plan_geometry
from annotator.io.dicom.values import as_int
from annotator.io.folders import files_under

log = logging.getLogger(__name__)

# SOP classes with Rows/Columns that are not images to show (labels, reports, raw data).
NON_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.481.3",  # RT Structure Set
    "1.2.840.10008.5.1.4.1.1.481.2",  # RT Dose (a dose grid, not an image to label)
    "1.2.840.10008.5.1.4.1.1.66",  # Raw data
    "1.2.840.10008.1.3.10",  # DICOMDIR
}
_SKIP_NAMES = {"DICOMDIR", "LOCKFILE", "VERSION"}
# Never DICOM: skipping them keeps a scan of a mixed folder fast (NIfTI etc. are listed separately).
_SKIP_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".raw", ".zraw", ".json",
                  ".txt", ".md", ".csv", ".tsv", ".xml", ".html", ".pdf", ".png", ".jpg", ".jpeg",
                  ".py", ".zip", ".npy", ".npz", ".pth", ".onnx")
# Discovery parses only these elements (plus the file meta): 3-5x faster than a full header on
# files with large private sections. Functional-group sequences are parsed when present.
HEADER_TAGS: list[str | int] = [
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
    has_preamble = has_dicm_preamble(path)
    if has_preamble:
        fast = read_fast_header(str(path))
        if fast is not None and "Rows" in fast:
            return fast
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=not has_preamble,
                             specific_tags=HEADER_TAGS)  # type: ignore[arg-type]  # pydicom accepts mixed keywords and tags
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


def candidate_files(folder: Path) -> Iterable[Path]:
    """Files under `folder` that may be DICOM (names that never are: skipped)."""
    return files_under(folder, lambda name: name.upper() not in _SKIP_NAMES and not name.lower().endswith(_SKIP_SUFFIXES))


def scan_files(path: Path, files: list[Path]) -> tuple[list[Frame], dict[str, dict[str, Any]], list[str]]:
    """Frames of every DICOM image in `files`, series-level fields per file, unreadable files."""
    frames: list[Frame] = []
    fields_by_file: dict[str, dict[str, Any]] = {}
    unreadable: list[str] = []
    fields_by_series: dict[tuple[Any, ...], dict[str, Any]] = {}
    for file in files:
        try:
            ds = read_header(file, strict=path.is_file())
            if ds is None or str(ds.get("SOPClassUID", "")) in NON_IMAGE_SOP_CLASSES:
                continue
            if "PixelData" not in ds and "Rows" not in ds:
                continue
            file_frames = frames_of_dataset(ds, str(file))
            if not file_frames:
                continue
            series_key = file_frames[0].group_key[:2]  # (SeriesInstanceUID, SeriesNumber)
            # series-level fields are equal across a series: the first file's stand for all
            fields = fields_by_series.get(series_key) or fields_by_series.setdefault(series_key, series_fields(ds))
        except InputError as exc:
            if path.is_file():
                raise
            unreadable.append(f"{file.name}: {exc.problem}")
            log.warning("%s", exc)
            continue
        except Exception as exc:  # pydicom converts values lazily: any access to a damaged header can raise
            problem = f"header values cannot be interpreted ({type(exc).__name__}: {exc})"
            if path.is_file():
                raise InputError(file, problem) from exc
            unreadable.append(f"{file.name}: {problem}")
            continue
        frames.extend(file_frames)
        fields_by_file[str(file)] = fields
    return frames, fields_by_file, unreadable


# Discovery results of the last few folders, keyed by every file's (name, size, mtime): choosing a
# series after `discover_series` (or loading another time point) does not parse headers again.
_PLAN_CACHE: OrderedDict[tuple[Any, ...], tuple[list[SeriesPlan], list[str]]] = OrderedDict()
_PLAN_CACHE_SIZE = 4
_PLAN_CACHE_LOCK = threading.Lock()  # the GUI discovers and loads from worker threads


def clear_cache() -> None:
    """Forget cached discovery results (benchmarks measure a cold discovery)."""
    with _PLAN_CACHE_LOCK:
        _PLAN_CACHE.clear()


def series_plans(path: Path) -> tuple[list[SeriesPlan], list[str]]:
    files = [path] if path.is_file() else list(candidate_files(path))
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
    result = plans_uncached(path, files)
    with _PLAN_CACHE_LOCK:
        _PLAN_CACHE[key] = result
        while len(_PLAN_CACHE) > _PLAN_CACHE_SIZE:
            _PLAN_CACHE.popitem(last=False)
    return result


def plans_uncached(path: Path, files: list[Path]) -> tuple[list[SeriesPlan], list[str]]:
    frames, fields_by_file, unreadable = scan_files(path, files)
    by_key: dict[tuple[Any, ...], list[Frame]] = defaultdict(list)
    for frame in frames:
        by_key[frame.group_key].append(frame)
    parts_by_uid: dict[str, list[list[Frame]]] = defaultdict(list)
    for key in sorted(by_key, key=lambda k: tuple(str(v) for v in k)):
        for cluster in cluster_orientations(by_key[key]):
            parts_by_uid[key[0]].append(cluster)
    plans: list[SeriesPlan] = []
    for series_uid, parts in parts_by_uid.items():
        parts.sort(key=lambda p: (as_int(fields_by_file[p[0].path]["series_number"], 0) or 0,
                                  min(f.order_key for f in p), p[0].path))
        for n, part in enumerate(parts, start=1):
            uid = series_uid if len(parts) == 1 else f"{series_uid}#{n}"
            uid = uid or f"(no SeriesInstanceUID)#{n}"
            info = dict(fields_by_file[part[0].path])
            geo = plan_geometry(part, uid)
            part_files = tuple(dict.fromkeys(f.path for f in part))
            warnings_list = list(geo.warnings)
            if unreadable:
                warnings_list.append(f"{len(unreadable)} unreadable file(s) skipped in the folder: "
                                     + "; ".join(unreadable[:3]))
            plans.append(SeriesPlan(
                uid=uid, series_instance_uid=series_uid, info=info,
                frames_by_volume=geo.frames_by_volume, spacing_zyx_mm=geo.spacing_zyx_mm,
                origin_lps_mm=geo.origin_lps_mm, direction_lps=geo.direction_lps,
                warnings=warnings_list, refusal=geo.refusal, irregular=geo.irregular,
                slice_positions_mm=geo.slice_positions_mm, files=part_files,
            ))
    return plans, unreadable


