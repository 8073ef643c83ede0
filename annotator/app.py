"""Bootstrap: `annotator` dispatches batch subcommands to the Qt-free CLI, or opens the window."""

from __future__ import annotations

import argparse
import logging
import sys


def parse_gui_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="annotator", description="Open the annotation window.")
    parser.add_argument("path", nargs="?", help="image file or folder (DICOM series, NIfTI, NRRD, MHA)")
    parser.add_argument("--demo", action="store_true", help="open the bundled demo CT phantom")
    parser.add_argument("--labels", help="label map to open on top of the image")
    parser.add_argument("--engine", help="engine to use: lite-medsam (default), sam, classical")
    parser.add_argument("--checkpoint", help="SAM / MedSAM / LiteMedSAM checkpoint (.pth)")
    parser.add_argument("--runtime", help="torch, onnxruntime or openvino (default: fastest that passes its check)")
    parser.add_argument("--self-test", action="store_true",
                        help="open the demo, segment one box with the engine, print the result and exit "
                             "(0: the mask matches the phantom; checks an install or a packaged build)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def parse_review_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="annotator review",
        description="Open a dataset in the window to review and fix its cases: nnU-Net v2 (dataset.json), "
                    "Decathlon / MONAI datalists, a CSV of image,labels pairs, or images/ + labels/ folders. "
                    "Edited labels are saved in place, each original kept once in DATASET/annotator-originals/, "
                    "or with --output into a copy of the dataset. The review session "
                    "(annotator-review.json beside the dataset) resumes where you stopped.")
    parser.add_argument("review", metavar="DATASET", help="dataset folder, or its dataset.json / datalist / CSV")
    parser.add_argument("--output", help="save into a copy of the dataset here instead of in place")
    parser.add_argument("--engine", help="engine to use: lite-medsam (default), sam, classical")
    parser.add_argument("--checkpoint", help="SAM / MedSAM / LiteMedSAM checkpoint (.pth)")
    parser.add_argument("--runtime", help="torch, onnxruntime or openvino (default: fastest that passes its check)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Before any thread allocates: M_ARENA_MAX only reaches threads without an arena yet, and the
    # engine's worker thread is where the encoder's large, short-lived tensors live (measured ~2x
    # faster encoder on CPU; see annotator/engine/runtime/malloc.py). No torch is imported here.
    from annotator.engine.runtime.malloc import tune_malloc

    tune_malloc()
    from annotator import cli

    if cli.is_subcommand(argv):
        return cli.main(argv)
    args = parse_review_args(argv[1:]) if argv[:1] == ["review"] else parse_gui_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from annotator.qt.run import run_app  # Qt is imported only on this path

    return run_app(args)


if __name__ == "__main__":
    raise SystemExit(main())
