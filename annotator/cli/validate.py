"""`annotator validate DATASET_DIR`: check a segmentation dataset before training on it.

Understands nnU-Net raw datasets (dataset.json + imagesTr/labelsTr), Decathlon and MONAI datalists,
a CSV of image,labels pairs and plain folder pairs (images/ + labels/, or imagesTr/ + labelsTr/).
Problems: image/label pairing, unreadable files, grid mismatch, label values not in the table,
empty labels, NaNs, orientation differing from the rest. Warnings: islands, enclosed holes, a
label most other cases have. With --session, each case's review status is shown and
--status keeps only cases with that status (e.g. reviewed cases before export).

Exit codes: 0 no problems (warnings allowed unless --strict); 1 problems found (listed);
2 the folder cannot be read as a dataset.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from annotator.core.errors import InputError
from annotator.core.review_session import STATUSES
from annotator.io.dataset import Dataset, DatasetCase, open_dataset
from annotator.io.dataset_check import CaseReport, Finding, check_case, dataset_findings


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate", help="check a dataset folder (pairing, grids, label values, empty labels, islands, holes, NaNs, "
                         "orientation)",
        description=__doc__.split("\n\n")[0], epilog="exit codes: 0 no problems, 1 problems found, 2 unreadable input",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", metavar="DATASET", help="dataset folder, or its dataset.json / datalist / CSV")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--strict", action="store_true", help="warnings (islands, holes, missing labels) fail too")
    parser.add_argument("--session", metavar="FILE", help="review session file (default: the one beside the dataset)")
    parser.add_argument("--status", action="append", choices=STATUSES,
                        help="only cases with this review status (repeatable)")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def _check(args: tuple[DatasetCase, Any]) -> CaseReport:
    case, table = args
    return check_case(case, table)


def check_dataset(dataset: Dataset, *, workers: int = 1, progress: bool = False) -> list[CaseReport]:
    """Every case's report, with the findings that need the whole dataset."""
    from annotator.export.batch import run_cases

    summary = run_cases(_check, [(c, dataset.table) for c in dataset.cases], dataset.case_ids,
                        workers=workers, progress=progress, description="validate")
    reports = []
    for case, outcome in zip(dataset.cases, summary.outcomes, strict=True):
        if outcome.ok:
            reports.append(outcome.value)
        else:
            reports.append(CaseReport(case.case_id, case.image, case.label,
                                      findings=[Finding("unreadable", f"check failed: {outcome.error}")]))
    dataset_findings(reports, dataset.table)
    return reports


def review_statuses(dataset: Dataset, session_file: str | None) -> dict[str, str] | None:
    from annotator.core.review_session import load_session, session_path

    path = Path(session_file) if session_file else session_path(dataset.root)
    if not path.exists():
        if session_file:
            raise InputError(path, "does not exist")
        return None
    session = load_session(path, dataset.case_ids)
    return {c: session.state(c).status for c in dataset.case_ids}


def run(args: argparse.Namespace) -> int:
    dataset = open_dataset(args.dataset)
    if not dataset.cases:
        raise InputError(dataset.root, f"{dataset.layout} dataset without any cases")
    statuses = review_statuses(dataset, args.session)
    if args.status:
        if statuses is None:
            raise InputError(dataset.root, "--status needs a review session (none beside the dataset; give --session)")
        dataset.cases = [c for c in dataset.cases if statuses[c.case_id] in args.status]
    reports = check_dataset(dataset, workers=args.workers, progress=not args.no_progress) if dataset.cases else []
    n_problems = sum(len(r.problems) for r in reports) + len(dataset.notes)
    n_warnings = sum(len(r.warnings) for r in reports)
    if args.json:
        table = dataset.table
        out = {"dataset": str(dataset.root), "layout": dataset.layout, "cases": len(reports), "problems": n_problems,
               "warnings": n_warnings, "dataset_problems": dataset.notes,
               "label_table": {str(lab.id): lab.name for lab in table} if table is not None else {},
               "reports": [dict(r.to_json(), **({"review_status": statuses[r.case_id]} if statuses else {}))
                           for r in reports]}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        sys.stdout.write(render_table(dataset, reports, statuses))
        for problem in dataset.notes:
            sys.stdout.write(f"dataset: {problem}\n")
    return 1 if n_problems or (args.strict and n_warnings) else 0


def render_table(dataset: Dataset, reports: list[CaseReport], statuses: dict[str, str] | None = None) -> str:
    width = max([len("case")] + [len(r.case_id) for r in reports])
    review = f"{'review':<9}  " if statuses else ""
    lines = [f"{dataset.root} ({dataset.layout}, {len(reports)} cases)",
             f"{'case':<{width}}  {review}{'orientation':<11}  labels  findings"]
    for r in reports:
        status = "; ".join(r.problems + [f"warning: {w}" for w in r.warnings]) or "ok"
        state = f"{statuses[r.case_id]:<9}  " if statuses else ""
        lines.append(f"{r.case_id:<{width}}  {state}{r.orientation or '-':<11}  {len(r.label_values):>6}  {status}")
    bad = sum(1 for r in reports if r.problems)
    warned = sum(1 for r in reports if r.warnings and not r.problems)
    tail = f"{bad} of {len(reports)} cases with problems" if bad else "no problems found"
    lines.append(tail + (f"; {warned} more with warnings only" if warned else ""))
    return "\n".join(lines) + "\n"
