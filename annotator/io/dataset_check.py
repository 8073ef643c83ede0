"""What `validate` and the window's dataset review report for each case: pairing, readability,
grids, label values against the table, empty or missing labels, islands, holes, orientation.

Findings are problems (the dataset is wrong for training: `validate` exits 1) or warnings
(worth a look, often harmless: islands, holes, a label most other cases have).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from annotator.core.errors import AnnotatorError
from annotator.core.labels import LabelTable
from annotator.io.dataset import DatasetCase

# Finding kinds, in the order a reviewer meets them; the panel filters by these.
KINDS = {
    "pairing": "image or label missing",
    "unreadable": "file unreadable",
    "nan": "NaN or non-integer voxels",
    "grid": "label grid differs from image",
    "empty": "label map empty",
    "unknown-values": "values not in the label table",
    "missing-label": "a label most cases have is missing",
    "islands": "islands beside the largest piece",
    "holes": "enclosed holes",
    "orientation": "orientation differs from the rest",
}
WARNING_KINDS = frozenset({"missing-label", "islands", "holes"})


@dataclass(frozen=True)
class Finding:
    kind: str
    text: str
    label_id: int | None = None

    @property
    def is_problem(self) -> bool:
        return self.kind not in WARNING_KINDS


@dataclass
class CaseReport:
    case_id: str
    image: str | None
    label: str | None
    orientation: str = ""
    label_values: list[int] = field(default_factory=list)
    label_volumes_ml: dict[int, float] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [f.text for f in self.findings if f.is_problem]

    @property
    def warnings(self) -> list[str]:
        return [f.text for f in self.findings if not f.is_problem]

    def kinds(self) -> set[str]:
        return {f.kind for f in self.findings}

    def to_json(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "image": self.image, "label": self.label, "orientation": self.orientation,
                "label_values": self.label_values,
                "label_volumes_ml": {str(k): round(v, 3) for k, v in self.label_volumes_ml.items()},
                "problems": self.problems, "warnings": self.warnings,
                "findings": [{"kind": f.kind, "text": f.text, "label_id": f.label_id} for f in self.findings]}


def _name(table: LabelTable | None, label_id: int) -> str:
    return table[label_id].name if table is not None and label_id in table else f"label {label_id}"


def check_case(case: DatasetCase, table: LabelTable | None) -> CaseReport:
    """Read one case and list its findings (runs in a worker process or thread)."""
    from annotator.core.volume import grid_differences
    from annotator.io import load_volume
    from annotator.io.series import axis_codes_ras
    from annotator.postprocess.findings import label_stats

    report = CaseReport(case.case_id, case.image, case.label)
    add = report.findings.append
    if case.image is None:
        add(Finding("pairing", "label without an image"))
    if case.label is None:
        add(Finding("pairing", "image without a label"))
    image = labels = None
    for kind, path in (("image", case.image), ("label", case.label)):
        if path is None:
            continue
        if not Path(path).exists():
            add(Finding("pairing", f"{kind} file missing: {path}"))
            continue
        try:
            volume = load_volume(path)
        except AnnotatorError as exc:
            add(Finding("unreadable", f"{kind} unreadable: {exc}"))
            continue
        if kind == "image":
            image = volume
        else:
            labels = volume
    if image is not None:
        # axis codes (e.g. 'LPS', 'RAS') as nibabel names them: training code that does not
        # reorient sees differently stored cases as mirrored or rotated.
        report.orientation = axis_codes_ras(image.affine_ras())
        if image.array.dtype.kind == "f" and np.isnan(image.array).any():
            add(Finding("nan", f"image has {int(np.isnan(image.array).sum())} NaN voxels"))
    if labels is None:
        return report
    values = labels.array
    if values.dtype.kind == "f":
        if np.isnan(values).any():
            add(Finding("nan", "label map has NaN voxels"))
        if np.any(np.isfinite(values) & (values != np.round(values))):
            add(Finding("nan", "label map has non-integer values"))
        values = np.where(np.isfinite(values), np.round(values), 0).astype(np.int64)
    present = [int(v) for v in np.unique(values)]
    report.label_values = [v for v in present if v != 0]
    if not report.label_values:
        add(Finding("empty", "label map is empty (background only)"))
    if table is not None:
        unknown = sorted(set(present) - set(table.ids()) - {0})
        if unknown:
            add(Finding("unknown-values", f"label values {unknown} are not in the label table"))
    if image is not None:
        diffs = grid_differences(image, labels)
        if diffs:
            add(Finding("grid", "label grid differs from image: " + "; ".join(diffs)))
    if report.label_values and values.min() >= 0:
        for stats in label_stats(values, labels.spacing_zyx_mm):
            report.label_volumes_ml[stats.label_id] = stats.volume_ml
            name = _name(table, stats.label_id)
            if stats.islands:
                add(Finding("islands", f"{name}: {stats.islands} island(s) beside the largest piece, "
                                       f"{stats.island_voxels} voxels", stats.label_id))
            if stats.holes:
                add(Finding("holes", f"{name}: {stats.holes} enclosed hole(s), {stats.hole_voxels} voxels",
                            stats.label_id))
    return report


def dataset_findings(reports: list[CaseReport], table: LabelTable | None) -> None:
    """Findings that need the whole dataset: an orientation differing from the most common one,
    and a label that more than half of the other labelled cases have but this one lacks."""
    counts = Counter(r.orientation for r in reports if r.orientation)
    if len(counts) > 1:
        usual, _ = counts.most_common(1)[0]
        for r in reports:
            if r.orientation and r.orientation != usual:
                r.findings.append(Finding("orientation", f"orientation {r.orientation} differs from the "
                                                         f"dataset's usual {usual}"))
    labelled = [r for r in reports if r.label_values]
    if len(labelled) < 3:
        return  # with two cases, "most of the others" is one case: no basis for a finding
    having = Counter(v for r in labelled for v in set(r.label_values))
    for r in labelled:
        others = len(labelled) - 1
        for label_id, n in sorted(having.items()):
            if label_id not in r.label_values and n > others / 2:
                r.findings.append(Finding("missing-label", f"{_name(table, label_id)} missing "
                                                           f"(present in {n} of {others} other cases)", label_id))
