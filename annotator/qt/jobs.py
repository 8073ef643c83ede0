"""The window's background jobs: plain functions over values (no Qt, no widgets), run by
qt.background.BackgroundRunner off the GUI thread, results handed back to GUI slots."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from annotator.core.autosave import AutosaveSlot
from annotator.core.geometry import Window, slice_2d
from annotator.core.labels import LabelMap
from annotator.core.volume import Volume
from annotator.io.series import SeriesInfo

if TYPE_CHECKING:
    from annotator.core.labels import LabelTable
    from annotator.io.dataset import DatasetCase
    from annotator.io.dataset_check import CaseReport
    from annotator.io.dataset_save import DatasetSaver


def load_image_job(path: str, series_uid: str | None) -> Volume:
    from annotator.io import load_volume

    volume = load_volume(path, series_uid=series_uid)
    _ = volume.content_id  # hash the voxels here, not later on the GUI thread (embedding cache key)
    return volume


def demo_job() -> Volume:
    from annotator.core.phantom import demo_volume

    volume = demo_volume()
    _ = volume.content_id
    return volume


def discover_job(path: str) -> list:
    from annotator.io import discover_series

    return discover_series(path)


def series_thumbnail(series: SeriesInfo) -> np.ndarray:
    """Middle axial-array slice of a series (loads it; runs in the dialog's worker thread)."""
    volume = load_image_job(series.source_path, series.uid)
    return slice_2d(volume.array, 0, volume.shape_zyx[0] // 2)


def read_labels_job(volume: Volume, path: str) -> LabelMap:
    from annotator.io import read_labels_onto

    return read_labels_onto(volume, path)


def autosave_job(slot: AutosaveSlot, sequence: int, volume: Volume, label_array: np.ndarray,
                 table_json: list) -> float:
    """Write the crash-recovery copy of label snapshot `sequence` into this window's slot; returns
    when it was saved (a snapshot older than one already saved is dropped)."""
    slot.save(sequence, str(volume.metadata.get("source_path") or ""), label_array, table_json)
    return time.time()


def label_table_path(nifti_path: str | Path) -> Path:
    """The '<name>.json' naming the values, beside a label NIfTI."""
    path = Path(nifti_path)
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.with_name(f"{name}.json")


def export_labels_job(volume: Volume, labels: LabelMap, path: str, *, overwrite: bool = False) -> str:
    """Label map as NIfTI on the source grid, plus '<name>.json' naming the values (atomic writes).

    Both files are checked before either is written: without `overwrite` an existing one is
    refused (OutputExistsError naming it) and nothing changes."""
    import json

    from annotator.core.atomic import atomic_write_text
    from annotator.export.api import refuse_existing_files
    from annotator.export.nifti import write_label_nifti

    table_path = label_table_path(path)
    refuse_existing_files([Path(path), table_path], overwrite=overwrite)
    out = write_label_nifti(volume, labels, Path(path), overwrite=overwrite)
    atomic_write_text(table_path, json.dumps(labels.table.to_json(), indent=2), overwrite=overwrite)
    return str(out)




def export_dataset_job(fmt: str, volume: Volume, labels: LabelMap, out_dir: str, case_id: str,
                       window: Window | None, plane: str) -> list[str]:
    """One case in one dataset format through annotator.export (never overwrites)."""
    from annotator.export.api import ExportSpec, export_volume

    spec = ExportSpec(case_id=case_id, window=window, plane=plane)
    result = export_volume(fmt, volume, labels, out_dir, spec)
    return [str(p) for p in result.files]


def load_case_job(case: DatasetCase, table: LabelTable | None) -> tuple[Volume, LabelMap, str]:
    """(image, its labels, a note for the user) of one dataset case. Labels that cannot be read onto
    the image come back empty with the reason in the note, so the case can still be reviewed; the
    dataset's own label names win over a sidecar's."""
    from annotator.core.errors import AnnotatorError
    from annotator.core.labels import LabelTable as Table
    from annotator.io import load_volume, read_labels_onto

    if case.image is None:
        raise FileNotFoundError(f"case {case.case_id} has no image")
    volume = load_volume(case.image)
    _ = volume.content_id
    note = ""
    labels = None
    if case.label is not None:
        try:
            labels = read_labels_onto(volume, case.label)
        except AnnotatorError as exc:
            note = f"labels not shown: {exc}"
    if labels is None:
        labels = LabelMap(volume.shape_zyx, Table())
    for label in table or []:
        if label.id in labels.table:
            labels.table.update(label.id, name=label.name)
        else:
            labels.table.add(label.name, label.color, label_id=label.id)
    if not len(labels.table):
        labels.table.add("label 1")
    return volume, labels, note


def check_case_job(case: DatasetCase, table: LabelTable | None) -> CaseReport:
    from annotator.io.dataset_check import check_case

    return check_case(case, table)


def save_case_job(saver: DatasetSaver, case_id: str, volume: Volume, label_array: np.ndarray) -> str:
    return str(saver.save_case(case_id, volume, label_array))
