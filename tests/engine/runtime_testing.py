"""What the runtime-layer tests share: which fast runtimes are installed, and private cache/config
folders, so compiled models and stored runtime choices never touch the user's own."""

from __future__ import annotations

import importlib.util

import pytest

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
HAS_OV = importlib.util.find_spec("openvino") is not None and HAS_ORT
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnx/onnxruntime not installed (the `fast` extra)")
needs_ov = pytest.mark.skipif(not HAS_OV, reason="openvino not installed (the `fast` extra)")


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    """Autouse in every module that imports it."""
    monkeypatch.setenv("ANNOTATOR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ANNOTATOR_CONFIG_DIR", str(tmp_path / "config"))
