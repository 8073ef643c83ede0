"""Click latency: bare SamPredictor.predict versus our full path (request -> EngineExecutor ->
cached embedding -> mask in slice pixels) on the same model, image and clicks.

The model is segment-anything's own Sam with the real ViT-B/L/H-sized prompt encoder and mask
decoder (256 channels, two-way transformer of depth 2, mlp 2048) and a small random image
encoder: the encoder's size does not change the cost of a click once the slice is embedded.
Clicks alternate between the two paths (order shuffled per pair) so machine load hits both alike.

    .venv/bin/python bench/click_latency.py --clicks 60 --threads 1

Prints a JSON line last: medians, p95s (ms) and ours/bare ratios (goal <= 1.0, must be <= 1.15).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_model(seed: int):
    """A real Sam: short, narrow ViT encoder + ViT-B-sized prompt encoder and mask decoder (the
    encoder does not change decoder cost), built by the engine's own builder."""
    import torch

    from annotator.engine.checkpoints import SamArchitecture, build_sam

    torch.manual_seed(seed)
    arch = SamArchitecture(
        name="vit_custom_64x2", encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=4,
        encoder_global_attn_indexes=(), window_size=14, img_size=1024, patch_size=16, mlp_ratio=4.0,
        use_rel_pos=True, prompt_embed_dim=256, mask_in_chans=16, decoder_depth=2, decoder_mlp_dim=2048,
        num_multimask_outputs=3, iou_head_depth=3, iou_head_hidden_dim=256,
    )
    return build_sam(arch)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clicks", type=int, default=60, help="timed clicks per path (>= 50)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 = steadier on a shared box)")
    parser.add_argument("--size", type=int, default=512, help="slice width in pixels")
    parser.add_argument("--height", type=int, default=0,
                        help="slice height (default: --size, a square axial slice; e.g. 300 for a coronal one)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from annotator.engine._torchvision_compat import ensure_torchvision

    ensure_torchvision()
    from segment_anything import SamPredictor

    from annotator.core.geometry import Window
    from annotator.core.prompts import PointPrompt, PromptSet
    from annotator.core.volume import Volume
    from annotator.engine.embedding_cache import EmbeddingCache
    from annotator.engine.executor import EngineExecutor, PredictRequest, SliceRef
    from annotator.engine.sam_engine import SamEngine
    from annotator.engine.service import EmbeddingService
    from annotator.engine.slices import slice_rgb_u8

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    size = args.size
    height = args.height or size
    rows, cols = np.mgrid[:height, :size]
    array = rng.normal(-60, 25, size=(3, height, size)).astype(np.int16)
    body = ((rows - height / 2) / (0.45 * height)) ** 2 + ((cols - size / 2) / (0.38 * size)) ** 2 <= 1
    organ = ((rows - 0.45 * height) / (0.12 * height)) ** 2 + ((cols - 0.4 * size) / (0.16 * size)) ** 2 <= 1
    array[:, body] += 100
    array[:, organ] += 80
    volume = Volume(array, (2.0, 0.7, 0.7), modality="CT")
    window = Window(40, 400)
    view = SliceRef(volume, 0, 1, window)
    image = slice_rgb_u8(volume, 0, 1, window)

    sam = build_model(args.seed)
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    engine = SamEngine(sam, model_id="bench", model_sha256="0" * 64)
    service = EmbeddingService(engine, EmbeddingCache(memory_bytes=1 << 28, disk_dir=None))
    executor = EngineExecutor(service)
    executor.embed(view).result()  # the slice is embedded once, as in the app

    clicks = [(float(rng.uniform(0.2, 0.8) * size), float(rng.uniform(0.2, 0.8) * height))
              for _ in range(args.warmup + args.clicks)]

    def bare(x: float, y: float) -> float:
        start = time.perf_counter()
        masks, _, _ = predictor.predict(point_coords=np.array([[x, y]]), point_labels=np.array([1]),
                                        multimask_output=True)
        elapsed = time.perf_counter() - start
        if masks.shape != (3, height, size):
            raise RuntimeError(f"unexpected SamPredictor masks {masks.shape}")
        return elapsed

    def ours(x: float, y: float) -> float:
        start = time.perf_counter()
        request = PredictRequest.from_prompts(view, PromptSet((PointPrompt(x, y),)))
        result = executor.predict(request).result()
        elapsed = time.perf_counter() - start
        if not result.ok or result.prediction.masks.shape != (3, height, size):
            raise RuntimeError(f"our path failed: {result.status} {result.error}")
        return elapsed

    order = random.Random(args.seed)
    times = {"bare": [], "ours": []}
    for i, (x, y) in enumerate(clicks):
        pair = [("bare", bare), ("ours", ours)]
        order.shuffle(pair)
        for name, fn in pair:
            elapsed = fn(x, y)
            if i >= args.warmup:
                times[name].append(elapsed)
    executor.shutdown()

    # identical answers on the same click (fp16 cache vs fp32 predictor features: near-identical)
    x, y = clicks[0]
    masks, _, _ = predictor.predict(point_coords=np.array([[x, y]]), point_labels=np.array([1]))
    check = engine.predict(service.cached(volume, 0, 1, window), points_xy=np.array([[x, y]]),
                           point_labels=np.array([1]))
    executor_check = float((check.masks != masks).mean())

    def stats(values):
        ms = np.array(values) * 1000
        return float(np.median(ms)), float(np.percentile(ms, 95))

    bare_med, bare_p95 = stats(times["bare"])
    ours_med, ours_p95 = stats(times["ours"])
    result = {
        "benchmark": "click_latency",
        "clicks": args.clicks,
        "slice_px": [height, size],
        "multimask": True,
        "torch_threads": args.threads,
        "device": "cpu",
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "bare_median_ms": round(bare_med, 2),
        "bare_p95_ms": round(bare_p95, 2),
        "ours_median_ms": round(ours_med, 2),
        "ours_p95_ms": round(ours_p95, 2),
        "ratio_median": round(ours_med / bare_med, 3),
        "ratio_p95": round(ours_p95 / bare_p95, 3),
        "mask_pixel_disagreement_fp16_cache": round(executor_check, 6),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
