"""`annotator clean LABELS... -o OUT/`: cleaned copies of label maps (never in place).

Steps, in the order they run (the plugin registry's clean-up steps; the builtins: --fill-holes,
--min-size islands below this volume e.g. 50mm3, --largest piece of each label, --smooth Gaussian
e.g. 1mm; `annotator clean --help` lists any a plugin adds). Sizes are physical, so they mean the
same on any voxel spacing. --dry-run writes nothing and prints, per file and label,
the voxels that would be added and removed.

Exit codes: 0 all files cleaned (or checked); 1 some files failed (the others are written);
2 bad input or usage; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from annotator.core.errors import InputError
from annotator.postprocess.cleanup import CleanupOptions

_AXES = {"z": 0, "y": 1, "x": 2, "0": 0, "1": 1, "2": 2}


@dataclass(frozen=True)
class CleanJob:
    source: str
    target: str
    options: CleanupOptions
    dry_run: bool
    overwrite: bool


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "clean", help="fill holes, remove small islands, keep the largest part, smooth (copies, never in place)",
        description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1],
        epilog="exit codes: 0 done, 1 some files failed, 2 bad input or usage, 130 interrupted",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("labels", nargs="+", metavar="LABELS", help="label map files (NIfTI, NRRD, MHA)")
    parser.add_argument("-o", "--output", help="output folder (required unless --dry-run)")
    from annotator.plugin_host.manager import get_registry
    from annotator.postprocess.operations import cleanup_operations

    steps = parser.add_argument_group("clean-up steps (run in this order)")
    for op in cleanup_operations(get_registry().resolved("postprocessors")):
        dest = "step_" + op.id.replace("-", "_")
        if op.unit is None:
            steps.add_argument(op.flag, dest=dest, action="store_true", help=op.help)
        else:
            steps.add_argument(op.flag, dest=dest, metavar=op.unit.upper(), help=op.help)
    parser.add_argument("--per-slice", metavar="AXIS", choices=sorted(_AXES),
                        help="work slice by slice along array axis z, y or x instead of in 3-D")
    parser.add_argument("--dry-run", action="store_true", help="write nothing; print per-label changes")
    parser.add_argument("--json", action="store_true", help="print the changes as JSON")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--workers", type=int, help="local worker processes (default: one per CPU)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def parse_quantity(text: str | None, unit: str, option: str) -> float:
    """'50mm3' / '50' -> 50.0 for unit 'mm3'; '1mm' -> 1.0 for unit 'mm'."""
    if text is None:
        return 0.0
    m = re.fullmatch(rf"\s*([0-9]*\.?[0-9]+(?:e[-+]?\d+)?)\s*(?:{unit})?\s*", text, flags=re.IGNORECASE)
    if not m:
        raise InputError(None, f"{option} {text!r}: expected a number in {unit}, e.g. 50{unit}")
    return float(m.group(1))


def clean_file(job: CleanJob) -> dict:
    """Clean one label file; returns {"file", "output", "labels": [per-label changes]}."""
    from annotator.io import load_volume, write_volume
    from annotator.postprocess.cleanup import clean_label_map

    volume = load_volume(job.source)
    array = volume.array
    if array.dtype.kind == "f":
        # Label maps are sometimes stored as floats; whole numbers are fine, anything else is not labels.
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)) or array.min() < 0:
            raise InputError(job.source, f"not a label map (non-integer {array.dtype} values)")
        array = array.astype(np.uint16)
    elif array.dtype.kind not in "iu":
        raise InputError(job.source, f"not a label map (voxel type {array.dtype})")
    from annotator.plugin_host.manager import get_registry
    from annotator.postprocess.operations import cleanup_operations

    operations = cleanup_operations(get_registry().resolved("postprocessors"))  # per worker process
    cleaned, changes = clean_label_map(array, volume.spacing_zyx_mm, job.options, operations=operations)
    if not job.dry_run:
        write_volume(volume.with_array(cleaned.astype(volume.array.dtype)), job.target, overwrite=job.overwrite)
    return {"file": job.source, "output": None if job.dry_run else job.target,
            "labels": [asdict(c) for c in changes]}


def run(args: argparse.Namespace) -> int:
    from annotator.export.batch import run_cases
    from annotator.plugin_host.manager import get_registry
    from annotator.postprocess.operations import cleanup_operations

    operations = cleanup_operations(get_registry().resolved("postprocessors"))
    chosen: list[tuple[str, float]] = []
    for op in operations:
        given = getattr(args, "step_" + op.id.replace("-", "_"), None)
        value = (1.0 if given else 0.0) if op.unit is None else parse_quantity(given, op.unit, op.flag)
        if value > 0:
            chosen.append((op.id, value))
    options = CleanupOptions(steps=tuple(chosen),
                             per_slice_axis=None if args.per_slice is None else _AXES[args.per_slice])
    if options.is_noop():
        raise InputError(None, "nothing to do: give " + ", ".join(op.flag for op in operations))
    if not args.dry_run and not args.output:
        raise InputError(None, "give -o OUTPUT_FOLDER (clean never changes files in place) or --dry-run")
    out_dir = Path(args.output) if args.output else None
    jobs = []
    for name in args.labels:
        source = Path(name)
        if not source.is_file():
            raise InputError(source, "does not exist or is not a file")
        target = (out_dir / source.name) if out_dir else source
        if out_dir is not None:
            if target.resolve() == source.resolve():
                raise InputError(source, "output would replace the input; choose another -o folder")
            if target.exists() and not args.overwrite and not args.dry_run:
                raise InputError(target, "already exists (use --overwrite to replace it)")
        jobs.append(CleanJob(str(source), str(target), options, args.dry_run, args.overwrite))
    names = [Path(j.source).name for j in jobs]
    if len(set(names)) != len(names) and out_dir is not None:
        raise InputError(out_dir, "several inputs have the same file name; they would overwrite each other")
    summary = run_cases(clean_file, jobs, names, workers=args.workers, progress=not args.no_progress,
                        description="clean")
    results = [o.value for o in summary.succeeded]
    if args.json:
        sys.stdout.write(json.dumps({"dry_run": args.dry_run, "files": results,
                                     "failed": [{"file": o.name, "error": o.error} for o in summary.failed]},
                                    indent=2) + "\n")
    else:
        sys.stdout.write(render_changes(results, args.dry_run))
        sys.stdout.write(summary.text("files cleaned" if not args.dry_run else "files checked") + "\n")
    return 1 if summary.failed else 0


def render_changes(results: list[dict], dry_run: bool) -> str:
    lines = [f"{'file':<30} {'label':>6} {'before':>9} {'added':>8} {'removed':>8} {'after':>9}"]
    for result in results:
        name = Path(result["file"]).name
        for c in result["labels"]:
            lines.append(f"{name:<30} {c['label_id']:>6} {c['before']:>9} {c['added']:>8} {c['removed']:>8} {c['after']:>9}")
        if not result["labels"]:
            lines.append(f"{name:<30} {'-':>6}  (no labels)")
    if dry_run:
        lines.append("dry run: nothing written")
    return "\n".join(lines) + "\n"
