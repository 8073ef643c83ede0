"""`annotator precompute VOLUME... --checkpoint CK [--planes axial,coronal,sagittal]`: fill the disk
embedding cache ahead of annotation (e.g. on a GPU server), so the window never waits for the encoder.

Cached embeddings are portable: copy the cache folder (annotator's platformdirs cache,
`embeddings/`) to the annotating machine; keys hash the voxels, window and model, not paths.
Exit codes: 0 done; 2 bad input or usage; 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from annotator.cli.segment import (
    add_engine_arguments,
    engine_from_args,
    load_input_volume,
    parse_window,
    service_from_args,
)
from annotator.core.errors import InputError
from annotator.core.geometry import PLANES, Plane, plane_array_axis


def parse_planes(text: str) -> list[Plane]:
    names = [p.strip().lower() for p in text.split(",") if p.strip()]
    planes = [p for p in PLANES if p in names]
    if not names or len(planes) != len(set(names)):
        raise InputError(None, f"--planes {text!r}: expected a comma-separated list of {', '.join(PLANES)}")
    return sorted(planes, key=names.index)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "precompute", help="fill the embedding cache for volumes ahead of annotation",
        description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1],
        epilog="exit codes: 0 done, 2 bad input or usage, 130 interrupted",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("volumes", nargs="+", metavar="VOLUME", help="image files or DICOM folders")
    parser.add_argument("--planes", default="axial", help="comma-separated planes (default: axial)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_engine_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.no_disk_cache:
        raise InputError(None, "--no-disk-cache makes precompute pointless (it fills the disk cache)")
    planes = parse_planes(args.planes)
    engine = engine_from_args(args)
    service = service_from_args(args, engine)
    start = time.perf_counter()
    total = computed = 0
    # One volume in memory at a time: a batch of CTs need not fit in RAM together.
    for path in args.volumes:
        volume = load_input_volume(path, args.series_uid)
        window = parse_window(args.window, volume)
        axes = [plane_array_axis(volume, plane) for plane in planes]
        jobs = [(axis, index) for axis in axes for index in range(volume.shape_zyx[axis])]
        before = service.encoder_calls
        with tqdm(total=len(jobs), unit="slice", disable=args.no_progress, file=sys.stderr,
                  desc=f"{Path(path).name} ({getattr(engine, 'model_id', '?')})") as bar:
            for axis, index in jobs:
                service.embedding(volume, axis, index, window)
                bar.update(1)
        total += len(jobs)
        computed += service.encoder_calls - before
        del volume
    from annotator.engine.api import engine_summary

    sys.stdout.write(f"{total} slices of {len(args.volumes)} volume(s), planes {','.join(planes)}, "
                     f"{engine_summary(engine)}: "
                     f"{computed} embedded, {total - computed} already cached, "
                     f"{time.perf_counter() - start:.1f} s; cache {service.cache.disk_dir}\n")
    return 0
