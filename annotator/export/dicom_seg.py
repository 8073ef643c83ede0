"""DICOM SEG (highdicom) for labels drawn on a DICOM series: one segment per label, on the source frames.

Only possible when the Volume came from DICOM files (metadata "source_files" per z slice); each
slice's position and orientation is checked against its source file before anything is written,
so a segment can never land on the wrong frame.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from annotator import __version__
from annotator.core.atomic import atomic_path
from annotator.core.errors import GeometryMismatchError, InputError
from annotator.core.labels import LabelMap, LabelTable
from annotator.core.volume import Volume
from annotator.export.api import (
    BaseExporter,
    ExportResult,
    ExportSpec,
    contains_phi,
    phi_values,
    refuse_existing,
    require_label_map_on_grid,
    safe_case_id,
    scrub_text,
)


def source_datasets(volume: Volume) -> list[Any]:
    """The source DICOM headers, one per z slice in array order (pixel data not read)."""
    import pydicom

    files = volume.metadata.get("source_files")
    if not files or len(files) != volume.shape_zyx[0]:
        raise InputError(volume.metadata.get("source_path"),
                         "DICOM SEG needs an image loaded from a DICOM series (one source file per slice)")
    datasets = []
    for path in files:
        if isinstance(path, list | tuple):  # a slice may list several files (e.g. echoes); the first places it
            path = path[0]
        try:
            datasets.append(pydicom.dcmread(str(path), stop_before_pixels=True))
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise InputError(path, f"cannot read the source DICOM file ({exc})") from exc
    complete_uids(datasets, [str(getattr(ds, "filename", "") or "") for ds in datasets])
    check_frames_match_volume(volume, datasets)
    return datasets


def _text(ds: Any, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


def complete_uids(datasets: Sequence[Any], paths: Sequence[str]) -> None:
    """Fill UIDs a source file carries empty (real archives hold such files) from what the file
    meta or the series' other files provide, generating only what the standard lets us (a new
    frame of reference); refuse, naming the attribute, where a SEG could not reference the source."""
    from pydicom.uid import generate_uid

    for ds, path in zip(datasets, paths, strict=True):
        meta = getattr(ds, "file_meta", None)
        for keyword, meta_keyword in (("SOPClassUID", "MediaStorageSOPClassUID"),
                                      ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
            if not _text(ds, keyword):
                value = str(getattr(meta, meta_keyword, "") or "").strip() if meta is not None else ""
                if not value:
                    raise InputError(path or None, f"{keyword} is empty in the file and in its file meta; "
                                                   "a DICOM SEG cannot reference this image")
                setattr(ds, keyword, value)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        values = {_text(ds, keyword) for ds in datasets} - {""}
        if len(values) > 1:
            raise InputError(paths[0] or None, f"the slices disagree on {keyword} ({len(values)} values); "
                                               "a DICOM SEG references one series")
        if values:
            value = values.pop()
        elif keyword == "FrameOfReferenceUID":
            value = generate_uid()  # a SEG needs one; a new one claims no registration to anything
        else:
            raise InputError(paths[0] or None, f"{keyword} is empty in every slice; a DICOM SEG cannot "
                                               "reference a series without it")
        for ds in datasets:
            setattr(ds, keyword, value)


def check_frames_match_volume(volume: Volume, datasets: Sequence[Any], atol_mm: float = 1e-2) -> None:
    """Raise GeometryMismatchError unless slice z of the volume is exactly source frame z."""
    _, rows, cols = volume.shape_zyx
    dirs = np.asarray(volume.direction_lps)
    for z, ds in enumerate(datasets):
        where = f"slice {z} ({getattr(ds, 'SOPInstanceUID', '?')})"
        if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
            # Enhanced multi-frame sources keep geometry per frame; not supported here yet.
            raise InputError(getattr(ds, "filename", None),
                             "DICOM SEG export needs single-frame source images with a position and orientation")
        if int(ds.Rows) != rows or int(ds.Columns) != cols:
            raise GeometryMismatchError(f"{where}: source frame is {ds.Rows}x{ds.Columns}, volume slice {rows}x{cols}")
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
        if not (np.allclose(iop[:3], dirs[:, 0], atol=1e-4) and np.allclose(iop[3:], dirs[:, 1], atol=1e-4)):
            raise GeometryMismatchError(f"{where}: source orientation {iop.tolist()} differs from the volume's")
        ipp = np.asarray([float(v) for v in ds.ImagePositionPatient])
        expected = volume.index_zyx_to_world_lps(np.array([z, 0, 0]))
        if not np.allclose(ipp, expected, atol=atol_mm):
            raise GeometryMismatchError(f"{where}: source position {ipp.tolist()} differs from the volume's "
                                        f"{np.round(expected, 3).tolist()}")


def deidentified_copies(datasets: Sequence[Any], key: bytes) -> list[Any]:
    """Copies of the source headers de-identified by the PS3.15 basic profile (UIDs retained, so
    the SEG still references its source instances) with a keyed pseudonymous Patient ID."""
    from annotator.export.deidentify import deidentify_dataset

    return [deidentify_dataset(copy.deepcopy(ds), key) for ds in datasets]


_TEXT_VRS = {"PN": 64, "LO": 64, "SH": 16, "LT": 10240, "ST": 1024, "UT": 1 << 20, "UC": 1 << 20,
              "CS": 16, "DA": 8}


def scrub_dataset(ds: Any, phi: Sequence[str]) -> int:
    """Replace identifying values inside any text element (e.g. a study description that names
    the patient), recursively; returns how many elements changed."""
    changed = 0
    for element in ds:
        if element.VR == "SQ":
            changed += sum(scrub_dataset(item, phi) for item in element.value)
            continue
        if element.VR not in _TEXT_VRS or element.value is None:
            continue
        values = element.value if element.VM > 1 else [element.value]
        texts = [str(v) for v in values]
        if not any(contains_phi(t, phi) for t in texts):
            continue
        if element.VR == "DA":
            new = ["" if contains_phi(t, phi) else t for t in texts]
        else:
            replacement = "ANON" if element.VR == "CS" else "anonymous"
            new = [scrub_text(t, phi, replacement)[: _TEXT_VRS[element.VR]] for t in texts]
        element.value = new if element.VM > 1 else new[0]
        changed += 1
    return changed


def segment_descriptions(table: LabelTable, label_ids: Sequence[int]) -> list[Any]:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name="annotator", version=__version__, family=codes.cid7162.ArtificialIntelligence)
    out = []
    for number, label_id in enumerate(label_ids, start=1):
        label = table[label_id] if label_id in table else None
        out.append(hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label.name if label else f"label {label_id}",
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=codes.SCT.AnatomicalStructure,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=algorithm,
            tracking_id=f"label {label_id}",
            tracking_uid=hd.UID(),
            display_color=hd.color.CIELabColor.from_rgb(*label.color) if label else None,
        ))
    return out


class DicomSegExporter(BaseExporter):
    """OUT/{case}_seg.dcm: a binary DICOM SEG referencing the source series."""

    name = "dicom-seg"

    def prepare(self, out_dir: Path, table: LabelTable, case_ids: Sequence[str],
                spec: ExportSpec) -> tuple[ExportSpec, list[str]]:
        if spec.keep_phi or spec.pseudonym_key:
            return spec, list(case_ids)
        from annotator.export.deidentify import dataset_key

        return replace(spec, pseudonym_key=dataset_key(out_dir, spec.pseudonym_key_file).hex()), list(case_ids)

    def case_files(self, out_dir: Path, case_id: str, spec: ExportSpec) -> list[tuple[Path, str]]:
        return [(Path(out_dir), f"{case_id}_seg.dcm")]

    def export_case(self, volume: Volume, labels: LabelMap | Volume, out_dir: Path,
                    spec: ExportSpec) -> ExportResult:
        import highdicom as hd

        label_map = require_label_map_on_grid(volume, labels)
        case_id = safe_case_id(spec.case_id, volume, spec)
        path = Path(out_dir) / f"{case_id}_seg.dcm"
        refuse_existing([path], spec)
        datasets = source_datasets(volume)
        if not spec.keep_phi:
            if not spec.pseudonym_key:  # export_case called without prepare (a library caller)
                spec, _ = self.prepare(Path(out_dir), label_map.table, [case_id], spec)
            datasets = deidentified_copies(datasets, bytes.fromhex(spec.pseudonym_key))
        label_ids = label_map.present_ids()
        if not label_ids:
            raise InputError(None, f"case {case_id}: the label map is empty; a DICOM SEG needs at least one segment")
        # highdicom takes a label map whose values are segment numbers 1..N.
        lut = np.zeros(max(label_ids) + 1, dtype=np.uint16)
        lut[label_ids] = np.arange(1, len(label_ids) + 1)
        pixels = lut[label_map.array]
        pixels = pixels.astype(np.uint8 if len(label_ids) < 256 else np.uint16)
        seg = hd.seg.Segmentation(
            source_images=datasets,
            pixel_array=pixels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=segment_descriptions(label_map.table, label_ids),
            series_instance_uid=hd.UID(),
            series_number=9000,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="annotator",
            manufacturer_model_name="annotator",
            software_versions=__version__,
            device_serial_number="0",
            series_description="annotator segmentation",
        )
        if not spec.keep_phi:
            # highdicom copies study-level text (descriptions, physician names) from the source;
            # free text may name the patient, so every text element is scrubbed too.
            scrub_dataset(seg, phi_values(volume))
        with atomic_path(path, overwrite=spec.overwrite) as tmp:
            seg.save_as(str(tmp))
        return ExportResult(case_id, [path], records={
            "segments": {number: label_id for number, label_id in enumerate(label_ids, start=1)},
            "table": label_map.table.to_json()})

    def finalize(self, results: Sequence[ExportResult], out_dir: Path, spec: ExportSpec,
                 table: LabelTable) -> list[Path]:
        return []
