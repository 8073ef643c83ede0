"""MONAI datalist: images and labels as NIfTI plus a decathlon-style datalist.json MONAI loads as is.

datalist.json lists {"image", "label"} pairs under "training" with paths relative to the
file (MONAI's load_decathlon_datalist resolves them against base_dir); adding cases to an
existing datalist keeps its entries.
"""

from __future__ import annotations

import json
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
        """Write datalist.json, keeping the entries of an existing one (adding cases is no overwrite)."""
        path = Path(out_dir) / DATALIST_FILE
        data: dict[str, Any] = {}
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise InputError(path, f"cannot read the existing datalist ({exc})") from exc
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
        return [write_json(path, data, overwrite=True)]
