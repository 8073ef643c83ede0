"""ONNX export of a loaded torch module (cached) and an ONNX Runtime session running it.

The graph holds only the network: cropping and resizing stay outside in numpy/OpenCV, because
the exporter freezes any size it reads from the example input (torch 2.13), which would bake
one slice shape into the file.
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
OPSET = 17
ONNX_FILE = "model.onnx"
CANCEL_POLL_S = 0.005  # how often a cancellable run looks at its cancel event


def onnx_key(spec: ModelSpec) -> ArtifactKey:
    import torch

    return ArtifactKey(part=spec.part, model_sha256=spec.model_sha256, runtime="onnx",
                       runtime_version=f"torch {torch.__version__} opset {OPSET} v{spec.export_version}",
                       precision="fp32", input_shapes=spec.input_shapes(),
                       extra=tuple(sorted((k, repr(v)) for k, v in spec.dynamic_axes.items())))


def export_onnx(spec: ModelSpec, path: Path) -> None:
    """Export spec.module (fp32, eval) to an ONNX file at `path` with the TorchScript exporter.

    The TorchScript exporter (dynamo=False) is used because it needs no onnxscript and keeps
    SAM-style graphs intact; fixed shapes except spec.dynamic_axes.
    """
    import warnings

    import torch

    module = spec.module
    if module.training:
        raise ValueError(f"{spec.part}: export needs a module in eval mode")
    example = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in spec.example_inputs)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # The exporter warns about tracing Python control flow and its own deprecation; the
        # self-check compares the exported model with torch, which is the real guard.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(path), input_names=list(spec.input_names),
                          output_names=list(spec.output_names), dynamic_axes=spec.dynamic_axes or None,
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)


def cached_onnx_path(spec: ModelSpec, cache: CompiledModelCache) -> Path:
    """Path of the ONNX export of spec in the cache, exporting it on first use."""

    def build(folder: Path) -> None:
        log.info("exporting %s to ONNX (first use; cached afterwards)", spec.part)
        export_onnx(spec, folder / ONNX_FILE)

    def load(folder: Path) -> Path:
        import onnx

        path = folder / ONNX_FILE
        onnx.checker.check_model(str(path))  # raises on a truncated/garbled file
        return path

    return cache.get_or_build(onnx_key(spec), build, load)


class OnnxRuntimeRunner:
    """An ONNX Runtime session on one exported model (fp32; see select.py for why no int8)."""

    runtime = "onnxruntime"

    def __init__(self, onnx_path: Path, spec: ModelSpec, *, precision: str = "fp32",
                 threads: int = 0) -> None:
        import onnxruntime as ort

        if precision != "fp32":
            raise ValueError(f"onnxruntime runner: precision {precision!r} not offered (fp32 only)")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        # Idle intra-op threads would otherwise spin after each run, taking the CPU from torch
        # (prompt path, other engines) and the GUI on a laptop's few cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = list(spec.output_names)
        self.precision = precision
        self.name = runner_name("onnxruntime", precision)

    cancellable = True  # __call__ takes cancel=

    def __call__(self, *inputs: np.ndarray, cancel: threading.Event | None = None) -> tuple[np.ndarray, ...]:
        feeds = {name: np.ascontiguousarray(a) for name, a in zip(self.input_names, inputs, strict=True)}
        if cancel is None:
            outputs = self.session.run(self.output_names, feeds)
        else:
            outputs = _run_cancellable(self.session, self.output_names, feeds, cancel)
        return tuple(np.asarray(o, dtype=np.float32) for o in outputs)


def _run_cancellable(session: Any, output_names: list[str], feeds: dict[str, np.ndarray],
                     cancel: threading.Event) -> list[Any]:
    """session.run that stops soon after `cancel` is set: a watcher thread sets the run's terminate
    flag, which ONNX Runtime checks between nodes."""
    import onnxruntime as ort

    from annotator.engine.service import EmbeddingCancelled

    if cancel.is_set():
        raise EmbeddingCancelled("cancelled before the encoder started")
    options = ort.RunOptions()
    finished = threading.Event()

    def watch() -> None:
        while not finished.is_set():
            if cancel.wait(CANCEL_POLL_S):
                options.terminate = True
                return

    watcher = threading.Thread(target=watch, name="onnxruntime-cancel", daemon=True)
    watcher.start()
    try:
        return session.run(output_names, feeds, options)
    except Exception as exc:
        if cancel.is_set():  # the terminate flag's own error ("Exiting due to terminate flag ...")
            raise EmbeddingCancelled("encoder interrupted") from exc
        raise
    finally:
        finished.set()
        watcher.join()


def onnxruntime_version() -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return str(onnxruntime.__version__)
