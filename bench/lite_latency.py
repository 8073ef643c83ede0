"""LiteMedSAM latency through our path on the shared CT, in one run: encoder per slice, time to the
first mask after opening the scan, prompt latency against a bare decoder forward pass (click_ratio),
and propagation per slice (cold: embedding included; warm: cached). Last line: JSON.

    .venv/bin/python bench/lite_latency.py [--runtime torch] [--repeats 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CASE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "labelled" / "ct_totalseg_abdomen_3mm"
LIVER, SPLEEN = 5, 1


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime", default="torch", help="engine runtime (torch = the fp32 reference)")
    parser.add_argument("--repeats", type=int, default=30, help="prompts timed per path")
    parser.add_argument("--encoder-slices", type=int, default=5)
    args = parser.parse_args()
    if not (CASE / "image.nii.gz").is_file():
        sys.stderr.write(f"shared CT not found at {CASE}\n")
        return 2

    import torch

    from annotator.core.geometry import Window
    from annotator.engine.embedding_cache import EmbeddingCache
    from annotator.engine.executor import EngineExecutor, PredictRequest, SliceRef
    from annotator.engine.lite_medsam import preprocess
    from annotator.engine.lite_medsam.engine import LiteMedSamEngine
    from annotator.engine.propagate import propagate_label
    from annotator.engine.service import EmbeddingService
    from annotator.engine.slices import slice_rgb_u8
    from annotator.io import load_volume, read_labels_onto

    t0 = time.perf_counter()
    engine = LiteMedSamEngine.load(checkpoint=None, device="cpu", runtime=args.runtime)
    engine_load_s = time.perf_counter() - t0
    window = Window.from_bounds(-160.0, 240.0)

    # Time to first mask: open the scan, then one box request through executor -> cache (cold) -> engine.
    with tempfile.TemporaryDirectory() as cache_dir:
        t0 = time.perf_counter()
        volume = load_volume(CASE / "image.nii.gz")
        open_s = time.perf_counter() - t0
        truth_labels = read_labels_onto(volume, CASE / "labels.nii.gz").array
        index = int(np.argmax(np.count_nonzero(truth_labels == LIVER, axis=(1, 2))))
        truth = truth_labels[index] == LIVER
        rows, cols = np.flatnonzero(truth.any(axis=1)), np.flatnonzero(truth.any(axis=0))
        box = np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)
        service = EmbeddingService(engine, EmbeddingCache(disk_dir=cache_dir))
        executor = EngineExecutor(service)
        view = SliceRef(volume, 0, index, window)
        t0 = time.perf_counter()
        first = executor.predict(PredictRequest(view, box_xyxy=box, multimask=False)).result()
        first_mask_s = time.perf_counter() - t0
        assert first.ok, first.error

        # Encoder alone, per slice (model input prepared beforehand).
        encoder_s = []
        for z in range(min(args.encoder_slices, volume.shape_zyx[0])):
            x, _ = preprocess.model_input(slice_rgb_u8(volume, 0, z, window))
            t0 = time.perf_counter()
            engine.encode(x)
            encoder_s.append(time.perf_counter() - t0)

        # Prompt latency: our full path (executor, cached embedding, prompt scaling, upsampling to the
        # slice, threshold) against a bare prompt-encoder + mask-decoder forward pass on the same features.
        embedding = service.embedding(volume, 0, index, window)
        module = engine.torch_module
        features = torch.from_numpy(np.asarray(embedding.features, dtype=np.float32))
        box256 = torch.as_tensor(preprocess.to_model_coords(box, embedding.original_size)[None, None],
                                 dtype=torch.float32)
        runner = getattr(engine, "_prompt_runner", None)  # issue 8's prompt path, when one is installed

        def bare_decoder() -> None:
            """The same decoder our path runs, called directly: the runtime's runner, else torch's modules."""
            if runner is not None:
                runner.predict(embedding.features, points_xy=None, point_labels=None,
                               box_xyxy=box256.numpy().reshape(4), mask_input=None, multimask=False)
                return
            with torch.inference_mode():
                sparse, dense = module.prompt_encoder(points=None, boxes=box256, masks=None)
                module.mask_decoder(image_embeddings=features, image_pe=module.prompt_encoder.get_dense_pe(),
                                    sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                    multimask_output=False)

        ours_s, bare_s = [], []
        for _ in range(3):  # warm-up both
            executor.predict(PredictRequest(view, box_xyxy=box, multimask=False)).result()
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            result = executor.predict(PredictRequest(view, box_xyxy=box, multimask=False)).result()
            ours_s.append(time.perf_counter() - t0)
            assert result.ok
            t0 = time.perf_counter()
            bare_decoder()
            bare_s.append(time.perf_counter() - t0)
        executor.shutdown()

    # Propagation of the liver over the whole scan: cold (each slice embedded once) then warm.
    from annotator.core.labels import LabelMap, LabelTable

    timings = {}
    service = EmbeddingService(engine, EmbeddingCache(disk_dir=None))
    with EngineExecutor(service) as executor:
        for run in ("cold", "warm"):
            table = LabelTable()
            table.add("liver", label_id=LIVER)
            labels = LabelMap(volume.shape_zyx, table)
            t0 = time.perf_counter()
            _, result = propagate_label(executor, SliceRef(volume, 0, index, window), labels, LIVER,
                                        key_mask=first.prediction.best_mask)
            elapsed = time.perf_counter() - t0
            slices = len(result.masks) - 1
            predicted, want = labels.array == LIVER, truth_labels == LIVER
            timings[run] = {"ms_per_slice": _ms(elapsed / max(1, slices)), "slices": slices,
                            "dice_3d": round(2 * float((predicted & want).sum()) / float(predicted.sum() + want.sum()), 4)}
    figures = {
        "runtime": engine.runtime,
        "prompt_path": "runtime runner" if runner is not None else "torch",
        "torch_threads": torch.get_num_threads(),
        "engine_load_ms": _ms(engine_load_s),
        "open_scan_ms": _ms(open_s),
        "encoder_ms_per_slice_median": _ms(statistics.median(encoder_s)),
        "time_to_first_mask_ms": _ms(first_mask_s),
        "time_to_first_mask_after_open_ms": _ms(open_s + first_mask_s),
        "prompt_ms_median_our_path": _ms(statistics.median(ours_s)),
        "prompt_ms_median_bare_decoder": _ms(statistics.median(bare_s)),
        "click_ratio": round(statistics.median(ours_s) / statistics.median(bare_s), 3),
        "propagation_cold": timings["cold"],
        "propagation_warm": timings["warm"],
    }
    for key, value in figures.items():
        sys.stdout.write(f"{key}: {value}\n")
    sys.stdout.write(json.dumps(figures) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
