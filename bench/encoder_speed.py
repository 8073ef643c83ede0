"""Encoder and prompt-path speed per runtime/precision, side by side in one run (issue 8).

    .venv/bin/python bench/encoder_speed.py [--reps 3] [--vitb-reps 2] [--skip-vitb] [--vitb-ort]

Every variant is timed in the same rounds (round-robin, warm medians), so load from other
processes on a shared machine hits them alike. "torch fp32 as shipped" runs in a worker process
without our malloc tuning (mallopt is process-wide), "torch fp32 malloc tuned" in another with
it, in the same rounds; the in-process torch rows share the process with the other runtimes'
thread pools and read slower on 2 cores. Agreement is the Dice of
the evaluation protocol's box masks (shared CT, every label's largest axial slice) against torch
fp32. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "labelled" / "ct_totalseg_abdomen_3mm"
LITE_VARIANTS = ["torch-fp32", "torch-bf16", "onnxruntime-fp32", "openvino-fp32", "openvino-bf16mix",
                 "openvino-bf16"]
VITB_VARIANTS = ["torch-fp32", "torch-bf16", "openvino-fp32", "openvino-bf16mix", "openvino-bf16"]

WORKER = r"""
import os, sys, time, json, resource
import numpy as np, torch
kind = sys.argv[1]
if sys.argv[3] == "tuned":
    from annotator.engine.runtime.malloc import tune_malloc
    tune_malloc()
if kind == "lite":
    from annotator.engine.lite_medsam.model import load_model
    encoder = load_model(None, device="cpu").module.image_encoder.eval()
    x = torch.from_numpy(np.load(sys.argv[2]))
else:
    from annotator.engine._torchvision_compat import ensure_torchvision
    ensure_torchvision()
    from segment_anything import sam_model_registry
    torch.manual_seed(0)
    encoder = sam_model_registry["vit_b"](checkpoint=None).image_encoder.eval()
    x = torch.zeros(1, 3, 1024, 1024)
print("ready", flush=True)
for line in sys.stdin:
    start = time.perf_counter()
    with torch.inference_mode():
        encoder(x)
    ms = (time.perf_counter() - start) * 1000
    print(json.dumps({"ms": ms, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
"""


class ShippedWorker:
    """torch fp32 in its own process (as shipped: no malloc tuning; or tuned), one run per request.

    Separate processes also keep torch away from the idle threads of the other runtimes."""

    def __init__(self, kind: str, input_path: str | None = None, *, tuned: bool = False) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        if not tuned:
            env["ANNOTATOR_NO_MALLOC_TUNING"] = "1"
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER, kind, input_path or "",
                                      "tuned" if tuned else "shipped"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("shipped-torch worker failed to start")
        self.peak_rss_mb = 0.0

    def run(self) -> float:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        self.peak_rss_mb = reply["peak_rss_mb"]
        return reply["ms"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def round_robin(timers: dict, reps: int) -> dict[str, float]:
    """Warm medians: one warm-up call each, then `reps` rounds calling every variant in turn."""
    for fn in timers.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(reps):
        for name, fn in timers.items():
            start = time.perf_counter()
            result = fn()
            times[name].append(result if isinstance(result, float) else (time.perf_counter() - start) * 1000)
    return {name: round(statistics.median(v), 1) for name, v in times.items()}


def time_variants(kind: str, variants: list[str], spec, cache, x: np.ndarray, reps: int,
                  input_path: str | None = None) -> tuple[dict, dict[str, float], dict]:
    """Build each variant (RSS added, build time), then time them round-robin beside torch fp32 as
    shipped and malloc-tuned, each in its own worker process. Returns (runners, medians, memory)."""
    from annotator.engine.runtime.select import build_runner

    shipped = ShippedWorker(kind, input_path)
    tuned = ShippedWorker(kind, input_path, tuned=True)
    runners, memory = {}, {}
    for variant in variants:
        before = rss_mb()
        start = time.perf_counter()
        runners[variant] = build_runner(variant, spec, cache)
        runners[variant](x)
        memory[variant] = {"rss_added_mb": round(rss_mb() - before, 1),
                           "build_s": round(time.perf_counter() - start, 2)}
    timers = {"torch-fp32-as-shipped": shipped.run, "torch-fp32-malloc-tuned-own-process": tuned.run}
    timers.update({v: (lambda r=r: r(x)) for v, r in runners.items()})
    medians = round_robin(timers, reps)
    shipped.close()
    tuned.close()
    memory["torch-fp32-as-shipped"] = {"peak_rss_mb": round(shipped.peak_rss_mb, 1)}
    return runners, medians, memory


def protocol_case():
    from annotator.evaluate import protocol
    from annotator.io import load_volume, read_labels_onto

    volume = load_volume(DATA / "image.nii.gz")
    labels = read_labels_onto(volume, DATA / "labels.nii.gz").array
    names = {int(k): v for k, v in json.loads((DATA / "labels.json").read_text())["labels"].items()}
    slices_u8, _ = protocol.windowed_volume_u8(volume.array)
    items, _ = protocol.select_items(labels, names, 0, "axial")
    prompts = []
    for item in items:
        truth = protocol.plane_slice(labels, 0, item.slice_index) == item.label
        prompts.append((item.slice_index, protocol.tight_box_xyxy(truth), truth))
    return slices_u8, prompts


def box_masks(engine, slices_u8, prompts) -> list[np.ndarray]:
    embeddings, masks = {}, []
    for index, box, _ in prompts:
        if index not in embeddings:
            embeddings[index] = engine.embed(slices_u8[index])
        masks.append(engine.predict(embeddings[index], box_xyxy=box, multimask=False).best_mask)
    return masks


def bench_lite(reps: int, cache) -> dict:
    from annotator.engine.lite_medsam import preprocess
    from annotator.engine.lite_medsam.engine import LiteMedSamEngine
    from annotator.engine.runtime.lite_medsam_runtime import encoder_spec
    from annotator.engine.runtime.select import candidate_variants
    from annotator.evaluate.protocol import dice

    slices_u8, prompts = protocol_case()
    engine = LiteMedSamEngine.load(runtime="torch", device="cpu")  # tunes malloc in this process
    x, _ = preprocess.model_input(slices_u8[prompts[0][0]])
    with tempfile.NamedTemporaryFile(suffix=".npy", delete=False) as fh:
        np.save(fh, x)
    from annotator.engine.runtime.cpu import native_variants

    variants, skipped = native_variants(LITE_VARIANTS)
    if skipped:  # emulated bf16 is slower than fp32 and would take the run past its budget
        print(f"skipped without native bf16: {', '.join(skipped)}", file=sys.stderr, flush=True)
    runners, medians, memory = time_variants("lite", variants, encoder_spec(engine), cache, x, reps,
                                             fh.name)

    reference = box_masks(engine, slices_u8, prompts)
    truth_dice = [dice(r, t) for r, (_, _, t) in zip(reference, prompts, strict=True)]
    agreement = {"torch-fp32": {"mean": 1.0, "min": 1.0, "mean_dice_box": round(float(np.mean(truth_dice)), 4)}}
    for variant, runner in runners.items():
        if variant == "torch-fp32":
            continue
        engine.set_encoder(lambda a, r=runner: r(a)[0], variant)
        masks = box_masks(engine, slices_u8, prompts)
        scores = [dice(m, r) for m, r in zip(masks, reference, strict=True)]
        agreement[variant] = {"mean": round(float(np.mean(scores)), 4), "min": round(float(np.min(scores)), 4),
                              "mean_dice_box": round(float(np.mean([dice(m, t) for m, (_, _, t) in
                                                                     zip(masks, prompts, strict=True)])), 4)}
    default = [v for v in candidate_variants("cpu") if v != "torch-fp32"][0]  # LiteMedSAM declares its stem
    return {"medians_ms": medians, "memory": memory, "agreement": agreement, "default_variant": default,
            "n_items": len(prompts), "n_slices": len({p[0] for p in prompts}), "engine": engine,
            "slices_u8": slices_u8, "prompts": prompts}


def bench_vitb(reps: int, cache, with_ort: bool) -> dict:
    import torch

    from annotator.engine._torchvision_compat import ensure_torchvision
    from annotator.engine.runtime.base import ModelSpec
    from annotator.engine.runtime.sam_runtime import FP32_STEM
    from annotator.engine.runtime.select import candidate_variants

    ensure_torchvision()
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    encoder = sam_model_registry["vit_b"](checkpoint=None).image_encoder.eval()
    x = np.random.default_rng(0).normal(0, 1, (1, 3, 1024, 1024)).astype(np.float32)
    spec = ModelSpec(module=encoder, part="sam-vit-b-random.encoder", model_sha256="random-seed-0",
                     example_inputs=(x,), input_names=("image",), output_names=("features",),
                     fp32_scopes=FP32_STEM)
    from annotator.engine.runtime.cpu import native_variants

    variants, _ = native_variants(VITB_VARIANTS + (["onnxruntime-fp32"] if with_ort else []))
    runners, medians, memory = time_variants("vitb", variants, spec, cache, x, reps)
    reference = runners["torch-fp32"](x)[0]
    errors = {v: round(float(np.linalg.norm(r(x)[0] - reference) / np.linalg.norm(reference)), 5)
              for v, r in runners.items()}
    # what a SAM engine tries first here (runtime.sam: the same candidates, bf16mix with its stem);
    # with random weights no mask agreement can be measured, only the features' relative error
    default = [v for v in candidate_variants("cpu") if v in runners and v != "torch-fp32"][0]
    return {"medians_ms": medians, "memory": memory, "feature_relative_error": errors, "default_variant": default}


def bench_prompt(lite: dict, reps: int, cache) -> dict:
    """engine.predict on torch against the same call with the prompt path on each runtime, at 512²."""
    import cv2
    import torch

    from annotator.engine.lite_medsam import preprocess
    from annotator.engine.runtime.prompt_path import PromptRunner, prompt_spec
    from annotator.engine.runtime.select import build_runner

    engine, slices_u8, prompts = lite["engine"], lite["slices_u8"], lite["prompts"]
    index, box, _ = prompts[0]
    image = cv2.resize(slices_u8[index], (512, 512), interpolation=cv2.INTER_LINEAR)
    scale = 512 / np.array([slices_u8.shape[2], slices_u8.shape[1]] * 2)
    box512 = np.asarray(box, dtype=np.float64) * scale
    embedding = engine.embed(image)
    module = engine.torch_module
    spec = prompt_spec(module.prompt_encoder, module.mask_decoder, part="lite-medsam.prompt",
                       model_sha256=engine.model_sha256, embedding_shape=embedding.features.shape)

    def fast_predict(runner: PromptRunner):
        size = embedding.original_size
        model_box = preprocess.to_model_coords(preprocess.clip_box_xyxy(box512, size), size)
        low_res, iou = runner.predict(embedding.features, box_xyxy=model_box, multimask=False)
        logits = preprocess.upsample_logits(torch.from_numpy(low_res), embedding.input_size, size)
        return preprocess.masks_from_logits(logits)[0]

    reference = engine.predict(embedding, box_xyxy=box512, multimask=False).masks
    timers = {"torch-fp32": lambda: engine.predict(embedding, box_xyxy=box512, multimask=False)}
    equal = {}
    for variant in ("onnxruntime-fp32", "openvino-fp32"):
        runner = PromptRunner(build_runner(variant, spec, cache), tuple(spec.example_inputs[3].shape[-2:]))
        equal[variant] = bool(np.array_equal(fast_predict(runner), reference))
        timers[variant] = lambda r=runner: fast_predict(r)
    medians = round_robin(timers, reps)
    return {"medians_ms": medians, "masks_equal_torch": equal, "slice_size": [512, 512]}


FIRST_MASK = r"""
import json, sys, time
start = time.perf_counter()
from annotator.io import load_volume
from annotator.engine.factory import create_engine
from annotator.engine.slices import slice_rgb_u8
from annotator.core.geometry import default_window
volume = load_volume(sys.argv[1])
opened = time.perf_counter()
engine = create_engine("lite-medsam")
loaded = time.perf_counter()
index = volume.array.shape[0] // 2
embedding = engine.embed(slice_rgb_u8(volume, 0, index, default_window(volume)))
embedded = time.perf_counter()
h, w = embedding.original_size
import numpy as np
prediction = engine.predict(embedding, box_xyxy=np.array([w * 0.3, h * 0.3, w * 0.6, h * 0.6]), multimask=False)
done = time.perf_counter()
print(json.dumps({"runtime": engine.runtime, "total_ms": round(1000 * (done - start), 1),
                  "open_ms": round(1000 * (opened - start), 1), "engine_ms": round(1000 * (loaded - opened), 1),
                  "embed_ms": round(1000 * (embedded - loaded), 1), "predict_ms": round(1000 * (done - embedded), 1)}))
"""


def first_mask(cache_dir: str) -> dict:
    """Open the shared CT and get a mask through the app's own path, in a fresh process, twice:
    the first start on an empty cache (self-check + export) and the second start (cache hit)."""
    env = dict(os.environ, ANNOTATOR_CACHE_DIR=cache_dir, PYTHONPATH=str(ROOT))
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", FIRST_MASK, str(DATA / "image.nii.gz")], env=env,
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"first_start": runs[0], "second_start": runs[1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--vitb-reps", type=int, default=2)
    parser.add_argument("--skip-vitb", action="store_true")
    parser.add_argument("--vitb-ort", action="store_true", help="also ONNX Runtime for ViT-B (about 7 GB)")
    parser.add_argument("--skip-lite", action="store_true", help="only the ViT-B section")
    args = parser.parse_args()

    from annotator.engine.runtime.compiled_cache import CompiledModelCache
    from annotator.engine.runtime.cpu import cpu_class, cpu_model_name, cpu_supports_bf16

    with tempfile.TemporaryDirectory(prefix="annotator-bench-") as tmp:
        cache = CompiledModelCache(Path(tmp) / "bench-models")
        print(f"CPU class: {cpu_class()} ({cpu_model_name()}, {os.cpu_count()} cores)", file=sys.stderr, flush=True)
        result: dict = {"cpu": cpu_model_name(), "cpu_class": cpu_class(), "cpu_bf16": cpu_supports_bf16(),
                        "cores": os.cpu_count(),
                        "load_avg_start": os.getloadavg()}
        if not args.skip_lite:
            lite = bench_lite(args.reps, cache)
            result["lite"] = {k: v for k, v in lite.items() if k not in ("engine", "slices_u8", "prompts")}
            result["prompt"] = bench_prompt(lite, max(args.reps, 20), cache)
        if not args.skip_vitb:
            result["vitb"] = bench_vitb(args.vitb_reps, cache, args.vitb_ort)
        if not args.skip_lite:
            result["first_mask"] = first_mask(str(Path(tmp) / "app-cache"))
        result["load_avg_end"] = os.getloadavg()

    summary = {} if args.skip_lite else lite_summary(result)
    if "vitb" in result:
        vitb = result["vitb"]["medians_ms"]
        summary["vitb_default_variant"] = result["vitb"]["default_variant"]
        summary["vitb_encoder_ratio"] = round(vitb[result["vitb"]["default_variant"]] / vitb["torch-fp32-as-shipped"], 3)
        summary["vitb_fp32_ratio"] = round(vitb["openvino-fp32"] / vitb["torch-fp32-as-shipped"], 3)
        if "openvino-bf16" in vitb:  # only where bf16 is native
            summary["vitb_bf16_ratio"] = round(vitb["openvino-bf16"] / vitb["torch-fp32-as-shipped"], 3)
    result["summary"] = summary
    print(json.dumps(result, indent=1, default=str))
    print(json.dumps(summary | {"lite_medians_ms": result.get("lite", {}).get("medians_ms"),
                                "lite_agreement": result.get("lite", {}).get("agreement"),
                                "prompt_medians_ms": result.get("prompt", {}).get("medians_ms"),
                                "vitb_medians_ms": result.get("vitb", {}).get("medians_ms")}, default=str))
    return 0


def lite_summary(result: dict) -> dict:
    shipped = result["lite"]["medians_ms"]["torch-fp32-as-shipped"]
    # the variant the app itself chose on this machine (self-check passed, faster than torch)
    default = result["first_mask"]["second_start"]["runtime"]
    if default not in result["lite"]["medians_ms"]:
        default = result["lite"]["default_variant"]
    return {
        "lite_encoder_ratio": round(result["lite"]["medians_ms"][default] / shipped, 3),
        "lite_default_variant": default,
        "lite_bf16_ratio": (round(result["lite"]["medians_ms"]["openvino-bf16"] / shipped, 3)
                            if "openvino-bf16" in result["lite"]["medians_ms"] else None),
        "cpu_class": result["cpu_class"],
        "lite_dice_agreement": result["lite"]["agreement"][default]["mean"],
        "lite_dice_agreement_min": result["lite"]["agreement"][default]["min"],
        "prompt_ratio": round(min(v for k, v in result["prompt"]["medians_ms"].items() if k != "torch-fp32")
                              / result["prompt"]["medians_ms"]["torch-fp32"], 3),
        "first_mask_ms": result["first_mask"]["second_start"]["total_ms"],
        "first_mask_cold_ms": result["first_mask"]["first_start"]["total_ms"],
    }


if __name__ == "__main__":
    sys.exit(main())
