"""`annotator segment VOLUME --prompts PROMPTS.json -o LABELS.nii.gz`: apply point/box prompts
headlessly (e.g. a detector's boxes) with the same engine, cache and slice code as the window.

The prompts file (voxel or world coordinates) is documented in docs/prompts-json.md.
Exit codes: 0 written; 2 bad input or usage (the message names the file and the problem); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from annotator.cli.options import parse_window_option
from annotator.core.errors import InputError
from annotator.core.geometry import (
    CT_PRESETS,
    Window,
    default_window,
)
from annotator.core.volume import Volume
from annotator.io.prompts_json import ObjectPrompts, parse_prompts

log = logging.getLogger(__name__)

# ---- shared with `annotator precompute` -----------------------------------------------------------

def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    from annotator.engine.factory import engine_names

    engines = engine_names()
    parser.add_argument("--engine", choices=list(engines), default=None, metavar="ENGINE",
                        help="prompt engine (default: the one in settings, normally 'auto'): "
                             + "; ".join(f"{k}: {v}" for k, v in engines.items()))
    parser.add_argument("--checkpoint", metavar="CK", help="SAM ViT-B/L/H, MedSAM or LiteMedSAM checkpoint (.pth)")
    parser.add_argument("--sam-flavour", choices=("auto", "sam", "medsam"), default="auto",
                        help="preprocessing of a ViT checkpoint: SAM's or MedSAM's (default: recognised by "
                             "SHA-256, else 'medsam' when the file name says so)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cuda, mps or cpu")
    parser.add_argument("--runtime", default=None, help="auto (the fastest that passes its accuracy check here), torch, onnxruntime, openvino, "
                             "or an exact variant such as openvino-bf16mix (default: settings)")
    parser.add_argument("--window", metavar="C,W|PRESET",
                        help="model input window as centre,width (e.g. 40,400) or a CT preset "
                             f"({', '.join(p.replace(' ', '-') for p in CT_PRESETS)}); default: segment chooses "
                             "one per box as the window does, precompute embeds the default one (by modality)")
    parser.add_argument("--series-uid", help="DICOM SeriesInstanceUID when VOLUME is a folder with several series")
    parser.add_argument("--no-disk-cache", action="store_true",
                        help="do not read or write the on-disk embedding cache")


def engine_from_args(args: argparse.Namespace) -> Any:
    """The PromptEngine the arguments (or the user's settings) ask for; EngineError -> InputError."""
    from annotator.engine.api import EngineError
    from annotator.engine.factory import create_engine
    from annotator.settings import Settings

    settings = Settings.load()
    name = args.engine or settings.engine
    checkpoint = args.checkpoint or (settings.checkpoint if args.engine in (None, settings.engine) else None)
    runtime = args.runtime or settings.runtime
    try:
        return create_engine(name, checkpoint=checkpoint, runtime=runtime, device=args.device,
                             sam_flavour=args.sam_flavour)
    except EngineError as exc:
        raise InputError(None, str(exc)) from None


def service_from_args(args: argparse.Namespace, engine: Any) -> Any:
    from annotator.engine.embedding_cache import EmbeddingCache
    from annotator.engine.service import EmbeddingService
    from annotator.settings import Settings, embedding_cache_dir

    settings = Settings.load()
    cache = EmbeddingCache(memory_bytes=settings.memory_cache_bytes,
                           disk_dir=None if args.no_disk_cache else embedding_cache_dir(),
                           disk_bytes=settings.disk_cache_bytes)
    return EmbeddingService(engine, cache)


def parse_window(text: str | None, volume: Volume) -> Window:
    """--window, or the default window for the volume (by modality) when it is not given."""
    return parse_window_option(text) or default_window(volume)


def load_input_volume(path: str, series_uid: str | None) -> Volume:
    from annotator.io import load_volume

    return load_volume(path, series_uid=series_uid)


@dataclass
class ObjectResult:
    """Masks of one object on its prompted slices ((H, W) bool, raw slice orientation)."""

    prompts: ObjectPrompts
    masks: dict[int, np.ndarray]
    windows: dict[int, Window]  # the model input window of each prompted slice


# ---- segmentation -------------------------------------------------------------------------------

def segment_objects(service: Any, volume: Volume, objects: list[ObjectPrompts], window: Window | None,
                    progress: Any = None) -> list[ObjectResult]:
    """Each prompted slice as the window segments it (engine.slice_segmentation): the model input
    window chosen for a box among the candidates (or `window` when given), clicks by the model's
    click strategy. Every slice is embedded at most once per window (the service's cache)."""
    from annotator.core.geometry import slice_2d
    from annotator.engine import click_strategy, slice_segmentation
    from annotator.engine.input_window import candidate_windows, default_model_window
    from annotator.engine.slices import slice_rgb_u8

    engine = service.engine
    prompt_kind = getattr(engine, "prompt_kind", "points")
    results = []
    for obj in objects:
        result = ObjectResult(obj, {}, {})
        for index, prompts in sorted(obj.prompts_by_slice.items()):
            def predict_in(w: Window, index: int = index, axis: int = obj.axis) -> Callable[..., Any]:
                embedding = service.embedding(volume, axis, index, w)
                return lambda **kwargs: engine.predict(embedding, **kwargs)

            def image_in(w: Window, index: int = index, axis: int = obj.axis) -> np.ndarray:
                return slice_rgb_u8(volume, axis, index, w)[..., 0]

            raw = slice_2d(volume.array, obj.axis, index)
            box = prompts.box.xyxy() if prompts.box is not None else None
            if window is not None:
                candidates = [window]
            elif box is not None:
                candidates = candidate_windows(volume, raw, box)
            else:
                candidates = [default_model_window(volume)]
            clicks = tuple(click_strategy.Click(p.x, p.y, p.positive) for p in prompts.points)
            outcome = slice_segmentation.segment_slice(predict_in, prompt_kind, raw.shape, candidates,
                                                       box_xyxy=box, clicks=clicks, image_in=image_in)
            result.masks[index] = outcome.mask.astype(bool)
            result.windows[index] = outcome.window
            if progress is not None:
                progress(1)
        results.append(result)
    return results


def paint_results(volume: Volume, results: list[ObjectResult]) -> np.ndarray:
    """(z, y, x) uint16 label array: each object's masks painted in order (later ones win)."""
    from annotator.core.geometry import slice_region

    labels = np.zeros(volume.shape_zyx, dtype=np.uint16)
    for result in results:
        axis = result.prompts.axis
        for index, mask in result.masks.items():
            region = slice_region(volume.shape_zyx, axis, index)
            target = labels[region]
            target[np.expand_dims(mask, axis)] = result.prompts.label
    return labels


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "segment", help="apply point/box prompts from a JSON file headlessly and write a label map",
        description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1],
        epilog="exit codes: 0 written, 2 bad input or usage, 130 interrupted",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("volume", metavar="VOLUME", help="image file or DICOM folder")
    parser.add_argument("--prompts", required=True, metavar="PROMPTS.json", help="prompts (docs/prompts-json.md)")
    parser.add_argument("-o", "--output", required=True, metavar="LABELS", help="output label map (.nii.gz, .nrrd, .mha)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    add_engine_arguments(parser)
    add_propagate_arguments(parser)
    parser.set_defaults(func=run)


def add_propagate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--propagate", action="store_true",
                        help="extend each object from its prompted slice through the neighbouring slices "
                             "until the structure ends (3-D propagation)")
    parser.add_argument("--propagate-direction", choices=("both", "up", "down"), default="both",
                        help="both (default), up (increasing slice index) or down")
    parser.add_argument("--propagate-range", metavar="FIRST,LAST",
                        help="never go beyond these slice indices (inclusive)")


def propagate_results(service: Any, volume: Volume, results: list[ObjectResult],
                      direction: str = "both", index_range: tuple[int, int] | None = None) -> None:
    """Extend each object through the volume from its prompted slices, which are its keys (as the
    window's P: engine.propagate, through the executor so every slice is embedded at most once and
    the next ones are prefetched)."""
    from annotator.engine.executor import EngineExecutor, SliceRef
    from annotator.engine.propagate import ExecutorSlices, Key, propagate_volume

    with EngineExecutor(service) as executor:
        for result in results:
            if not any(m.any() for m in result.masks.values()):
                continue
            axis = result.prompts.axis
            keys = [Key(i, m, result.windows[i]) for i, m in sorted(result.masks.items())]
            view = SliceRef(volume, axis, keys[0].index, keys[0].window)
            try:
                propagated = propagate_volume(ExecutorSlices(executor, view), volume, axis, keys,
                                              direction=direction, index_range=index_range)
            finally:
                executor.cancel_prefetch()
            for index, mask in propagated.masks.items():
                result.masks.setdefault(index, mask)  # prompted slices keep their own masks
            log.info("label %d propagated over slices %s (%s)", result.prompts.label, propagated.slice_range,
                     propagated.stops)


def _parse_range(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        first, last = (int(v) for v in text.split(","))
    except ValueError:
        raise InputError(None, f"--propagate-range {text!r}: expected FIRST,LAST slice indices") from None
    if last < first:
        raise InputError(None, f"--propagate-range {text!r}: LAST is before FIRST")
    return first, last


def run(args: argparse.Namespace) -> int:
    from annotator.core.atomic import atomic_write_text
    from annotator.io import write_volume

    output = Path(args.output)
    sidecar = output.with_name(output.name.split(".")[0] + ".json")
    for target in (output, sidecar):
        if target.exists() and not args.overwrite:
            raise InputError(target, "already exists (use --overwrite to replace it)")
    volume = load_input_volume(args.volume, args.series_uid)
    objects = parse_prompts(args.prompts, volume)
    window = parse_window_option(args.window)
    engine = engine_from_args(args)
    service = service_from_args(args, engine)
    start = time.perf_counter()
    results = segment_objects(service, volume, objects, window)
    if getattr(args, "propagate", False):
        propagate_results(service, volume, results, args.propagate_direction, _parse_range(args.propagate_range))
    labels = paint_results(volume, results)
    dtype = np.uint8 if labels.max(initial=0) < 256 else np.uint16
    write_volume(volume.with_array(labels.astype(dtype), modality=""), output, overwrite=args.overwrite)
    atomic_write_text(sidecar, json.dumps({
        "labels": {str(r.prompts.label): r.prompts.name for r in results},
        "engine": getattr(engine, "model_id", ""), "model_sha256": getattr(engine, "model_sha256", ""),
        "input_windows": {str(r.prompts.label): {str(i): list(w.key()) for i, w in sorted(r.windows.items())}
                          for r in results},
    }, indent=2), overwrite=args.overwrite)
    for r in results:
        voxels = int(sum(int(m.sum()) for m in r.masks.values()))
        sys.stdout.write(f"label {r.prompts.label} ({r.prompts.name}): {len(r.masks)} {r.prompts.plane} slice(s), "
                         f"{voxels} voxels\n")
    from annotator.engine.api import engine_summary

    sys.stdout.write(f"wrote {output} with {engine_summary(engine)} in "
                     f"{time.perf_counter() - start:.1f} s ({service.encoder_calls} new embeddings)\n")
    return 0
