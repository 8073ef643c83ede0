"""`annotator export`: image + label map(s) -> a training-ready dataset in one of six formats.

Exit codes: 0 every case exported; 1 some cases failed (the others are written, the summary
names the failures); 2 bad input or usage, nothing written (one line naming the file and the
problem); 130 interrupted.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from annotator.cli.options import parse_window_option, read_label_names
from annotator.core.errors import InputError
from annotator.core.geometry import CT_PRESETS
from annotator.core.labels import LabelMap, LabelTable
from annotator.core.review_session import STATUSES
from annotator.export.api import (
    ExportResult,
    ExportSpec,
    check_targets,
    export_formats,
    export_volume,
    get_exporter,
)

EXIT_CODES = """exit codes:
  0    every case exported
  1    some cases failed; the others were written (see the summary)
  2    bad input or usage; nothing was written
  130  interrupted"""


@dataclass(frozen=True)
class ExportJob:
    """Everything one worker needs for one case (plain data: it travels to other processes)."""

    image: str
    labels: str
    case_id: str
    format: str
    out_dir: str
    spec: ExportSpec
    table_json: tuple = ()
    series_uid: str | None = None


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export", help="export image + labels to NIfTI, COCO, nnU-Net, DICOM SEG, MONAI datalist or YOLO",
        description=__doc__.splitlines()[0], epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    src = parser.add_argument_group("input (one case, or many with --pairs)")
    src.add_argument("--image", help="image file or DICOM series folder")
    src.add_argument("--labels", help="label map file on the image's grid")
    src.add_argument("--pairs", help="CSV with columns image,labels[,case_id] (paths relative to the CSV)")
    src.add_argument("--status", action="append", choices=STATUSES,
                     help="with --pairs: only cases with this status in the review session (repeatable)")
    src.add_argument("--review-session", metavar="FILE",
                     help="the review session for --status (default: annotator-review.json beside the CSV)")
    src.add_argument("--series-uid", help="which DICOM series when the folder holds several")
    src.add_argument("--label-names", help="JSON naming the label values ({\"1\": \"liver\"} or our label table)")
    formats = export_formats()
    parser.add_argument("--format", required=True, choices=list(formats), metavar="FORMAT",
                        help="; ".join(f"{k}: {v}" for k, v in formats.items()))
    parser.add_argument("-o", "--output", required=True, help="output folder (the dataset folder for nnunet)")
    parser.add_argument("--case-id", help="case name for --image (default: case_ + a hash of the image content; "
                        "with --keep-phi, the image file name)")
    parser.add_argument("--plane", choices=("axial", "coronal", "sagittal"), default="axial",
                        help="slice plane for coco/yolo (default axial)")
    parser.add_argument("--slices", choices=("annotated", "all", "every"), default="annotated",
                        help="coco/yolo: annotated slices only, all, or every k-th (--every) plus annotated")
    parser.add_argument("--every", type=int, default=5, metavar="K", help="k for --slices every (default 5)")
    parser.add_argument("--encoding", choices=("rle", "polygon"), default="rle", help="coco mask encoding")
    parser.add_argument("--window", help="intensity window for slice images: CENTER,WIDTH or a preset "
                        f"({', '.join(CT_PRESETS)}); default soft tissue for CT, percentiles otherwise")
    parser.add_argument("--keep-phi", action="store_true",
                        help="keep the patient's name/ID/birth date in outputs (default: removed)")
    parser.add_argument("--pseudonym-key", metavar="FILE",
                        help="dicom-seg: the key (one line of hex) that makes Patient ID pseudonyms; default: "
                        "a random key per output folder, kept in the user's data folder, never in the output")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing files of the same name (cases exported again)")
    parser.add_argument("--append", action="store_true",
                        help="add these cases to the dataset already in the output folder (its dataset.json, "
                        "datalist.json, annotations.json, labels.json or data.yaml); a label value there keeps "
                        "its meaning or nothing is written")
    parser.add_argument("--workers", type=int, help="local worker processes (default: one per CPU)")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="run cases on this Dask distributed scheduler")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def default_case_id(image: str) -> str:
    name = Path(image).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_pairs(path: str, *, names_from_files: bool = False) -> list[tuple[str, str, str]]:
    """(image, labels, case id) rows; a row without case_id gets "" (named from its content when
    exported) unless names_from_files."""
    csv_path = Path(path)
    try:
        with open(csv_path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise InputError(csv_path, f"cannot read ({exc})") from exc
    if not rows or not {"image", "labels"} <= set(rows[0]):
        raise InputError(csv_path, "needs a header with columns image,labels[,case_id] and at least one row")
    pairs = []
    for n, row in enumerate(rows, start=2):
        if not row.get("image") or not row.get("labels"):
            raise InputError(csv_path, f"line {n}: image and labels are both required")
        image = str((csv_path.parent / row["image"]).resolve())
        labels = str((csv_path.parent / row["labels"]).resolve())
        fallback = default_case_id(image) if names_from_files else ""
        pairs.append((image, labels, row.get("case_id") or fallback))
    ids = [p[2] for p in pairs if p[2]]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise InputError(csv_path, f"duplicate case ids {duplicates}; add a case_id column")
    return pairs


def filter_by_review(pairs: list[tuple[str, str, str]], csv_path: str | None, session_file: str | None,
                     statuses: list[str]) -> list[tuple[str, str, str]]:
    """The rows of the --pairs CSV whose case has one of `statuses` in the review session (the
    window's dataset review writes it; its case ids are the CSV's, as io.dataset reads them)."""
    from annotator.core.review_session import load_session, session_path
    from annotator.io.dataset import open_dataset

    if not csv_path:
        raise InputError(None, "--status and --review-session need --pairs (the reviewed dataset's CSV)")
    dataset = open_dataset(csv_path)
    path = Path(session_file) if session_file else session_path(dataset.root)
    if not path.exists():
        raise InputError(path, "no review session here (review the dataset in the window first, or give "
                               "--review-session)")
    session = load_session(path, dataset.case_ids)
    kept = [p for p, case_id in zip(pairs, dataset.case_ids, strict=True) if session.state(case_id).status in statuses]
    if not kept:
        raise InputError(path, f"no case has review status {' or '.join(statuses)}")
    return kept


def load_case(job: ExportJob) -> tuple[Any, LabelMap]:
    from annotator.io import load_volume, read_labels_onto

    volume = load_volume(job.image, series_uid=job.series_uid)
    label_map = read_labels_onto(volume, job.labels)
    if job.table_json:
        label_map = LabelMap(label_map.shape_zyx, LabelTable.from_json(list(job.table_json)), array=label_map.array)
    return volume, label_map


def scan_case_labels(job: ExportJob) -> list[dict]:
    """The label table of one case (values present, names from its sidecar when it has one)."""
    _, label_map = load_case(job)
    present = set(label_map.present_ids())
    return [entry for entry in label_map.table.to_json() if entry["id"] in present] + [
        {"id": v, "name": f"label {v}"} for v in sorted(present - set(label_map.table.ids()))]


def export_one_case(job: ExportJob) -> ExportResult:
    """Load one case and write it (runs in a worker process or on a Dask worker)."""
    volume, label_map = load_case(job)
    return get_exporter(job.format).export_case(volume, label_map, Path(job.out_dir),
                                                replace(job.spec, case_id=job.case_id))


def run(args: argparse.Namespace) -> int:
    from annotator.export.batch import run_cases

    if args.pairs and (args.image or args.labels):
        raise InputError(None, "give either --pairs or --image/--labels, not both")
    if not args.pairs and not (args.image and args.labels):
        raise InputError(None, "give --image and --labels (or --pairs CSV)")
    if args.every < 1:
        raise InputError(None, f"--every must be >= 1, got {args.every}")
    spec = ExportSpec(overwrite=args.overwrite, append=args.append, keep_phi=args.keep_phi,
                      pseudonym_key_file=args.pseudonym_key, plane=args.plane,
                      slices=args.slices, every_k=args.every, window=parse_window_option(args.window),
                      coco_encoding=args.encoding)
    pairs = read_pairs(args.pairs, names_from_files=args.keep_phi) if args.pairs else [
        (args.image, args.labels, args.case_id or (default_case_id(args.image) if args.keep_phi else ""))]
    if args.status or args.review_session:
        pairs = filter_by_review(pairs, args.pairs, args.review_session, args.status or ["reviewed", "modified"])
    for image, labels, _ in pairs:
        for path in (image, labels):
            if not Path(path).exists():
                raise InputError(path, "does not exist")
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "exists and is not a folder")
    table = read_label_names(args.label_names)
    progress = not args.no_progress
    case_ids = [p[2] for p in pairs]
    names = [p[2] or Path(p[0]).name for p in pairs]  # progress lines only, never written to a file
    jobs = [ExportJob(image, labels, case_id, args.format, str(out_dir), spec,
                      tuple(table.to_json()) if table else (), args.series_uid)
            for image, labels, case_id in pairs]
    exporter = get_exporter(args.format)

    if len(jobs) == 1:
        # One case: run here so a bad input is reported as one line with exit code 2.
        volume, label_map = load_case(jobs[0])
        result = export_volume(exporter, volume, label_map, out_dir, replace(spec, case_id=case_ids[0]))
        sys.stdout.write(f"exported {result.case_id} as {args.format} to {out_dir}: {len(result.files)} files\n")
        for warning in result.warnings:
            sys.stdout.write(f"  warning: {warning}\n")
        return 0

    failed_early: list = []
    if table is None:
        # No names given: the dataset's label table is the union of the cases' tables. A case
        # that cannot be read here would fail its export too: it is reported and skipped.
        scanned = run_cases(scan_case_labels, jobs, names, workers=args.workers, scheduler=args.scheduler,
                            progress=progress, description="reading labels")
        failed_early = scanned.failed
        merged: dict[int, dict] = {}
        for outcome in scanned.succeeded:
            for entry in outcome.value:
                merged.setdefault(int(entry["id"]), entry)
        table = LabelTable.from_json([merged[k] for k in sorted(merged)])
        keep = [o.ok for o in scanned.outcomes]
        jobs = [job for job, ok in zip(jobs, keep, strict=True) if ok]
        names = [name for name, ok in zip(names, keep, strict=True) if ok]
        case_ids = [cid for cid, ok in zip(case_ids, keep, strict=True) if ok]
    spec, case_ids = exporter.prepare(out_dir, table, case_ids, spec)
    # every file the export will write is checked before the first one is
    check_targets(exporter, out_dir, case_ids, spec, table)
    jobs = [replace(job, case_id=cid, spec=spec, table_json=tuple(table.to_json()))
            for job, cid in zip(jobs, case_ids, strict=True)]
    summary = run_cases(export_one_case, jobs, names, workers=args.workers, scheduler=args.scheduler,
                        progress=progress, description=f"export {args.format}")
    summary.outcomes = failed_early + summary.outcomes
    results = [o.value for o in summary.succeeded]
    files = [f for r in results for f in r.files]
    if results:
        files += exporter.finalize(results, out_dir, spec, table)
    sys.stdout.write(summary.text("cases exported") + "\n")
    sys.stdout.write(f"format {args.format}, output {out_dir}: {len(files)} files written\n")
    for result in results:
        for warning in result.warnings:
            sys.stdout.write(f"  warning {result.case_id}: {warning}\n")
    return 1 if summary.failed else 0
