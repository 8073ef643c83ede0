"""nnU-Net v2 raw dataset: imagesTr/{case}_0000.nii.gz, labelsTr/{case}.nii.gz and dataset.json.

Adding cases to an existing dataset keeps every existing case and label number: new cases get
the next free case numbers, labels are matched to the dataset's by name and new names are
appended after the existing ones (nnU-Net requires consecutive label values 0..N).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from annotator.core.errors import InputError
from annotator.core.labels import LabelMap, LabelTable
from annotator.core.volume import Volume
from annotator.export.api import (
    BaseExporter,
    ExportResult,
    ExportSpec,
    OutputExistsError,
    refuse_existing,
    remap_labels,
    require_label_map_on_grid,
    write_json,
)
from annotator.export.nifti import write_nifti

FILE_ENDING = ".nii.gz"
CASE_PREFIX = "case"


def read_dataset_json(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / "dataset.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read the existing nnU-Net dataset.json ({exc})") from exc


def existing_case_ids(out_dir: Path) -> list[str]:
    labels_dir = Path(out_dir) / "labelsTr"
    if not labels_dir.is_dir():
        return []
    return sorted(p.name[: -len(FILE_ENDING)] for p in labels_dir.glob(f"*{FILE_ENDING}"))


def next_case_ids(out_dir: Path, count: int, prefix: str = CASE_PREFIX) -> list[str]:
    """`count` new case identifiers numbered after the highest existing `{prefix}_NNN`."""
    pattern = re.compile(rf"^{re.escape(prefix)}_(\d+)$")
    numbers = [int(m.group(1)) for cid in existing_case_ids(out_dir) if (m := pattern.match(cid))]
    start = max(numbers, default=0) + 1
    return [f"{prefix}_{n:03d}" for n in range(start, start + count)]


def dataset_label_values(existing: dict[str, Any], table: LabelTable) -> tuple[dict[str, int], dict[int, int]]:
    """(nnU-Net labels dict name -> value, our label id -> nnU-Net value), keeping existing numbers."""
    labels = {str(k): int(v) for k, v in existing.get("labels", {"background": 0}).items()}
    labels.setdefault("background", 0)
    by_name = {name: value for name, value in labels.items()}
    id_map = {}
    for lab in table:
        if lab.name in by_name:
            id_map[lab.id] = by_name[lab.name]
            continue
        value = max(labels.values()) + 1
        name = lab.name if lab.name not in labels else f"{lab.name} ({lab.id})"
        labels[name] = value
        by_name[lab.name] = value
        id_map[lab.id] = value
    return labels, id_map


class NnUnetExporter(BaseExporter):
    """OUT is the dataset folder (e.g. nnUNet_raw/Dataset501_Liver)."""

    name = "nnunet"

    def case_files(self, out_dir: Path, case_id: str, spec: ExportSpec) -> list[tuple[Path, str]]:
        return [(Path(out_dir) / "imagesTr", f"{case_id}_0000{FILE_ENDING}"),
                (Path(out_dir) / "labelsTr", f"{case_id}{FILE_ENDING}")]

    def index_files(self, out_dir: Path) -> list[Path]:
        return [Path(out_dir) / "dataset.json"]

    def check_append(self, out_dir: Path, table: LabelTable) -> None:
        read_dataset_json(out_dir)  # labels are matched by name: an existing value never changes meaning

    def prepare(self, out_dir: Path, table: LabelTable, case_ids: Sequence[str],
                spec: ExportSpec) -> tuple[ExportSpec, list[str]]:
        path = Path(out_dir) / "dataset.json"
        if path.exists() and not spec.append:
            # its cases keep their label values, so the index cannot be started afresh in place
            raise OutputExistsError(path, "use --append to add cases to this nnU-Net dataset")
        _, id_map = dataset_label_values(read_dataset_json(out_dir), table)
        return replace(spec, label_id_map=tuple(sorted(id_map.items()))), next_case_ids(out_dir, len(case_ids))

    def export_case(self, volume: Volume, labels: LabelMap | Volume, out_dir: Path,
                    spec: ExportSpec) -> ExportResult:
        label_map = require_label_map_on_grid(volume, labels)
        out_dir = Path(out_dir)
        case_id = spec.case_id
        image_path = out_dir / "imagesTr" / f"{case_id}_0000{FILE_ENDING}"
        label_path = out_dir / "labelsTr" / f"{case_id}{FILE_ENDING}"
        refuse_existing([image_path, label_path], spec)
        id_map = dict(spec.label_id_map)
        unmapped = sorted(set(label_map.present_ids()) - set(id_map))
        if unmapped:
            raise InputError(None, f"case {case_id}: label values {unmapped} are not in the label table")
        write_nifti(volume.array, volume, image_path, overwrite=spec.overwrite)
        array = remap_labels(label_map.array, id_map)
        dtype = "uint8" if int(array.max(initial=0)) <= 255 else "uint16"
        write_nifti(array.astype(dtype), volume, label_path, overwrite=spec.overwrite)
        # nnU-Net normalises a channel named "CT" with CT statistics; a NIfTI carries no modality,
        # so recognise CT the way core.geometry.default_window does (air below -500).
        modality = volume.modality or ("CT" if volume.array.size and float(volume.array.min()) <= -500 else "")
        return ExportResult(case_id, [image_path, label_path],
                            records={"modality": modality, "table": label_map.table.to_json()})

    def finalize(self, results: Sequence[ExportResult], out_dir: Path, spec: ExportSpec,
                 table: LabelTable) -> list[Path]:
        """Write (or extend) dataset.json; updating it is what adding cases means, so no --overwrite needed."""
        out_dir = Path(out_dir)
        existing = read_dataset_json(out_dir)
        labels, _ = dataset_label_values(existing, table)
        modality = next((r.records.get("modality") for r in results if r.records.get("modality")), "")
        channel = "CT" if (modality or "").upper() == "CT" else (modality or "image")
        data = dict(existing)
        data.setdefault("name", out_dir.name)
        data.setdefault("description", "exported by annotator")
        data.setdefault("channel_names", {"0": channel})
        data["labels"] = dict(sorted(labels.items(), key=lambda item: item[1]))
        data["numTraining"] = len(existing_case_ids(out_dir))
        data["file_ending"] = FILE_ENDING
        return [write_json(out_dir / "dataset.json", data, overwrite=True)]
