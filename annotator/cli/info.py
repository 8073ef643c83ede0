"""`annotator info PATH [--json]`: list the series in a file or folder from headers only (no pixels)."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info", help="list the image series in a file or folder (headers only)",
        description="List every loadable series (DICOM folder searched recursively, or a "
                    "NIfTI/NRRD/MHA file) with shape, spacing, orientation and warnings, without "
                    "decoding pixel data.")
    parser.add_argument("path", help="DICOM folder or file, NIfTI, NRRD or MHA file")
    parser.add_argument("--json", action="store_true",
                        help="print JSON: {path, series: [{uid, shape_zyx, spacing_zyx_mm, affine_ras, ...}]}")
    parser.set_defaults(func=run)


def _text(series: list, path: str) -> str:
    lines = [f"{path}: {len(series)} series"]
    for n, info in enumerate(series, start=1):
        spacing = " x ".join(f"{s:g}" for s in info.spacing_zyx_mm)
        shape = " x ".join(str(s) for s in info.shape_zyx)
        volumes = f", {info.n_volumes} volumes" if info.n_volumes > 1 else ""
        lines.append(f"[{n}] {info.uid}")
        number = f" #{info.series_number}" if info.series_number is not None else ""
        lines.append(f"    {info.modality or '?'}{number} '{info.description}'  {info.n_files} file(s)")
        lines.append(f"    shape (z,y,x) {shape}{volumes}; spacing (z,y,x) {spacing} mm; "
                     f"{info.orientation} ({info.axis_codes})")
        lines.extend(f"    warning: {w}" for w in info.warnings)
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from annotator.io import discover_series

    series = discover_series(args.path)
    if args.json:
        sys.stdout.write(json.dumps({"path": str(args.path), "series": [s.to_json() for s in series]}, indent=1) + "\n")
    else:
        sys.stdout.write(_text(series, str(args.path)))
    return 0
