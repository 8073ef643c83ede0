"""The one interface every runtime offers: numpy arrays in, numpy arrays out, and a name saying how."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

PRECISIONS = ("fp32", "bf16", "fp16", "bf16mix")  # bf16mix: bf16 after an fp32 stem (onnx_split.py)


def runner_name(runtime: str, precision: str) -> str:
    """The label used in EmbeddingKey.runtime, the status bar and `annotator` output."""
    return f"{runtime}-{precision}"


@runtime_checkable
class ModelRunner(Protocol):
    """A compiled/exported model part (image encoder, prompt path) on one runtime and precision.

    Called with numpy arrays in the order of ModelSpec.input_names; returns float32 arrays in
    the order of ModelSpec.output_names, whatever precision it computes in.
    """

    name: str
    runtime: str
    precision: str

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]: ...


@dataclass(frozen=True)
class ModelSpec:
    """What a runtime needs to export and key a torch module.

    module:        the torch module in eval mode (the fp32 reference)
    part:          what it is, e.g. "lite-medsam.encoder" (part of the cache key)
    model_sha256:  SHA-256 of the weights the module was loaded from (part of the cache key)
    example_inputs: one example per input, fixing shapes/dtypes (shapes are part of the cache key)
    dynamic_axes:  {input_or_output_name: {axis: "name"}} for axes that vary (e.g. number of points)
    fp32_scopes:   module names (e.g. ("patch_embed", "layers.0")) kept in fp32 by the "bf16mix"
                   precision; empty: the model offers no mixed precision
    """

    module: Any  # torch.nn.Module (torch is imported lazily)
    part: str
    model_sha256: str
    example_inputs: tuple[np.ndarray, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    export_version: int = 1  # bump when the exported graph of this part changes
    fp32_scopes: tuple[str, ...] = ()

    def input_shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(int(n) for n in a.shape) for a in self.example_inputs)


def run_encoder(encoder: Any, x: Any, cancel: Any = None) -> Any:
    """encoder(x), handing it the cancel event where it can stop mid-run (accepts_cancel)."""
    if cancel is not None and getattr(encoder, "accepts_cancel", False):
        return encoder(x, cancel=cancel)
    return encoder(x)
