"""OpenVINO on the CPU: the cached ONNX export compiled at fp32, bf16 or bf16mix, the compiled blob cached.

OpenVINO picks bf16 by itself on CPUs that have it, so fp32 is requested explicitly through the
INFERENCE_PRECISION_HINT; the compiled model is exported (export_model) and cached per precision,
OpenVINO version and CPU, so later starts import it instead of compiling again. "bf16mix" runs the
model's fp32_scopes as an fp32 model and the rest as a bf16 one (see onnx_split.py).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from annotator.engine.runtime.base import ModelSpec, runner_name
from annotator.engine.runtime.compiled_cache import ArtifactKey, CompiledModelCache

log = logging.getLogger(__name__)
BLOB_FILE = "compiled.blob"
HEAD_BLOB, TAIL_BLOB, CUT_FILE = "head.blob", "tail.blob", "cut.txt"
_OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


def openvino_version() -> str | None:
    try:
        import openvino
    except ImportError:
        return None
    return str(openvino.get_version())


def _config(precision: str) -> dict[str, str]:
    return {"INFERENCE_PRECISION_HINT": _OV_PRECISION[precision], "PERFORMANCE_HINT": "LATENCY"}


def openvino_key(spec: ModelSpec, precision: str, device: str) -> ArtifactKey:
    from annotator.engine.runtime.cpu import machine_signature

    machine = machine_signature()
    return ArtifactKey(part=spec.part, model_sha256=spec.model_sha256, runtime="openvino",
                       runtime_version=f"openvino {openvino_version()} v{spec.export_version}",
                       precision=precision, input_shapes=spec.input_shapes(),
                       extra=(("device", device), ("cpu", str(machine["cpu"])),
                              ("dynamic", repr(sorted(spec.dynamic_axes.items()))),
                              ("fp32_scopes", ",".join(spec.fp32_scopes) if precision == "bf16mix" else "")))


CANCEL_POLL_MS = 5


def _infer(request: Any, inputs: list[Any], cancel: threading.Event | None) -> Any:
    """request.infer, or where a `cancel` event is given, run asynchronously and stop within a few
    ms of it being set (OpenVINO's InferRequest.cancel; the request stays usable), raising
    EmbeddingCancelled: a prompt never waits for background work it does not need."""
    if cancel is None:
        return request.infer(inputs, share_inputs=True)
    from annotator.engine.service import EmbeddingCancelled

    if cancel.is_set():
        raise EmbeddingCancelled("cancelled before the encoder started")
    request.start_async(inputs, share_inputs=True)
    while not request.wait_for(CANCEL_POLL_MS):
        if cancel.is_set():
            request.cancel()
            try:
                request.wait()
            except RuntimeError:  # "Infer Request was canceled": the outcome asked for
                pass
            raise EmbeddingCancelled("encoder interrupted")
    return request.results


class OpenVinoRunner:
    """A compiled OpenVINO model on one precision."""

    runtime = "openvino"
    cancellable = True  # __call__ takes cancel=

    def __init__(self, compiled: Any, spec: ModelSpec, precision: str) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.output_ports = [compiled.output(name) for name in spec.output_names]
        self.precision = precision
        self.name = runner_name("openvino", precision)

    def __call__(self, *inputs: np.ndarray, cancel: threading.Event | None = None) -> tuple[np.ndarray, ...]:
        results = _infer(self.request, [np.ascontiguousarray(a) for a in inputs], cancel)
        # copy: the request reuses its output buffers on the next call.
        return tuple(np.array(results[port], dtype=np.float32, copy=True) for port in self.output_ports)


class SplitOpenVinoRunner:
    """bf16mix: the fp32 head model, then the bf16 tail model on the one tensor between them."""

    runtime = "openvino"
    precision = "bf16mix"
    name = runner_name("openvino", "bf16mix")
    cancellable = True

    def __init__(self, head: Any, tail: Any, spec: ModelSpec) -> None:
        self.head = head.create_infer_request()
        self.tail = tail.create_infer_request()
        self.head_port = head.output(0)
        self.output_ports = [tail.output(name) for name in spec.output_names]

    def __call__(self, *inputs: np.ndarray, cancel: threading.Event | None = None) -> tuple[np.ndarray, ...]:
        middle = _infer(self.head, [np.ascontiguousarray(a) for a in inputs], cancel)[self.head_port]
        results = _infer(self.tail, [middle], cancel)
        return tuple(np.array(results[port], dtype=np.float32, copy=True) for port in self.output_ports)


def _blob_bytes(compiled: Any) -> bytes:
    blob = compiled.export_model()  # bytes, or BytesIO in recent releases
    return blob.getvalue() if hasattr(blob, "getvalue") else blob


def load_openvino_runner(spec: ModelSpec, onnx_path: Path, precision: str,
                         cache: CompiledModelCache, device: str = "CPU") -> OpenVinoRunner | SplitOpenVinoRunner:
    """Compile the ONNX export for `precision` (or import the cached compiled blob)."""
    import openvino as ov

    if precision == "bf16mix":
        return _load_split_runner(spec, onnx_path, cache, device)
    if precision not in _OV_PRECISION:
        raise ValueError(f"openvino runner: unknown precision {precision!r}")
    core = ov.Core()

    def build(folder: Path) -> None:
        log.info("compiling %s for OpenVINO %s (first use; cached afterwards)", spec.part, precision)
        compiled = core.compile_model(core.read_model(str(onnx_path)), device, _config(precision))
        (folder / BLOB_FILE).write_bytes(_blob_bytes(compiled))

    def load(folder: Path) -> Any:
        return core.import_model((folder / BLOB_FILE).read_bytes(), device, _config(precision))

    compiled = cache.get_or_build(openvino_key(spec, precision, device), build, load)
    return OpenVinoRunner(compiled, spec, precision)


def _load_split_runner(spec: ModelSpec, onnx_path: Path, cache: CompiledModelCache,
                       device: str) -> SplitOpenVinoRunner:
    import tempfile

    import openvino as ov

    from annotator.engine.runtime.onnx_split import split_onnx

    if not spec.fp32_scopes:
        raise ValueError(f"{spec.part}: no fp32 stem declared, so no bf16mix precision")
    core = ov.Core()

    def build(folder: Path) -> None:
        log.info("compiling %s for OpenVINO bf16 with %s in fp32 (first use; cached afterwards)",
                 spec.part, ", ".join(spec.fp32_scopes))
        with tempfile.TemporaryDirectory(prefix="annotator-split-") as tmp:
            head, tail = Path(tmp) / "head.onnx", Path(tmp) / "tail.onnx"
            cut = split_onnx(onnx_path, spec.fp32_scopes, head, tail)
            for path, blob, precision in ((head, HEAD_BLOB, "fp32"), (tail, TAIL_BLOB, "bf16")):
                compiled = core.compile_model(core.read_model(str(path)), device, _config(precision))
                (folder / blob).write_bytes(_blob_bytes(compiled))
        (folder / CUT_FILE).write_text(cut, encoding="utf-8")

    def load(folder: Path) -> SplitOpenVinoRunner:
        head = core.import_model((folder / HEAD_BLOB).read_bytes(), device, _config("fp32"))
        tail = core.import_model((folder / TAIL_BLOB).read_bytes(), device, _config("bf16"))
        return SplitOpenVinoRunner(head, tail, spec)

    return cache.get_or_build(openvino_key(spec, "bf16mix", device), build, load)
