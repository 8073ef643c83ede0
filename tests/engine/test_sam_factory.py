"""create_engine: names resolve to the right engine, lazily; explicit choices that cannot work
fail with one clear line; "auto" picks by checkpoint layout and falls back to classical."""

from __future__ import annotations

import pytest

from annotator.engine import factory
from annotator.engine.api import EngineError, PromptEngine
from annotator.engine.classical import ClassicalEngine


def test_classical_and_unknown_names():
    assert isinstance(factory.create_engine("classical"), ClassicalEngine)
    with pytest.raises(EngineError, match="unknown engine 'vit'"):
        factory.create_engine("vit")


def test_sam_needs_a_checkpoint():
    with pytest.raises(EngineError, match="needs a checkpoint"):
        factory.create_engine("sam")


class _FakeLite:
    calls: list = []

    @classmethod
    def load(cls, checkpoint=None, device="auto", runtime="auto"):
        cls.calls.append((checkpoint, device, runtime))
        return ClassicalEngine()


def test_lite_medsam_is_resolved_lazily_with_the_arguments(monkeypatch):
    monkeypatch.setattr(factory, "_lite_medsam_class", lambda: _FakeLite)
    _FakeLite.calls.clear()
    factory.create_engine("lite-medsam", device="cpu", runtime="torch")
    assert _FakeLite.calls == [(None, "cpu", "torch")]


def test_auto_uses_lite_medsam_or_falls_back_to_classical(monkeypatch):
    def unavailable():
        raise ImportError("no module named annotator.engine.lite_medsam")

    monkeypatch.setattr(factory, "_lite_medsam_class", unavailable)
    assert isinstance(factory.create_engine("auto"), ClassicalEngine)
    monkeypatch.setattr("annotator.engine.device.torch_usable", lambda: False)
    assert isinstance(factory.create_engine("auto"), ClassicalEngine)


def test_auto_with_a_sam_checkpoint_builds_a_sam_engine(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from support.sam_models import one_torch_thread, save_tiny_checkpoint

    from annotator.engine.sam_engine import SamEngine

    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pth")
    with one_torch_thread():
        engine = factory.create_engine("auto", checkpoint=checkpoint, device="cpu")
    assert isinstance(engine, SamEngine)
    assert isinstance(engine, PromptEngine)
    other = tmp_path / "lite.pth"
    torch.save({"image_encoder.layers.0.weight": torch.zeros(1)}, other)
    monkeypatch.setattr(factory, "_lite_medsam_class", lambda: _FakeLite)
    _FakeLite.calls.clear()
    factory.create_engine("auto", checkpoint=other, device="cpu")
    assert _FakeLite.calls == [(other, "cpu", "auto")]


def test_sam_flavour_is_passed_through(tmp_path):
    pytest.importorskip("torch")
    from support.sam_models import one_torch_thread, save_tiny_checkpoint

    checkpoint = save_tiny_checkpoint(tmp_path / "renamed.pth")
    with one_torch_thread():
        engine = factory.create_engine("sam", checkpoint=checkpoint, device="cpu", sam_flavour="medsam")
    assert engine.flavour == "medsam"
    assert engine.prompt_kind == "box"
    assert engine.model_id == "medsam-vit_custom_32x2"
