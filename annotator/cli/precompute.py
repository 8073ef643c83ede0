"""`annotator precompute VOLUME... --checkpoint CK [--planes axial,coronal,sagittal]`: fill the disk
embedding cache ahead of annotation (e.g. on a GPU server), so the window never waits for the encoder.

Cached embeddings are portable: copy the cache folder (annotator's platformdirs cache,
`embeddings/`) to the annotating machine; keys hash the voxels, window and model, not paths.
Exit codes: 0 done; 2 bad input or usage; 130 interrupted.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from dataclasses import dataclass
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
    parser.add_argument("--for-server", metavar="DIR",
                        help="fill the content-addressed folder an `annotator serve --cache-dir DIR` serves from "
                             "(use the server's --engine/--checkpoint/--runtime/--device here too)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="with --for-server: spread the volumes over this Dask cluster's workers (each loads "
                             "the model once); DIR must be a folder they all reach")
    parser.add_argument("--workers", type=int, default=1, help="with --for-server: local worker processes (default 1)")
    add_engine_arguments(parser)
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class ServerPrecompute:
    """One volume's slices for a server's shared folder (runs in a worker process or on Dask)."""

    volume: str
    series_uid: str | None
    planes: tuple[str, ...]
    window: str | None
    engine: tuple[str, str | None, str, str, str]  # name, checkpoint, runtime, device, sam flavour
    folder: str


@functools.lru_cache(maxsize=2)
def _worker_engine(options: tuple[str, str | None, str, str, str]) -> Any:
    """One model per worker process, loaded on its first volume."""
    from annotator.engine.factory import create_engine

    name, checkpoint, runtime, device, flavour = options
    return create_engine(name, checkpoint=checkpoint, runtime=runtime, device=device, sam_flavour=flavour)


def precompute_for_server(job: ServerPrecompute) -> dict[str, int]:
    """{"slices": n, "encoded": m}: every slice of the volume, windowed as the window sends it,
    embedded into the server folder unless already there."""
    from annotator.engine.slice_store import embed_into, open_slice_store
    from annotator.engine.slices import slice_rgb_u8

    engine = _worker_engine(job.engine)
    store = open_slice_store(job.folder)
    volume = load_input_volume(job.volume, job.series_uid)
    window = parse_window(job.window, volume)
    slices = encoded = 0
    for plane in job.planes:
        axis = plane_array_axis(volume, plane)  # type: ignore[arg-type]
        for index in range(volume.shape_zyx[axis]):
            _, made = embed_into(store, engine, slice_rgb_u8(volume, axis, index, window))
            slices += 1
            encoded += int(made)
    return {"slices": slices, "encoded": encoded}


def run_for_server(args: argparse.Namespace, planes: list[Plane]) -> int:
    from annotator.engine.factory import create_engine
    from annotator.export.batch import run_cases

    options = (args.engine or "auto", args.checkpoint, args.runtime or "auto", args.device, args.sam_flavour)
    engine = create_engine(options[0], checkpoint=options[1], runtime=options[2], device=options[3],
                           sam_flavour=options[4])  # fail here, once, on a wrong model choice
    Path(args.for_server).mkdir(parents=True, exist_ok=True)
    jobs = [ServerPrecompute(str(Path(v).resolve()), args.series_uid, tuple(planes), args.window,
                             (options[0], options[1], str(engine.runtime), options[3], options[4]),
                             str(Path(args.for_server).resolve())) for v in args.volumes]
    summary = run_cases(precompute_for_server, jobs, [Path(v).name for v in args.volumes], workers=args.workers,
                        scheduler=args.scheduler, progress=not args.no_progress, description="precompute")
    slices = sum(o.value["slices"] for o in summary.succeeded)
    encoded = sum(o.value["encoded"] for o in summary.succeeded)
    sys.stdout.write(f"{slices} slices of {len(summary.succeeded)} volume(s) for the server folder "
                     f"{args.for_server}: {encoded} embedded, {slices - encoded} already there"
                     + (f"; {len(summary.failed)} volume(s) failed" if summary.failed else "") + "\n")
    return 1 if summary.failed else 0


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.no_disk_cache:
        raise InputError(None, "--no-disk-cache makes precompute pointless (it fills the disk cache)")
    planes = parse_planes(args.planes)
    if args.for_server:
        return run_for_server(args, planes)
    if args.scheduler:
        raise InputError(None, "--scheduler spreads --for-server work; without it precompute fills this machine's cache")
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
