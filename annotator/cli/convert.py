"""`annotator convert INPUT OUTPUT.nii.gz`: write one loaded volume with exact geometry (checkable vs dcm2niix)."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert a DICOM series / NIfTI / NRRD / MHA into NIfTI (or NRRD/MHA)",
        description="Load one volume (one series, one time point) and write it with its exact "
                    "geometry. The output type follows the suffix: .nii.gz, .nii, .nrrd, .mha.")
    parser.add_argument("input", help="DICOM folder or file, NIfTI, NRRD or MHA file")
    parser.add_argument("output", help="output file (.nii.gz, .nii, .nrrd, .mha)")
    parser.add_argument("--series", metavar="UID", help="series to convert when INPUT holds several "
                        "(a uid from `annotator info`)")
    parser.add_argument("--volume", type=int, default=0, metavar="N",
                        help="time point / volume of 4-D data (default 0, the first)")
    parser.add_argument("--resample", action="store_true",
                        help="resample gantry-tilted or unevenly spaced DICOM slices onto a regular "
                             "grid instead of refusing them")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--keep-phi", action="store_true",
                        help="copy the source's free-text series description into the NIfTI header "
                             "(default: left out, it may name the patient)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from annotator.core.errors import InputError
    from annotator.io import load_volume, write_volume
    from annotator.io.nifti import WRITE_SUFFIXES, has_suffix

    if not has_suffix(args.output, WRITE_SUFFIXES):
        raise InputError(args.output, f"unsupported output type; use one of {', '.join(WRITE_SUFFIXES)}")
    volume = load_volume(args.input, series_uid=args.series, volume_index=args.volume,
                         regularize=args.resample)
    write_volume(volume, args.output, overwrite=args.overwrite, keep_description=args.keep_phi)
    shape = " x ".join(str(s) for s in volume.shape_zyx)
    spacing = " x ".join(f"{s:g}" for s in volume.spacing_zyx_mm)
    sys.stdout.write(f"wrote {args.output}: shape (z,y,x) {shape}, spacing {spacing} mm, "
                     f"{volume.array.dtype}\n")
    for warning in volume.metadata.get("warnings", []):
        sys.stdout.write(f"warning: {warning}\n")
    return 0
