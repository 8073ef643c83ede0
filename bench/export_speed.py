"""Benchmark: COCO RLE export of N annotated 512x512 slices vs plain pycocotools.mask.encode.

Usage: .venv/bin/python bench/export_speed.py [--slices 300] [--size 512] [--repeat 5]

Each is timed --repeat times (encode and annotations alternate, so load from other processes on
a shared machine hits both alike); best and median are reported:
  encode_plain_s:       pycocotools.mask.encode on the same per-component masks, prepared
                        beforehand as the (H, W, N) Fortran stacks it wants (the floor).
  annotations_s:        our annotation step as the exporter runs it (coco.annotations_along),
                        starting from the label volume: find every slice's components, RLE
                        (compressed by pycocotools), area, bbox - all an RLE annotation needs.
  png_s:                windowing + PNG encoding + atomic write of the slice images alone
                        (into a fresh folder in the system temp dir; set TMPDIR to move it).
  export_s:             the whole CocoExporter run: windowed PNG per slice + annotations.json.
  naive_pipeline_s:     the same annotations written directly with scipy + pycocotools
                        (label each label on the full slice, encode each full-size mask).
ratio = annotations_s / encode_plain_s (goal <= 1.05; from best times, ratio_median from medians);
export_ratio = export_s / encode_plain_s. Before timing, every annotation's RLE is checked
byte-equal to the baseline's encode of the same mask. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_case(n_slices: int, size: int, seed: int = 0):
    """A CT-like volume with 3 labels per slice: two organs and scattered small lesions."""
    from annotator.core.labels import LabelMap, LabelTable
    from annotator.core.volume import Volume

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    image = np.empty((n_slices, size, size), np.int16)
    labels = np.zeros((n_slices, size, size), np.uint16)
    for z in range(n_slices):
        # CT-like: air outside an elliptic body of soft tissue, organs a little brighter, noise.
        body = ((yy - size / 2) / (size * 0.42)) ** 2 + ((xx - size / 2) / (size * 0.46)) ** 2 <= 1
        image[z] = np.where(body, 40, -1000) + rng.normal(0, 15, size=(size, size)).astype(np.int16)
        cy, cx = size * (0.5 + 0.1 * np.sin(z / 20)), size * 0.4
        labels[z][((yy - cy) / (size * 0.2)) ** 2 + ((xx - cx) / (size * 0.15)) ** 2 <= 1] = 1
        labels[z][((yy - size * 0.45) / (size * 0.08)) ** 2 + ((xx - size * 0.75) / (size * 0.06)) ** 2 <= 1] = 2
        image[z][labels[z] == 1] += 20
        for _ in range(4):  # small lesions, some inside organ 1
            r, c = rng.integers(20, size - 20, size=2)
            labels[z][(yy - r) ** 2 + (xx - c) ** 2 <= rng.integers(9, 64)] = 3
    table = LabelTable()
    for i, name in ((1, "liver"), (2, "kidney"), (3, "lesion")):
        table.add(name, label_id=i)
    volume = Volume(image, spacing_zyx_mm=(1.0, 0.7, 0.7), modality="CT")
    return volume, LabelMap(volume.shape_zyx, table, array=labels)


def timed(func) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def times_of(repeat: int, *funcs) -> list[list[float]]:
    """Seconds per run of each function, the functions alternating within every repeat."""
    times: list[list[float]] = [[] for _ in funcs]
    for _ in range(repeat):
        for func, bucket in zip(funcs, times, strict=True):
            bucket.append(timed(func))
    return times


def best_and_median(times: list[float]) -> tuple[float, float]:
    return min(times), float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from pycocotools import mask as mask_utils

    from annotator.core.geometry import apply_window, default_window
    from annotator.export.api import ExportSpec, export_volume
    from annotator.export.coco import annotations_along
    from annotator.export.components import label_components_2d
    from annotator.export.slice_images import write_png

    volume, label_map = synthetic_case(args.slices, args.size)
    label_slices = [label_map.array[z] for z in range(args.slices)]
    # The baseline gets the exact masks our annotations describe, already split and laid out.
    stacks = [stack for label_slice in label_slices for _, stack in label_components_2d(label_slice)]
    n_annotations = sum(s.shape[2] for s in stacks)

    # Same masks, same bytes: our annotations in order against encode of the baseline's stacks.
    all_slices = list(range(args.slices))
    ours = [ann["segmentation"]["counts"].encode("ascii")
            for anns in annotations_along(label_map.array, 0, all_slices)[0] for ann in anns]
    theirs = [rle["counts"] for stack in stacks for rle in mask_utils.encode(stack)]
    if ours != theirs:
        raise SystemExit("our RLEs differ from pycocotools.mask.encode of the same masks")

    def encode_plain() -> None:
        for stack in stacks:
            mask_utils.encode(stack)

    def annotations() -> None:
        annotations_along(label_map.array, 0, all_slices)

    encode_times, annotation_times = times_of(args.repeat, encode_plain, annotations)
    encode_best, encode_median = best_and_median(encode_times)
    annotations_best, annotations_median = best_and_median(annotation_times)

    def naive_pipeline() -> None:
        # What one writes with scipy + pycocotools directly: split each label into components on
        # the full slice, encode every component mask, take area and bbox.
        from scipy import ndimage

        for label_slice in label_slices:
            for label_id in np.unique(label_slice)[1:]:
                pieces, count = ndimage.label(label_slice == label_id, structure=np.ones((3, 3)))
                for k in range(1, count + 1):
                    rle = mask_utils.encode(np.asfortranarray((pieces == k).astype(np.uint8)))
                    mask_utils.area(rle), mask_utils.toBbox(rle)

    window = default_window(volume)
    scratch = tempfile.TemporaryDirectory()
    fresh_dirs = (Path(scratch.name) / str(i) for i in range(1_000_000))

    # Output folders are fresh each run and deleted only at the end: deleting 300 files costs as
    # much as writing them on some file systems and is not part of exporting.
    def png_only() -> None:
        out = next(fresh_dirs)
        out.mkdir()
        for z in range(args.slices):
            write_png(apply_window(volume.array[z], window), out / f"{z}.png", overwrite=False)

    def full_export() -> None:
        export_volume("coco", volume, label_map, next(fresh_dirs), ExportSpec(case_id="bench"))

    # These three are slower and only for context: fewer repeats keep the run short.
    context_repeat = max(1, min(args.repeat, 3))
    try:
        naive_times, png_times, export_times = times_of(context_repeat, naive_pipeline, png_only, full_export)
    finally:
        scratch.cleanup()
    naive_best = min(naive_times)
    png_best, png_median = best_and_median(png_times)
    export_best, export_median = best_and_median(export_times)
    result = {
        "slices": args.slices, "size": args.size, "annotations": n_annotations, "repeat": args.repeat,
        "encode_plain_s": round(encode_best, 4), "encode_plain_median_s": round(encode_median, 4),
        "annotations_s": round(annotations_best, 4), "annotations_median_s": round(annotations_median, 4),
        "png_s": round(png_best, 4), "png_median_s": round(png_median, 4),
        "export_s": round(export_best, 4), "export_median_s": round(export_median, 4),
        "naive_pipeline_s": round(naive_best, 4),
        "ratio": round(annotations_best / encode_best, 3),
        "ratio_median": round(annotations_median / encode_median, 3),
        "ratio_per_repeat": [round(a / e, 3) for a, e in zip(annotation_times, encode_times, strict=True)],
        "export_ratio": round(export_best / encode_best, 3),
        "annotations_vs_naive_ratio": round(annotations_best / naive_best, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
