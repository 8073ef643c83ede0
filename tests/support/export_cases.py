"""Test helpers for export tests: a synthetic CT series with known patient fields, a Volume read
from DICOM files with pydicom only (the reference exporters are checked against), output scanning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from annotator.core.labels import LabelMap, LabelTable
from annotator.core.volume import Volume

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

PATIENT = {"patient_name": "DOE^JANE", "patient_id": "PID4711", "patient_birth_date": "19700215"}


def write_synthetic_ct_series(folder: Path, n_slices: int = 4, rows: int = 16, cols: int = 18,
                              spacing_mm: float = 2.5) -> list[Path]:
    from pydicom.uid import CTImageStorage, generate_uid

    from support.dicom_factory import base_dataset

    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    rng = np.random.default_rng(1)
    paths = []
    for z in range(n_slices):
        ds = base_dataset(CTImageStorage, "CT", series, study, frame_of_reference)
        ds.PatientName, ds.PatientID = PATIENT["patient_name"], PATIENT["patient_id"]
        ds.PatientBirthDate, ds.PatientSex = PATIENT["patient_birth_date"], "F"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", "ACC1"
        ds.ReferringPhysicianName = ""
        ds.SeriesNumber, ds.InstanceNumber = 3, z + 1
        ds.Manufacturer = "test"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-20.0, -15.0, 100.0 + spacing_mm * z]
        ds.PixelSpacing = [0.8, 0.7]  # row spacing (y), column spacing (x)
        ds.SliceThickness = spacing_mm
        ds.Rows, ds.Columns = rows, cols
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = rng.integers(-500, 500, size=(rows, cols)).astype(np.int16).tobytes()
        # Files written in reverse order and named so lexical order is not slice order.
        path = folder / f"IM{(n_slices - z) * 7}"
        ds.save_as(str(path), enforce_file_format=True)
        paths.append(path)
    return paths


def volume_from_dicom_files(paths: list[Path]) -> Volume:
    """Single-frame axial-ish series -> Volume, sorted along the slice normal (pydicom only)."""
    import pydicom

    datasets = [pydicom.dcmread(str(p)) for p in paths]
    iop = np.asarray(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    order = sorted(range(len(datasets)), key=lambda i: float(np.dot(normal, np.asarray(datasets[i].ImagePositionPatient, float))))
    datasets = [datasets[i] for i in order]
    files = [str(paths[i]) for i in order]
    array = np.stack([ds.pixel_array * float(getattr(ds, "RescaleSlope", 1)) + float(getattr(ds, "RescaleIntercept", 0))
                      for ds in datasets]).astype(np.int16)
    positions = np.array([np.asarray(ds.ImagePositionPatient, float) for ds in datasets])
    dz = float(np.linalg.norm(positions[1] - positions[0])) if len(datasets) > 1 else 1.0
    row_mm, col_mm = (float(v) for v in datasets[0].PixelSpacing)
    direction = np.column_stack([iop[:3], iop[3:], normal])
    first = datasets[0]
    return Volume(array, spacing_zyx_mm=(dz, row_mm, col_mm), origin_lps_mm=tuple(positions[0]),
                  direction_lps=direction, modality=str(first.Modality),
                  metadata={"source_path": str(Path(paths[0]).parent), "source_files": files,
                            "sop_instance_uids": [str(ds.SOPInstanceUID) for ds in datasets],
                            "series_instance_uid": str(first.SeriesInstanceUID),
                            "frame_of_reference_uid": str(first.FrameOfReferenceUID),
                            "patient_name": str(first.PatientName), "patient_id": str(first.PatientID),
                            "patient_birth_date": str(first.get("PatientBirthDate", ""))})


def shared_data_or_skip() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA.resolve()


def all_output_bytes(root: Path) -> dict[Path, bytes]:
    """Every written file's bytes, gzip members decompressed so their content is scanned too."""
    import gzip

    out = {}
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = data + gzip.decompress(data)
        out[path] = data + str(path.relative_to(root)).encode()
    return out


def labels_for(volume: Volume) -> LabelMap:
    """Two labels with non-consecutive values (2, 5) on the first and last slices of `volume`."""
    table = LabelTable()
    table.add("liver", (200, 80, 60), label_id=2)
    table.add("lesion", (250, 250, 0), label_id=5)
    array = np.zeros(volume.shape_zyx, np.uint16)
    z, y, x = volume.shape_zyx
    array[0, y // 4: y // 2, x // 4: x // 2] = 2
    array[z - 1, 1:4, 2:6] = 5
    array[z - 1, y - 5: y - 2, x - 6: x - 2] = 2
    return LabelMap(volume.shape_zyx, table, array=array)
