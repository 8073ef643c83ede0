"""NIfTI writer for label maps (smallest unsigned type) and images, on exactly the source grid."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from annotator.core.atomic import atomic_path
from annotator.core.errors import InputError
from annotator.core.labels import LabelMap, LabelTable
from annotator.core.volume import Volume
from annotator.export.api import (
    BaseExporter,
    ExportResult,
    ExportSpec,
    OutputExistsError,
    check_label_meanings,
    require_label_map_on_grid,
    safe_case_id,
    smallest_unsigned_dtype,
    write_json,
)


def write_nifti(array_zyx: np.ndarray, volume: Volume, path: Path, *, overwrite: bool) -> Path:
    """Write `array_zyx` with `volume`'s geometry (RAS affine as both qform and sform), atomically.

    The affine comes straight from Volume.affine_ras(); nothing is recomputed or resampled.
    """
    import nibabel as nib

    path = Path(path)
    if not overwrite and path.exists():
        raise OutputExistsError(path)
    data = np.asarray(array_zyx)
    if data.dtype.byteorder == ">":
        data = data.astype(data.dtype.newbyteorder("="))
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    # NIfTI index order is (i, j, k) = (x, y, z); our arrays are (z, y, x).
    image = nib.Nifti1Image(np.ascontiguousarray(data.transpose(2, 1, 0)), volume.affine_ras())
    image.header.set_xyzt_units("mm")
    image.set_qform(volume.affine_ras(), code=1)
    image.set_sform(volume.affine_ras(), code=1)
    with atomic_path(path, overwrite=overwrite) as tmp:
        nib.save(image, str(tmp))
    return path


def write_label_nifti(volume: Volume, labels: LabelMap | Volume, path: Path, *, overwrite: bool,
                      id_map: dict[int, int] | None = None) -> Path:
    """Label map as NIfTI in uint8 when it fits, else uint16; `id_map` renumbers label values."""
    label_map = require_label_map_on_grid(volume, labels)
    array = label_map.array
    if id_map:
        lut = np.arange(int(array.max(initial=0)) + 1, dtype=np.uint32)
        for old, new in id_map.items():
            if old < lut.size:
                lut[old] = new
        array = lut[array]
    dtype = smallest_unsigned_dtype(int(array.max(initial=0)))
    return write_nifti(array.astype(dtype), volume, path, overwrite=overwrite)


class NiftiExporter(BaseExporter):
    """OUT/{case}_labels.nii.gz (+ OUT/labels.json naming the values)."""

    name = "nifti"

    def case_files(self, out_dir: Path, case_id: str, spec: ExportSpec) -> list[tuple[Path, str]]:
        return [(Path(out_dir), f"{case_id}_labels.nii.gz")]

    def index_files(self, out_dir: Path) -> list[Path]:
        return [Path(out_dir) / "labels.json"]

    def check_append(self, out_dir: Path, table: LabelTable) -> None:
        path = Path(out_dir) / "labels.json"
        check_label_meanings(path, {lab.id: lab.name for lab in read_labels_json(path)}, table)

    def export_case(self, volume: Volume, labels: LabelMap | Volume, out_dir: Path,
                    spec: ExportSpec) -> ExportResult:
        label_map = require_label_map_on_grid(volume, labels)
        case_id = safe_case_id(spec.case_id, volume, spec)
        path = write_label_nifti(volume, label_map, Path(out_dir) / f"{case_id}_labels.nii.gz",
                                 overwrite=spec.overwrite)
        return ExportResult(case_id, [path], records={"table": label_map.table.to_json()})

    def finalize(self, results: Sequence[ExportResult], out_dir: Path, spec: ExportSpec,
                 table: LabelTable) -> list[Path]:
        path = Path(out_dir) / "labels.json"
        if spec.append and path.exists():
            merged = read_labels_json(path)
            for lab in table:
                if lab.id not in merged:
                    merged.add(lab.name, lab.color, label_id=lab.id)
            table = merged
        return [write_json(path, table.to_json(), overwrite=spec.overwrite or spec.append)]


def read_labels_json(path: Path) -> LabelTable:
    try:
        return LabelTable.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise InputError(path, f"cannot read the existing label table ({exc})") from exc
