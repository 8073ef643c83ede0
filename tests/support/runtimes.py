"""What the runtime-layer tests share: which fast runtimes are installed (private cache and config
folders come from tests/conftest.py for every test)."""

from __future__ import annotations

import importlib.util

import pytest

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
HAS_OV = importlib.util.find_spec("openvino") is not None and HAS_ORT
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnx/onnxruntime not installed (the `fast` extra)")
needs_ov = pytest.mark.skipif(not HAS_OV, reason="openvino not installed (the `fast` extra)")

