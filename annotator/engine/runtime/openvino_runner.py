"""OpenVINO on the CPU: the cached ONNX export compiled at fp32 or bf16, the compiled blob cached.

OpenVINO picks bf16 by itself on CPUs that have it, so fp32 is requested explicitly through the
INFERENCE_PRECISION_HINT; the compiled model is exported (export_model) and cached per precision,
OpenVINO version and CPU, so later starts import it instead of compiling again.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from annotator.engine.runtime.base import ModelSpec, runner_name
from annotator.engine.runtime.cache import ArtifactKey, CompiledModelCache

log = logging.getLogger(__name__)
BLOB_FILE = "compiled.blob"
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
                              ("dynamic", repr(sorted(spec.dynamic_axes.items())))))


class OpenVinoRunner:
    """A compiled OpenVINO model on one precision."""

    runtime = "openvino"

    def __init__(self, compiled, spec: ModelSpec, precision: str) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.output_ports = [compiled.output(name) for name in spec.output_names]
        self.precision = precision
        self.name = runner_name("openvino", precision)

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        results = self.request.infer([np.ascontiguousarray(a) for a in inputs], share_inputs=True)
        # copy: the request reuses its output buffers on the next call.
        return tuple(np.array(results[port], dtype=np.float32, copy=True) for port in self.output_ports)


def load_openvino_runner(spec: ModelSpec, onnx_path: Path, precision: str,
                         cache: CompiledModelCache, device: str = "CPU") -> OpenVinoRunner:
    """Compile the ONNX export for `precision` (or import the cached compiled blob)."""
    import openvino as ov

    if precision not in _OV_PRECISION:
        raise ValueError(f"openvino runner: unknown precision {precision!r}")
    core = ov.Core()

    def build(folder: Path) -> None:
        log.info("compiling %s for OpenVINO %s (first use; cached afterwards)", spec.part, precision)
        compiled = core.compile_model(core.read_model(str(onnx_path)), device, _config(precision))
        blob = compiled.export_model()  # bytes, or BytesIO in recent releases
        (folder / BLOB_FILE).write_bytes(blob.getvalue() if hasattr(blob, "getvalue") else blob)

    def load(folder: Path):
        return core.import_model((folder / BLOB_FILE).read_bytes(), device, _config(precision))

    compiled = cache.get_or_build(openvino_key(spec, precision, device), build, load)
    return OpenVinoRunner(compiled, spec, precision)
