"""Small synthetic DICOM files written with pydicom, so every loader path can be tested in tmp_path."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import CTImageStorage, EnhancedMRImageStorage, ExplicitVRLittleEndian, generate_uid


def base_dataset(sop_class: str, modality: str, series_uid: str, study_uid: str,
                 frame_of_reference_uid: str | None = None) -> Dataset:
    """File meta, UIDs, a test patient and 16-bit signed greyscale pixel attributes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_of_reference_uid or generate_uid()
    ds.Modality = modality
    ds.PatientName = "Test^Patient"
    ds.PatientID = "P1"
    ds.PatientBirthDate = "19700101"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    return ds


def write_series(folder: Path, stored: np.ndarray, *, positions: Sequence[Sequence[float]] | None = None,
                 iop: Sequence[float] = (1, 0, 0, 0, 1, 0), pixel_spacing: Sequence[float] = (0.8, 0.7),
                 slope: float | Sequence[float] = 1.0, intercept: float | Sequence[float] = -1024.0,
                 series_uid: str | None = None, study_uid: str | None = None, series_number: int = 3,
                 names: Sequence[str] | None = None, instance_numbers: Sequence[int] | None = None,
                 acquisition_times: Sequence[str] | None = None, modality: str = "CT",
                 description: str = "synthetic", image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL")) -> list[Path]:
    """One file per slice of `stored` (z, y, x) int16 stored values; returns the paths in z order.

    Default positions: 2.5 mm apart along the normal of `iop`, starting at (-50, -60, 100).
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    n = stored.shape[0]
    iop = np.asarray(iop, dtype=float)
    if positions is None:
        normal = np.cross(iop[:3], iop[3:])
        positions = [np.array([-50.0, -60.0, 100.0]) + normal * 2.5 * k for k in range(n)]
    slopes = list(slope) if isinstance(slope, (list, tuple, np.ndarray)) else [slope] * n
    intercepts = list(intercept) if isinstance(intercept, (list, tuple, np.ndarray)) else [intercept] * n
    paths = []
    for k in range(n):
        ds = base_dataset(CTImageStorage if modality == "CT" else pydicom.uid.MRImageStorage, modality, series_uid, study_uid)
        ds.SeriesNumber = series_number
        ds.SeriesDescription = description
        ds.ImageType = list(image_type)
        ds.InstanceNumber = instance_numbers[k] if instance_numbers is not None else k + 1
        if acquisition_times is not None:
            ds.AcquisitionTime = acquisition_times[k]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in positions[k]]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
        ds.PixelSpacing = [f"{v:g}" for v in pixel_spacing]
        ds.SliceThickness = "2.5"
        ds.RescaleSlope = f"{slopes[k]:.10g}"
        ds.RescaleIntercept = f"{intercepts[k]:.10g}"
        ds.Rows, ds.Columns = stored.shape[1], stored.shape[2]
        ds.PixelData = np.ascontiguousarray(stored[k], dtype="<i2").tobytes()
        name = names[k] if names is not None else f"slice{k:03d}.dcm"
        path = folder / name
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_enhanced_mr(path: Path, stored: np.ndarray, *, frame_types: Sequence[Sequence[str]],
                      positions: Sequence[Sequence[float]], slopes: Sequence[float], intercepts: Sequence[float],
                      pixel_spacing: Sequence[float] = (2.0, 1.5), iop: Sequence[float] = (1, 0, 0, 0, 1, 0),
                      series_uid: str | None = None) -> Path:
    """An Enhanced MR object: geometry and rescale only in the functional groups (none at top level)."""
    ds = base_dataset(EnhancedMRImageStorage, "MR", series_uid or generate_uid(), generate_uid())
    ds.SeriesNumber = 7
    ds.SeriesDescription = "enhanced"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "MIXED", "NONE"]
    ds.InstanceNumber = 1
    ds.NumberOfFrames = stored.shape[0]
    ds.Rows, ds.Columns = stored.shape[1], stored.shape[2]
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [f"{v:g}" for v in pixel_spacing]
    measures.SliceThickness = "3"
    shared.PixelMeasuresSequence = DicomSequence([measures])
    orientation = Dataset()
    orientation.ImageOrientationPatient = [f"{v:g}" for v in iop]
    shared.PlaneOrientationSequence = DicomSequence([orientation])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    for k in range(stored.shape[0]):
        item = Dataset()
        position = Dataset()
        position.ImagePositionPatient = [f"{v:.6f}" for v in positions[k]]
        item.PlanePositionSequence = DicomSequence([position])
        transform = Dataset()
        transform.RescaleSlope = f"{slopes[k]:g}"
        transform.RescaleIntercept = f"{intercepts[k]:g}"
        transform.RescaleType = "US"
        item.PixelValueTransformationSequence = DicomSequence([transform])
        frame_type = Dataset()
        frame_type.FrameType = list(frame_types[k])
        item.MRImageFrameTypeSequence = DicomSequence([frame_type])
        content = Dataset()
        content.TemporalPositionIndex = 1
        content.InStackPositionNumber = k + 1
        item.FrameContentSequence = DicomSequence([content])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    ds.PixelData = np.ascontiguousarray(stored, dtype="<i2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
