"""What the runtime-layer tests share: which fast runtimes are installed (private cache and config
folders come from tests/conftest.py for every test)."""

from __future__ import annotations

import importlib.util

import pytest

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
HAS_OV = importlib.util.find_spec("openvino") is not None and HAS_ORT
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnx/onnxruntime not installed (the `fast` extra)")
needs_ov = pytest.mark.skipif(not HAS_OV, reason="openvino not installed (the `fast` extra)")



def slow_conv_module():
    """Plain convolutions (3 -> 64 channels, then ten 64 -> 64), eval mode, fixed weights."""
    import torch

    torch.manual_seed(2)
    layers = [torch.nn.Conv2d(3, 64, 3, padding=1)] + [torch.nn.Conv2d(64, 64, 3, padding=1) for _ in range(10)]
    return torch.nn.Sequential(*layers).eval()


def slow_conv_model(target_s: float = 0.4):
    """(slow_conv_module(), input): the input is sized on this machine so that one torch run takes
    about `target_s` (at least 192 px a side): slow enough to interrupt mid-run on any CPU (a fixed
    192-px input ran in 0.09 s on a 2-core AVX-512 EPYC, too fast to show an interruption, and in a
    few hundred ms elsewhere), small enough for the suite."""
    import time

    import numpy as np
    import torch

    module = slow_conv_module()
    side = 192
    probe = torch.from_numpy(np.random.default_rng(0).random((1, 3, side, side), dtype=np.float32))
    with torch.inference_mode():
        module(probe)  # the first run pays for allocation and kernel choice
        start = time.perf_counter()
        module(probe)
        took = time.perf_counter() - start
    if took < target_s:  # the work grows with the area: scale the side by the square root
        side = min(1024, int(np.ceil(side * np.sqrt(target_s / max(took, 1e-3)) / 32.0)) * 32)
    return module, np.random.default_rng(0).random((1, 3, side, side), dtype=np.float32)


def assert_encoder_stops_on_cancel(encode, x, after_s: float = 0.02):
    """`encode` (an encoder call that accepts cancel=) runs to the end with an unset event, stops
    within half its run once the event is set `after_s` in, never starts with the event already
    set, and gives the same features afterwards. Returns those features."""
    import threading
    import time

    import numpy as np

    from annotator.engine.runtime.base import run_encoder
    from annotator.engine.service import EmbeddingCancelled

    assert encode.accepts_cancel
    start = time.perf_counter()
    full = run_encoder(encode, x, threading.Event())  # never set: runs to the end
    full_s = time.perf_counter() - start
    assert full_s > 0.1, f"the model ran in {full_s:.3f} s: too fast to show an interruption"
    cancel = threading.Event()
    threading.Timer(after_s, cancel.set).start()
    start = time.perf_counter()
    with pytest.raises(EmbeddingCancelled):
        run_encoder(encode, x, cancel)
    assert time.perf_counter() - start < after_s + 0.5 * full_s
    with pytest.raises(EmbeddingCancelled):
        run_encoder(encode, x, cancel)  # already set: never starts
    assert np.array_equal(run_encoder(encode, x, None), full)
    return full
