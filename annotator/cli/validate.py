"""`annotator validate DATASET_DIR`: check a segmentation dataset before training on it.

Understands nnU-Net raw datasets (dataset.json + imagesTr/labelsTr), MONAI datalists
(datalist.json) and plain image/label folder pairs (images/ + labels/, or imagesTr/ + labelsTr/).
Checks image/label pairing, grid equality, label values against the label table, empty labels,
NaNs and orientation consistency across cases.

Exit codes: 0 no problems; 1 problems found (listed); 2 the folder cannot be read as a dataset.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from annotator.core.errors import AnnotatorError, InputError

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


@dataclass
class CasePair:
    case_id: str
    image: str | None
    label: str | None


@dataclass
class CaseReport:
    case_id: str
    image: str | None
    label: str | None
    orientation: str = ""
    label_values: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate", help="check a dataset folder (pairing, grids, label values, empty labels, NaNs, orientation)",
        description=__doc__.split("\n\n")[0], epilog="exit codes: 0 no problems, 1 problems found, 2 unreadable input",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", metavar="DATASET_DIR")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def _strip_suffix(name: str) -> str | None:
    low = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if low.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _files(folder: Path) -> dict[str, Path]:
    out = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            stem = _strip_suffix(path.name)
            if stem is not None and not path.name.startswith("."):
                out[stem] = path
    return out


def discover_dataset(root: Path) -> tuple[str, list[CasePair], dict[int, str] | None]:
    """(layout name, image/label pairs, label table {value: name} or None when unknown)."""
    if not root.is_dir():
        raise InputError(root, "is not a folder")
    dataset_json = root / "dataset.json"
    if dataset_json.exists():
        data = _read_json(dataset_json)
        images = _files(root / "imagesTr")
        labels = _files(root / "labelsTr")
        by_case: dict[str, list[Path]] = {}
        for stem, path in images.items():
            m = re.match(r"^(.*)_(\d{4})$", stem)
            by_case.setdefault(m.group(1) if m else stem, []).append(path)
        ids = sorted(set(by_case) | set(labels))
        pairs = [CasePair(c, str(sorted(by_case[c])[0]) if c in by_case else None,
                          str(labels[c]) if c in labels else None) for c in ids]
        table = {int(v): str(k) for k, v in data.get("labels", {}).items() if isinstance(v, int | float)}
        return "nnunet", pairs, table or None
    datalist = root / "datalist.json"
    if datalist.exists():
        data = _read_json(datalist)
        pairs = []
        for i, entry in enumerate(data.get("training", [])):
            image = str(root / entry["image"]) if entry.get("image") else None
            label = str(root / entry["label"]) if entry.get("label") else None
            pairs.append(CasePair(_strip_suffix(Path(image or label or f"case{i}").name) or f"case{i}", image, label))
        table = {int(k): str(v) for k, v in data.get("labels", {}).items() if str(k).isdigit()}
        return "monai-datalist", pairs, table or None
    for image_dir, label_dir in (("images", "labels"), ("imagesTr", "labelsTr")):
        if (root / image_dir).is_dir() and (root / label_dir).is_dir():
            images, labels = _files(root / image_dir), _files(root / label_dir)
            ids = sorted(set(images) | set(labels))
            pairs = [CasePair(c, str(images[c]) if c in images else None,
                              str(labels[c]) if c in labels else None) for c in ids]
            names: dict[int, str] | None = None
            if (root / "labels.json").exists():
                raw = _read_json(root / "labels.json")
                raw = raw.get("labels", raw) if isinstance(raw, dict) else raw
                from annotator.core.labels import LabelTable

                names = {lab.id: lab.name for lab in LabelTable.from_json(raw)} or None
            return "folders", pairs, names
    raise InputError(root, "not a dataset: expected dataset.json (nnU-Net), datalist.json (MONAI) "
                           "or images/ + labels/ folders")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read JSON ({exc})") from exc


def check_case(args: tuple[CasePair, dict[int, str] | None]) -> CaseReport:
    """Read one pair and list its problems (runs in a worker)."""
    from annotator.core.volume import grid_differences
    from annotator.io import load_volume
    from annotator.io.series import axis_codes_ras

    pair, table = args
    report = CaseReport(pair.case_id, pair.image, pair.label)
    if pair.image is None:
        report.problems.append("label without an image")
    if pair.label is None:
        report.problems.append("image without a label")
    image = labels = None
    for kind, path in (("image", pair.image), ("label", pair.label)):
        if path is None:
            continue
        if not Path(path).exists():
            report.problems.append(f"{kind} file missing: {path}")
            continue
        try:
            volume = load_volume(path)
        except AnnotatorError as exc:
            report.problems.append(f"{kind} unreadable: {exc}")
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
            report.problems.append(f"image has {int(np.isnan(image.array).sum())} NaN voxels")
    if labels is not None:
        values = labels.array
        if values.dtype.kind == "f":
            if np.isnan(values).any():
                report.problems.append("label map has NaN voxels")
            if np.any(np.isfinite(values) & (values != np.round(values))):
                report.problems.append("label map has non-integer values")
        present = [int(v) for v in np.unique(values[np.isfinite(values)] if values.dtype.kind == "f" else values)]
        report.label_values = [v for v in present if v != 0]
        if not report.label_values:
            report.problems.append("label map is empty (background only)")
        if table is not None:
            unknown = sorted(set(present) - set(table) - {0})
            if unknown:
                report.problems.append(f"label values {unknown} are not in the label table")
        if image is not None:
            diffs = grid_differences(image, labels)
            if diffs:
                report.problems.append("label grid differs from image: " + "; ".join(diffs))
    return report


def orientation_problems(reports: list[CaseReport]) -> None:
    """Flag cases whose orientation differs from the most common one in the dataset."""
    counts = Counter(r.orientation for r in reports if r.orientation)
    if len(counts) <= 1:
        return
    usual, _ = counts.most_common(1)[0]
    for r in reports:
        if r.orientation and r.orientation != usual:
            r.problems.append(f"orientation {r.orientation} differs from the dataset's usual {usual}")


def run(args: argparse.Namespace) -> int:
    from annotator.export.batch import run_cases

    root = Path(args.dataset)
    layout, pairs, table = discover_dataset(root)
    if not pairs:
        raise InputError(root, f"{layout} dataset without any cases")
    summary = run_cases(check_case, [(p, table) for p in pairs], [p.case_id for p in pairs],
                        workers=args.workers, progress=not args.no_progress, description="validate")
    reports = []
    for pair, outcome in zip(pairs, summary.outcomes, strict=True):
        if outcome.ok:
            reports.append(outcome.value)
        else:
            reports.append(CaseReport(pair.case_id, pair.image, pair.label, problems=[f"check failed: {outcome.error}"]))
    orientation_problems(reports)
    dataset_problems = []
    if layout == "nnunet" and table is not None:
        values = sorted(table)
        if values != list(range(len(values))):
            dataset_problems.append(f"dataset.json labels must be consecutive 0..N for nnU-Net, got {values}")
    n_problems = sum(len(r.problems) for r in reports) + len(dataset_problems)
    if args.json:
        out = {"dataset": str(root), "layout": layout, "cases": len(reports), "problems": n_problems,
               "dataset_problems": dataset_problems,
               "label_table": {str(k): v for k, v in sorted((table or {}).items())},
               "reports": [asdict(r) for r in reports]}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        sys.stdout.write(render_table(root, layout, reports))
        for problem in dataset_problems:
            sys.stdout.write(f"dataset: {problem}\n")
    return 1 if n_problems else 0


def render_table(root: Path, layout: str, reports: list[CaseReport]) -> str:
    width = max([len("case")] + [len(r.case_id) for r in reports])
    lines = [f"{root} ({layout}, {len(reports)} cases)", f"{'case':<{width}}  {'orientation':<11}  labels  status"]
    for r in reports:
        status = "ok" if not r.problems else "; ".join(r.problems)
        lines.append(f"{r.case_id:<{width}}  {r.orientation or '-':<11}  {len(r.label_values):>6}  {status}")
    bad = sum(1 for r in reports if r.problems)
    lines.append(f"{bad} of {len(reports)} cases with problems" if bad else "no problems found")
    return "\n".join(lines) + "\n"
