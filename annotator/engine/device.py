"""Where the model runs: CUDA, then Apple MPS, then CPU; half precision on GPUs; one line for the status bar."""

from __future__ import annotations

import logging

from annotator.engine.api import EngineError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cuda", "mps", "cpu")


def torch_usable() -> bool:
    """True when torch imports on this machine (the classical engine is the fallback otherwise)."""
    try:
        import torch  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install may raise anything
        return False
    return True


def pick_device(requested: str = "auto") -> str:
    """"cuda", "mps" or "cpu": the requested one if available, or the best available for "auto"."""
    import torch

    requested = (requested or "auto").lower()
    base = requested.split(":")[0]
    if base not in DEVICES:
        raise EngineError(f"unknown device {requested!r}; expected one of {', '.join(DEVICES)}")
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if base == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if base == "cuda" and not cuda:
        raise EngineError("device 'cuda' requested but torch sees no CUDA GPU")
    if base == "mps" and not mps:
        raise EngineError("device 'mps' requested but this torch build has no usable MPS backend")
    return requested


def use_half(device: str, precision: str = "auto") -> bool:
    """fp16 where it is fast and safe: CUDA GPUs (autocast). "fp32"/"fp16" force the choice."""
    if precision == "fp16":
        if device.startswith("cpu"):
            raise EngineError("fp16 is not supported on the CPU; use fp32")
        return True
    if precision == "fp32":
        return False
    if precision != "auto":
        raise EngineError(f"unknown precision {precision!r}; expected auto, fp16 or fp32")
    return device.startswith("cuda")


def describe_device(device: str, half: bool) -> str:
    """Human-readable device and precision, e.g. "CUDA NVIDIA H100 (fp16)" or "CPU, 2 threads (fp32)"."""
    import torch

    precision = "fp16" if half else "fp32"
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        return f"CUDA {torch.cuda.get_device_name(index)} ({precision})"
    if device.startswith("mps"):
        return f"Apple MPS ({precision})"
    return f"CPU, {torch.get_num_threads()} threads ({precision})"
