"""Mixed precision (bf16mix): the exported graph is cut after the model's fp32 stem, the halves
compose to the whole, the cut is refused when it is not clean, and OpenVINO runs stem fp32 + rest bf16."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.runtimes import needs_ort, needs_ov

from annotator.engine.runtime import cpu
from annotator.engine.runtime.base import ModelSpec
from annotator.engine.runtime.compiled_cache import CompiledModelCache

pytestmark = needs_ort


@pytest.fixture(scope="module")
def tiny_vit():
    """segment-anything's ImageEncoderViT, one block, 64x64: patch_embed is its stem."""
    import torch

    from annotator.engine._torchvision_compat import ensure_torchvision

    ensure_torchvision()
    from segment_anything.modeling import ImageEncoderViT

    torch.manual_seed(3)
    return ImageEncoderViT(img_size=64, patch_size=16, embed_dim=32, depth=1, num_heads=2, out_chans=16,
                           use_rel_pos=True, window_size=2, global_attn_indexes=(0,)).eval()


def _spec(module, scopes=("patch_embed",), sha="12" * 32) -> ModelSpec:
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    return ModelSpec(module=module, part="test.mixed", model_sha256=sha, example_inputs=(x,),
                     input_names=("image",), output_names=("features",), fp32_scopes=scopes)


def _ort(path: Path, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def test_split_halves_compose_to_the_whole_model(tiny_vit, tmp_path):
    import onnx

    from annotator.engine.runtime.onnx_runner import cached_onnx_path
    from annotator.engine.runtime.onnx_split import split_onnx

    spec = _spec(tiny_vit)
    whole = cached_onnx_path(spec, CompiledModelCache(tmp_path / "c"))
    head, tail = tmp_path / "head.onnx", tmp_path / "tail.onnx"
    cut = split_onnx(whole, ("patch_embed",), head, tail)
    head_nodes = [n for n in onnx.load(str(head)).graph.node if n.op_type != "Constant"]
    assert head_nodes
    assert all(n.name.startswith("/patch_embed/") for n in head_nodes)
    tail_nodes = [n.name for n in onnx.load(str(tail)).graph.node]
    assert not any(name.startswith("/patch_embed/") for name in tail_nodes)
    x = spec.example_inputs[0]
    (full,) = _ort(whole, {"image": x})
    (middle,) = _ort(head, {"image": x})
    (composed,) = _ort(tail, {cut: middle})
    np.testing.assert_allclose(composed, full, rtol=1e-5, atol=1e-5)


def test_split_refuses_a_scope_the_graph_does_not_have(tiny_vit, tmp_path):
    from annotator.engine.runtime.onnx_runner import cached_onnx_path
    from annotator.engine.runtime.onnx_split import split_onnx

    whole = cached_onnx_path(_spec(tiny_vit), CompiledModelCache(tmp_path / "c"))
    with pytest.raises(ValueError, match=r"model\.onnx.*no node belongs to stem"):
        split_onnx(whole, ("stem",), tmp_path / "h.onnx", tmp_path / "t.onnx")


def test_split_refuses_a_cut_crossed_by_two_tensors(tmp_path):
    import torch

    from annotator.engine.runtime.onnx_runner import cached_onnx_path
    from annotator.engine.runtime.onnx_split import split_onnx

    class Stem(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return self.a(x), self.b(x)

    class TwoWay(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.body = Stem(), torch.nn.Conv2d(4, 2, 1)

        def forward(self, x):
            a, b = self.stem(x)
            return self.body(a * b)

    torch.manual_seed(0)
    whole = cached_onnx_path(_spec(TwoWay().eval(), ("stem",)), CompiledModelCache(tmp_path / "c"))
    with pytest.raises(ValueError, match="2 tensors cross the end of stem"):
        split_onnx(whole, ("stem",), tmp_path / "h.onnx", tmp_path / "t.onnx")


@needs_ov
def test_openvino_bf16mix_runs_the_stem_in_fp32_the_rest_in_bf16_and_is_cached(tiny_vit, tmp_path):
    from annotator.engine.runtime.select import build_runner

    spec = _spec(tiny_vit)
    x = spec.example_inputs[0]
    cache = CompiledModelCache(tmp_path / "c")
    reference = build_runner("torch-fp32", spec, cache)(x)[0]
    runner = build_runner("openvino-bf16mix", spec, cache)
    assert runner.name == "openvino-bf16mix"
    out = runner(x)[0]
    assert out.shape == reference.shape
    assert out.dtype == np.float32
    error = np.linalg.norm(out - reference) / np.linalg.norm(reference)
    assert error < 0.05
    if cpu.cpu_supports_bf16():
        assert error > 1e-5  # the tail really runs in bf16
    restart = CompiledModelCache(tmp_path / "c")
    again = build_runner("openvino-bf16mix", spec, restart)
    assert restart.stats.builds == 0
    assert restart.stats.hits == 2
    np.testing.assert_array_equal(again(x)[0], out)


@needs_ov
def test_bf16mix_needs_a_declared_stem(tiny_vit, tmp_path, monkeypatch):
    from annotator.engine.runtime import select

    with pytest.raises(ValueError, match="no fp32 stem declared"):
        select.build_runner("openvino-bf16mix", _spec(tiny_vit, scopes=()), CompiledModelCache(tmp_path / "c"))
    monkeypatch.setattr(select, "candidate_variants",
                        lambda device="cpu": ["openvino-bf16mix", "onnxruntime-fp32", "torch-fp32"])
    check = select.SelfCheck(inputs=[_spec(tiny_vit).example_inputs], scores=select.relative_error_scores,
                             min_mean=0.999, min_each=0.999, identity="t")
    picked = select.select_runner(_spec(tiny_vit, scopes=()), check=check,
                                  cache=CompiledModelCache(tmp_path / "d"), require_faster=False)
    assert "openvino-bf16mix" not in {r.variant for r in picked.results}
    assert picked.name == "onnxruntime-fp32"


def test_lite_medsam_declares_its_fp32_stem():
    from annotator.engine.lite_medsam.tiny_vit import TinyViT
    from annotator.engine.runtime.lite_medsam_runtime import FP32_STEM

    names = {name for name, _ in TinyViT().named_modules()}
    assert set(FP32_STEM) <= names


@needs_ov
def test_corrupt_bf16mix_blob_is_rebuilt_not_trusted(tiny_vit, tmp_path):
    from annotator.engine.runtime.openvino_runner import TAIL_BLOB
    from annotator.engine.runtime.select import build_runner

    spec = _spec(tiny_vit, sha="34" * 32)
    x = spec.example_inputs[0]
    expected = build_runner("openvino-bf16mix", spec, CompiledModelCache(tmp_path / "c"))(x)[0]
    (tail,) = (tmp_path / "c").rglob(TAIL_BLOB)
    tail.write_bytes(b"\0" * 64)
    again = CompiledModelCache(tmp_path / "c")
    out = build_runner("openvino-bf16mix", spec, again)(x)[0]
    assert again.stats.rebuilt_corrupt == 1
    assert again.stats.builds == 1
    np.testing.assert_array_equal(out, expected)
