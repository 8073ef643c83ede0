"""Embedding time of a full-size SAM image encoder (ViT-B by default) through SamEngine.embed,
in fp32 and, on CUDA, fp16 autocast. Random weights: the cost does not depend on their values.

    .venv/bin/python bench/embed_time.py --arch vit_b --repeats 3 --device auto

Prints a JSON line last with the median seconds per precision.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=("vit_b", "vit_l", "vit_h"), default="vit_b")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = parser.parse_args()

    import torch

    from annotator.engine._torchvision_compat import ensure_torchvision

    ensure_torchvision()
    import segment_anything

    from annotator.engine.device import describe_device, pick_device
    from annotator.engine.sam_engine import SamEngine

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    builder = {"vit_b": "build_sam_vit_b", "vit_l": "build_sam_vit_l", "vit_h": "build_sam_vit_h"}[args.arch]
    model = getattr(segment_anything, builder)()
    image = np.random.default_rng(0).integers(0, 255, size=(512, 512, 3), dtype=np.uint8)
    results = {}
    for half in ([False, True] if device.startswith("cuda") else [False]):
        engine = SamEngine(model, model_id=args.arch, model_sha256="0" * 64, device=device, half=half)
        engine.embed(image)  # warm-up (allocations, kernels)
        times = []
        for _ in range(args.repeats):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            engine.embed(image)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        results["fp16" if half else "fp32"] = {"median_s": round(float(np.median(times)), 4),
                                              "device": describe_device(device, half)}
    print(json.dumps({"benchmark": "embed_time", "arch": args.arch, "repeats": args.repeats,
                      "slice_px": [512, 512], "torch": torch.__version__, **results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
