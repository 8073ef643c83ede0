"""MONAI datalist: images and labels as NIfTI plus a decathlon-style datalist.json MONAI loads as is.

datalist.json lists {"image", "label"} pairs under "training" with paths relative to the
file (MONAI's load_decathlon_datalist resolves them against base_dir); adding cases to an
existing datalist keeps its entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from annotator.core.errors import InputError
from annotator.core.labels import LabelMap, LabelTable
from annotator.core.volume import Volume
from annotator.export.api import (
    BaseExporter,
    ExportResult,
    ExportSpec,
    check_label_meanings,
    read_index_json,
    refuse_existing,
    require_label_map_on_grid,
    safe_case_id,
    write_json,
)
from annotator.export.nifti import write_label_nifti, write_nifti

DATALIST_FILE = "datalist.json"


class DatalistExporter(BaseExporter):
    """OUT/imagesTr/{case}.nii.gz, OUT/labelsTr/{case}.nii.gz, OUT/datalist.json."""

    name = "datalist"

    def case_files(self, out_dir: Path, case_id: str, spec: ExportSpec) -> list[tuple[Path, str]]:
        return [(Path(out_dir) / "imagesTr", f"{case_id}.nii.gz"), (Path(out_dir) / "labelsTr", f"{case_id}.nii.gz")]

    def index_files(self, out_dir: Path) -> list[Path]:
        return [Path(out_dir) / DATALIST_FILE]

    def check_append(self, out_dir: Path, table: LabelTable) -> None:
        path = Path(out_dir) / DATALIST_FILE
        check_label_meanings(path, existing_label_names(read_index_json(path), path), table)

    def export_case(self, volume: Volume, labels: LabelMap | Volume, out_dir: Path,
                    spec: ExportSpec) -> ExportResult:
        label_map = require_label_map_on_grid(volume, labels)
        out_dir = Path(out_dir)
        case_id = safe_case_id(spec.case_id, volume, spec)
        image_path = out_dir / "imagesTr" / f"{case_id}.nii.gz"
        label_path = out_dir / "labelsTr" / f"{case_id}.nii.gz"
        refuse_existing([image_path, label_path], spec)
        write_nifti(volume.array, volume, image_path, overwrite=spec.overwrite)
        write_label_nifti(volume, label_map, label_path, overwrite=spec.overwrite)
        entry = {"image": f"imagesTr/{image_path.name}", "label": f"labelsTr/{label_path.name}"}
        return ExportResult(case_id, [image_path, label_path],
                            records={"entry": entry, "table": label_map.table.to_json()})

    def finalize(self, results: Sequence[ExportResult], out_dir: Path, spec: ExportSpec,
                 table: LabelTable) -> list[Path]:
        """Write datalist.json; with spec.append, keep the entries and label names of the existing one."""
        path = Path(out_dir) / DATALIST_FILE
        data: dict[str, Any] = read_index_json(path) if spec.append else {}
        if data:
            check_label_meanings(path, existing_label_names(data, path), table)
        training = [e for e in data.get("training", []) if isinstance(e, dict)]
        new = [r.records["entry"] for r in results if "entry" in r.records]
        new_images = {e["image"] for e in new}
        training = [e for e in training if e.get("image") not in new_images] + new
        labels = {str(k): str(v) for k, v in data.get("labels", {"0": "background"}).items()}
        labels.update({str(lab.id): lab.name for lab in table})
        data.update({
            "name": data.get("name", Path(out_dir).name),
            "description": data.get("description", "exported by annotator"),
            "labels": dict(sorted(labels.items(), key=lambda kv: int(kv[0]))),
            "numTraining": len(training),
            "training": training,
        })
        return [write_json(path, data, overwrite=spec.overwrite or spec.append)]


def existing_label_names(data: dict[str, Any], path: Path) -> dict[int, str]:
    try:
        return {int(k): str(v) for k, v in data.get("labels", {}).items()}
    except (TypeError, ValueError, AttributeError) as exc:
        raise InputError(path, f"its labels are not a value -> name map ({exc})") from exc
