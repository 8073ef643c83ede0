"""Benchmark: COCO RLE export of N annotated 512x512 slices vs plain pycocotools.mask.encode.

Usage: .venv/bin/python bench/export_speed.py [--slices 300] [--size 512] [--repeat 3]

Times, best of --repeat:
  encode_plain_s:       pycocotools.mask.encode on the same per-component masks, prepared
                        beforehand as the (H, W, N) Fortran stacks it wants (the floor).
  annotations_s:        our per-slice annotation step (coco.slice_annotations): split each label
                        into components, encode, area, bbox - everything an RLE annotation needs.
  export_s:             the whole CocoExporter run: windowed PNG per slice + annotations.json.
  naive_pipeline_s:     the same annotations written directly with scipy + pycocotools
                        (label each label on the full slice, encode each full-size mask).
ratio = annotations_s / encode_plain_s (goal <= 1.05); export_ratio = export_s / encode_plain_s.
The last line printed is JSON.
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


def best_of(repeat: int, func) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from pycocotools import mask as mask_utils

    from annotator.export.api import ExportSpec, export_volume
    from annotator.export.coco import label_components_2d, slice_annotations

    volume, label_map = synthetic_case(args.slices, args.size)
    # The baseline gets the exact masks our annotations describe, already split and laid out.
    stacks = [stack for z in range(args.slices) for _, stack in label_components_2d(label_map.array[z])]
    n_annotations = sum(s.shape[2] for s in stacks)

    encode_plain_s = best_of(args.repeat, lambda: [mask_utils.encode(s) for s in stacks])

    def naive_pipeline() -> None:
        # What one writes with scipy + pycocotools directly: split each label into components on
        # the full slice, encode every component mask, take area and bbox.
        from scipy import ndimage

        for z in range(args.slices):
            label_slice = label_map.array[z]
            for label_id in np.unique(label_slice)[1:]:
                pieces, count = ndimage.label(label_slice == label_id, structure=np.ones((3, 3)))
                for k in range(1, count + 1):
                    rle = mask_utils.encode(np.asfortranarray((pieces == k).astype(np.uint8)))
                    mask_utils.area(rle), mask_utils.toBbox(rle)

    naive_s = best_of(args.repeat, naive_pipeline)
    annotations_s = best_of(args.repeat, lambda: [slice_annotations(label_map.array[z]) for z in range(args.slices)])

    def full_export() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            export_volume("coco", volume, label_map, Path(tmp), ExportSpec(case_id="bench"))

    export_s = best_of(args.repeat, full_export)
    result = {
        "slices": args.slices, "size": args.size, "annotations": n_annotations, "repeat": args.repeat,
        "encode_plain_s": round(encode_plain_s, 4), "annotations_s": round(annotations_s, 4),
        "export_s": round(export_s, 4), "naive_pipeline_s": round(naive_s, 4),
        "ratio": round(annotations_s / encode_plain_s, 3),
        "export_ratio": round(export_s / encode_plain_s, 3),
        "annotations_vs_naive_ratio": round(annotations_s / naive_s, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
