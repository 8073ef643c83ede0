"""The reference runtime: the torch module itself, in fp32 or under bf16/fp16 autocast."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from annotator.engine.runtime.base import runner_name


class TorchRunner:
    """Runs a torch module on numpy inputs; precision "bf16"/"fp16" uses torch.autocast.

    Autocast keeps weights in fp32 and runs matmuls/convolutions in the low precision, so the
    module is shared with the fp32 path (no second copy of the weights).
    """

    runtime = "torch"
    cancellable = True  # __call__ takes cancel= (stops between the module's blocks)

    def __init__(self, module: Any, *, precision: str = "fp32", device: str = "cpu") -> None:
        if precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"torch runner: unknown precision {precision!r}")
        if precision == "fp16" and device == "cpu":
            raise ValueError("torch runner: fp16 autocast is for GPUs; use bf16 on CPU")
        self.module = module
        self.precision = precision
        self.device = device
        self.name = runner_name("torch", precision)

    def __call__(self, *inputs: np.ndarray, cancel: threading.Event | None = None) -> tuple[np.ndarray, ...]:
        import torch

        from annotator.engine.runtime.torch_interrupt import interruptible

        tensors = [torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in inputs]
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        with torch.inference_mode(), torch.autocast(device_type, dtype=dtype or torch.float32,
                                                   enabled=dtype is not None), interruptible(self.module, cancel):
            outputs = self.module(*tensors)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return tuple(o.detach().float().cpu().numpy() for o in outputs)
