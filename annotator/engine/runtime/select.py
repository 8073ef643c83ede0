"""Choose, once per machine and model, the fastest installed runtime/precision that is accurate enough.

Candidates are tried in order of measured speed (bench/encoder_speed.py, LiteMedSAM encoder,
against torch fp32 as shipped, BENCHMARKS.md: OpenVINO bf16 with an fp32 stem ("bf16mix") 3.6x
where the CPU has bf16, OpenVINO fp32 2.4x, torch bf16 autocast 2.6x but less accurate, ONNX
Runtime fp32 2.1x); the first one that passes the self-check (its masks agree with torch fp32's on a few
inputs) and is faster than torch fp32 there is used. The decision is stored beside the compiled
models, keyed by the model, the machine and the runtime versions, so later starts skip the check.

Not offered by default on CPU (opt in by naming the variant, e.g. runtime="openvino-bf16"):
- OpenVINO bf16 throughout (about 10 % faster than bf16mix): on the shared abdominal CT its box
  masks agree with torch fp32 at mean Dice 0.989 < 0.99 (min 0.956), failing the accuracy guard
  of issue 8; the synthetic first-use self-check cannot see that (0.998 there), so the rule is
  fixed here. Keeping the stem and first stage in fp32 (bf16mix) gives mean 0.994 / min 0.964 /
  mean box Dice -0.001 there, and is offered for models that declare such a stem.
- int8 quantisation: damaged masks (min Dice 0.46 with convolutions quantised, 0.78 with MatMul
  only) for less speed than bf16.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from annotator.engine.runtime.base import ModelRunner, ModelSpec, runner_name
from annotator.engine.runtime.compiled_cache import CompiledModelCache

log = logging.getLogger(__name__)
SELECT_VERSION = 1
MIN_MEAN_AGREEMENT = 0.99
MIN_EACH_AGREEMENT = 0.93


@dataclass(frozen=True)
class SelfCheck:
    """How to tell whether a runtime's outputs are as good as torch fp32's.

    inputs: a few example inputs (each a tuple, one array per model input)
    scores: (input_index, reference_outputs, candidate_outputs) -> agreement scores in [0, 1],
            e.g. the Dice of the masks each output gives for a few box prompts
    """

    inputs: Sequence[tuple[np.ndarray, ...]]
    scores: Callable[[int, tuple[np.ndarray, ...], tuple[np.ndarray, ...]], Sequence[float]]
    min_mean: float = MIN_MEAN_AGREEMENT
    min_each: float = MIN_EACH_AGREEMENT
    identity: str = "default"  # part of the cached decision's key: change it when the check changes


def relative_error_scores(index: int, reference: tuple[np.ndarray, ...],
                          candidate: tuple[np.ndarray, ...]) -> list[float]:
    """Generic agreement when no mask decoder is at hand: 1 - relative L2 error of each output.

    Strict (bf16 features differ by ~3 %, which masks usually tolerate): pass a mask-based
    score for models whose outputs are decoded into masks.
    """
    return [max(0.0, 1.0 - float(np.linalg.norm(c - r) / max(np.linalg.norm(r), 1e-12)))
            for r, c in zip(reference, candidate, strict=True)]


@dataclass
class VariantResult:
    variant: str
    passed: bool
    mean_agreement: float | None = None
    min_agreement: float | None = None
    median_ms: float | None = None
    error: str | None = None


@dataclass
class Selection:
    runner: ModelRunner
    results: list[VariantResult] = field(default_factory=list)
    from_cache: bool = False

    @property
    def name(self) -> str:
        return self.runner.name


def installed_runtimes() -> list[str]:
    """Runtimes of the registry whose modules are importable here (onnxruntime and openvino need
    onnx too, for the export)."""
    import importlib.util

    from annotator.plugin_host.manager import get_registry

    return [name for name, c in get_registry().contributions("runtimes").items()
            if all(importlib.util.find_spec(module) for module in getattr(c, "requires", ()))]


def candidate_variants(device: str = "cpu", *, openvino_bf16: bool = False) -> list[str]:
    """Variants worth trying here, fastest first (see the module docstring for the order).

    bf16 variants only where the CPU computes bf16 natively; OpenVINO bf16 throughout only when
    asked (openvino_bf16=True), see the module docstring. "openvino-bf16mix" only helps models
    whose ModelSpec declares fp32_scopes (select_runner drops it for the others)."""
    if device.startswith("cuda"):
        import torch

        half = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return [runner_name("torch", half), "torch-fp32"]
    if device != "cpu":
        return ["torch-fp32"]
    from annotator.engine.runtime.cpu import cpu_supports_bf16

    bf16 = cpu_supports_bf16()
    installed = installed_runtimes()
    order = []
    if "openvino" in installed:
        order += (["openvino-bf16"] if bf16 and openvino_bf16 else []) + (["openvino-bf16mix"] if bf16 else [])
        order.append("openvino-fp32")
    if bf16:
        order.append("torch-bf16")
    if "onnxruntime" in installed:
        order.append("onnxruntime-fp32")
    order.append("torch-fp32")
    return order


def runtime_names() -> dict[str, str]:
    """runtime -> title of every runtime in the plugin registry (builtins: torch, onnxruntime, openvino)."""
    from annotator.plugin_host.manager import get_registry

    return get_registry().titles("runtimes")


def build_torch(spec: ModelSpec, precision: str, cache: CompiledModelCache, device: str) -> ModelRunner:
    from annotator.engine.runtime.torch_runner import TorchRunner

    return TorchRunner(spec.module, precision=precision, device=device)


def build_onnxruntime(spec: ModelSpec, precision: str, cache: CompiledModelCache, device: str) -> ModelRunner:
    from annotator.engine.runtime.onnx_runner import OnnxRuntimeRunner, cached_onnx_path

    return OnnxRuntimeRunner(cached_onnx_path(spec, cache), spec, precision=precision)


def build_openvino(spec: ModelSpec, precision: str, cache: CompiledModelCache, device: str) -> ModelRunner:
    from annotator.engine.runtime.onnx_runner import cached_onnx_path
    from annotator.engine.runtime.openvino_runner import load_openvino_runner

    return load_openvino_runner(spec, cached_onnx_path(spec, cache), precision, cache)


def build_runner(variant: str, spec: ModelSpec, cache: CompiledModelCache,
                 device: str = "cpu") -> ModelRunner:
    """The runner for "runtime-precision" (a runtime of the registry), exporting/compiling through
    the cache as needed."""
    from annotator.plugin_host.manager import get_registry

    runtime, _, precision = variant.partition("-")
    names = runtime_names()
    if runtime not in names:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {', '.join(names)}")
    return get_registry().get("runtimes", runtime)(spec, precision, cache, device)


def _timed_outputs(runner: ModelRunner, inputs: Sequence[tuple[np.ndarray, ...]]
                   ) -> tuple[list[tuple[np.ndarray, ...]], float]:
    """Outputs for every input and the median warm time in ms (the first call warms up)."""
    runner(*inputs[0])
    outputs, times = [], []
    for example in inputs:
        start = time.perf_counter()
        outputs.append(runner(*example))
        times.append((time.perf_counter() - start) * 1000.0)
    return outputs, statistics.median(times)


def _decision_key(spec: ModelSpec, variants: list[str], check: SelfCheck, device: str) -> str:
    import torch

    from annotator.engine.runtime.cpu import machine_signature
    from annotator.engine.runtime.onnx_runner import onnxruntime_version
    from annotator.engine.runtime.openvino_runner import openvino_version

    payload = {"v": SELECT_VERSION, "part": spec.part, "sha": spec.model_sha256,
               "shapes": spec.input_shapes(), "export": spec.export_version, "variants": variants,
               "check": [check.identity, check.min_mean, check.min_each, len(check.inputs)],
               "device": device, "machine": machine_signature(), "torch": torch.__version__,
               "onnxruntime": onnxruntime_version(), "openvino": openvino_version()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=list).encode()).hexdigest()


# Decisions live in the trust folder, outside the cache: a choice is a claim of accuracy.
def _read_decision(cache: CompiledModelCache, key: str) -> str | None:
    path = cache.trust_dir / "selections" / f"{key[:32]}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return str(data["variant"]) if data.get("key") == key else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_decision(cache: CompiledModelCache, key: str, variant: str,
                    results: list[VariantResult]) -> None:
    from annotator.core.atomic import atomic_write_text

    path = cache.trust_dir / "selections" / f"{key[:32]}.json"
    atomic_write_text(path, json.dumps({"key": key, "variant": variant,
                                        "results": [asdict(r) for r in results]}, indent=1))


def check_variants(spec: ModelSpec, variants: Sequence[str], check: SelfCheck,
                   cache: CompiledModelCache, device: str = "cpu", *, stop_at_first: bool = True,
                   require_faster: bool = True) -> tuple[list[VariantResult], dict[str, ModelRunner]]:
    """Run the self-check on each variant against torch fp32 (in the order given)."""
    if not check.inputs:
        raise ValueError("self-check needs at least one input")
    reference_runner = build_runner("torch-fp32", spec, cache, device)
    reference, reference_ms = _timed_outputs(reference_runner, check.inputs)
    results = [VariantResult("torch-fp32", True, 1.0, 1.0, reference_ms)]
    runners: dict[str, ModelRunner] = {"torch-fp32": reference_runner}
    for variant in variants:
        if variant == "torch-fp32":
            continue
        try:
            runner = build_runner(variant, spec, cache, device)
            outputs, ms = _timed_outputs(runner, check.inputs)
        except Exception as exc:  # noqa: BLE001 - a runtime that cannot run this model is skipped
            log.warning("%s: %s unavailable (%s: %s)", spec.part, variant, type(exc).__name__, exc)
            results.append(VariantResult(variant, False, error=f"{type(exc).__name__}: {exc}"))
            continue
        scores = [float(s) for i, (r, c) in enumerate(zip(reference, outputs, strict=True))
                  for s in check.scores(i, r, c)]
        mean, low = float(np.mean(scores)), float(np.min(scores))
        accurate = mean >= check.min_mean and low >= check.min_each
        faster = ms < reference_ms or not require_faster
        error = None if accurate and faster else (
            f"agreement mean {mean:.4f} / min {low:.4f} (needs {check.min_mean} / {check.min_each})"
            if not accurate else f"not faster than torch-fp32 ({ms:.0f} ms vs {reference_ms:.0f} ms)")
        results.append(VariantResult(variant, accurate and faster, mean, low, ms, error))
        log.info("%s self-check %s: mean %.4f min %.4f, %.0f ms (torch-fp32 %.0f ms)%s", spec.part,
                 variant, mean, low, ms, reference_ms, "" if error is None else f": {error}")
        if accurate and faster:
            runners[variant] = runner
            if stop_at_first:
                break
    return results, runners


def sample_agrees(spec: ModelSpec, runner: ModelRunner, check: SelfCheck, cache: CompiledModelCache,
                  device: str = "cpu") -> bool:
    """Re-verify a stored choice on load: its outputs on the check's first input still agree with
    torch fp32's (two model calls; a cache hit never skips the accuracy check entirely)."""
    reference = build_runner("torch-fp32", spec, cache, device)(*check.inputs[0])
    scores = [float(s) for s in check.scores(0, reference, runner(*check.inputs[0]))]
    return bool(scores) and float(np.mean(scores)) >= check.min_mean and min(scores) >= check.min_each


def select_runner(spec: ModelSpec, *, runtime: str = "auto", check: SelfCheck | None = None,
                  cache: CompiledModelCache | None = None, device: str = "cpu",
                  require_faster: bool = True, stored_only: bool = False) -> Selection | None:
    """The runner to use for spec on this machine.

    runtime: "auto" (fastest passing variant), a runtime name ("onnxruntime", "openvino": its
    fastest passing precision, else its fp32; "torch": the fp32 reference), or an exact variant
    ("openvino-bf16": used as asked, no check). require_faster=False drops the "faster than
    torch fp32" condition (tests on toy models, where timings mean nothing).
    stored_only=True: use a choice stored by an earlier check, or return None without checking
    (the window starts on torch at once and lets a background process do the slow first check).
    """
    cache = cache or CompiledModelCache()
    if "-" in runtime:
        if runtime.split("-", 1)[0] not in runtime_names():
            raise ValueError(f"unknown runtime {runtime!r}")
        return Selection(build_runner(runtime, spec, cache, device))
    if runtime != "auto" and runtime not in runtime_names():
        raise ValueError(f"unknown runtime {runtime!r}; expected auto, {', '.join(runtime_names())}")
    if runtime != "auto" and runtime not in installed_runtimes():
        raise ValueError(f"runtime {runtime!r} is not installed (pip install annotator[fast])")
    variants = [v for v in candidate_variants(device) if spec.fp32_scopes or not v.endswith("-bf16mix")]
    if runtime == "torch":
        variants = ["torch-fp32"]  # forcing torch asks for the reference itself ("torch-bf16" to opt in)
    elif runtime != "auto":
        variants = [v for v in variants if v.startswith(runtime + "-")] or [runner_name(runtime, "fp32")]
    if variants == ["torch-fp32"]:
        return Selection(build_runner("torch-fp32", spec, cache, device))
    check = check or SelfCheck(inputs=[spec.example_inputs], scores=relative_error_scores,
                               identity="relative-error")
    key = _decision_key(spec, variants, check, device)
    decided = _read_decision(cache, key)
    if decided is not None:
        try:
            runner = build_runner(decided, spec, cache, device)
            if decided == "torch-fp32" or sample_agrees(spec, runner, check, cache, device):
                return Selection(runner, from_cache=True)
            log.warning("%s: stored runtime choice %s no longer agrees with torch fp32 on the check's "
                        "first input; checking again", spec.part, decided)
        except Exception as exc:  # noqa: BLE001 - a stored choice that no longer loads is re-checked
            log.warning("%s: stored runtime choice %s failed (%s); checking again", spec.part, decided, exc)
    if stored_only:
        return None
    results, runners = check_variants(spec, variants, check, cache, device,
                                      require_faster=require_faster)
    passed = [r.variant for r in results[1:] if r.passed]
    if passed:
        chosen = passed[0]
    elif runtime == "auto":
        chosen = "torch-fp32"
    else:
        chosen = runner_name(runtime, "fp32")
        log.warning("%s: forced runtime %s failed its self-check; using %s as asked",
                    spec.part, runtime, chosen)
    runner = runners.get(chosen) or build_runner(chosen, spec, cache, device)
    _write_decision(cache, key, chosen, results)
    log.info("%s runs on %s", spec.part, chosen)
    return Selection(runner, results)
