"""What the runtime-layer tests share: which fast runtimes are installed (private cache and config
folders come from tests/conftest.py for every test)."""

from __future__ import annotations

import importlib.util

import pytest

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
HAS_OV = importlib.util.find_spec("openvino") is not None and HAS_ORT
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnx/onnxruntime not installed (the `fast` extra)")
needs_ov = pytest.mark.skipif(not HAS_OV, reason="openvino not installed (the `fast` extra)")



def slow_conv_model():
    """(module, input): ~50 GFLOP of plain convolutions, a few hundred ms on two cores: slow enough
    to interrupt mid-run, small enough for the suite."""
    import numpy as np
    import torch

    torch.manual_seed(2)
    layers = [torch.nn.Conv2d(3, 64, 3, padding=1)] + [torch.nn.Conv2d(64, 64, 3, padding=1) for _ in range(10)]
    module = torch.nn.Sequential(*layers).eval()
    return module, np.random.default_rng(0).random((1, 3, 192, 192), dtype=np.float32)


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
