"""The runtime layer under SAM/MedSAM engines (issue 8), on small random models built from
segment-anything's classes: the encoder and prompt path run on ONNX Runtime/OpenVINO with
torch's masks, the choice is stored and reused, and embeddings of different runtimes never mix."""

from __future__ import annotations

import numpy as np
import pytest
from support.runtimes import needs_ort, needs_ov
from support.sam_models import build_tiny_sam, save_tiny_checkpoint

from annotator.engine.runtime.compiled_cache import CompiledModelCache

pytestmark = needs_ort


def _engine(flavour: str = "sam", seed: int = 0):
    from annotator.engine.sam_engine import SamEngine

    return SamEngine(build_tiny_sam(seed), model_id=f"tiny-{flavour}-{seed}", model_sha256=f"{seed:02d}" * 32,
                     flavour=flavour, device="cpu")


def _slice(seed: int = 0) -> np.ndarray:
    from annotator.engine.runtime.selfcheck import phantom_slices

    image, boxes = phantom_slices(1, shape_hw=(200, 240), seed=seed)[0]
    return image, boxes


def _prompts(boxes, shape_hw):
    h, w = shape_hw
    box = boxes[0]
    centre = np.array([[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]])
    return [dict(box_xyxy=box), dict(points_xy=centre, point_labels=np.array([1])),
            dict(points_xy=np.vstack([centre, [[w * 0.8, h * 0.2]]]), point_labels=np.array([1, 0]), box_xyxy=box)]


@pytest.mark.parametrize("flavour", ["sam", "medsam"])
def test_forced_onnxruntime_encoder_and_prompt_path_give_torch_masks(flavour, tmp_path):
    from annotator.engine.runtime.sam_runtime import accelerate_sam

    image, boxes = _slice()
    reference = _engine(flavour)
    fast = _engine(flavour)
    selection = accelerate_sam(fast, "onnxruntime-fp32", cache=CompiledModelCache(tmp_path))
    assert selection.name == "onnxruntime-fp32"
    assert fast.runtime == "onnxruntime-fp32"
    assert fast._prompt_runner is not None
    assert fast.accepts_runtimes == ()  # torch-made features in the cache are not this runtime's
    ref_embedding, embedding = reference.embed(image), fast.embed(image)
    np.testing.assert_allclose(embedding.features, ref_embedding.features, rtol=1e-3, atol=1e-4)
    for prompt in _prompts(boxes, image.shape[:2]):
        for multimask in (False, True):
            want = reference.predict(ref_embedding, multimask=multimask, **prompt)
            got = fast.predict(ref_embedding, multimask=multimask, **prompt)  # same features: prompt path alone
            assert got.masks.shape == want.masks.shape
            assert np.mean(got.masks == want.masks) > 0.999
            np.testing.assert_allclose(got.low_res_logits, want.low_res_logits, rtol=1e-3, atol=1e-3)
            np.testing.assert_allclose(got.scores, want.scores, rtol=1e-3, atol=1e-3)
    refined_want = reference.predict(ref_embedding, box_xyxy=boxes[1], mask_input=want.low_res_logits[:1],
                                     multimask=False)
    refined_got = fast.predict(ref_embedding, box_xyxy=boxes[1], mask_input=want.low_res_logits[:1], multimask=False)
    np.testing.assert_allclose(refined_got.low_res_logits, refined_want.low_res_logits, rtol=1e-3, atol=1e-3)


def test_auto_choice_is_checked_stored_and_reloaded_without_export(tmp_path):
    from annotator.engine.runtime.sam_runtime import accelerate_sam, encoder_self_check

    engine = _engine()
    check = encoder_self_check(engine, count=1)
    first = accelerate_sam(engine, "auto", cache=CompiledModelCache(tmp_path), check=check, require_faster=False)
    assert not first.from_cache
    assert first.name != "torch-fp32"  # a random tiny ViT agrees with itself on any fp32 runtime
    assert engine.runtime == first.name
    assert {r.variant for r in first.results} >= {"torch-fp32", first.name}
    restart = CompiledModelCache(tmp_path)
    again = _engine()
    second = accelerate_sam(again, "auto", cache=restart, check=encoder_self_check(again, count=1),
                            stored_only=True)
    assert second.from_cache
    assert second.name == first.name
    assert again.runtime == first.name
    assert restart.stats.builds == 0


def test_stored_only_leaves_the_engine_on_torch_until_a_check_ran(tmp_path):
    from annotator.engine.runtime.sam_runtime import accelerate_sam

    engine = _engine(seed=4)
    assert accelerate_sam(engine, "auto", cache=CompiledModelCache(tmp_path), stored_only=True) is None
    assert engine.runtime == "torch-fp32"
    assert engine._prompt_runner is None


def test_factory_loads_a_sam_checkpoint_on_the_runtime_asked_for(tmp_path):
    from annotator.engine.api import EngineError
    from annotator.engine.factory import create_engine

    checkpoint = save_tiny_checkpoint(tmp_path / "sam_tiny.pth", seed=2, depth=1)
    engine = create_engine("sam", checkpoint=checkpoint, runtime="onnxruntime-fp32", device="cpu")
    assert engine.runtime == "onnxruntime-fp32"
    assert "[onnxruntime-fp32]" in engine.description
    with pytest.raises(EngineError, match="unknown runtime 'tensorflow'"):
        create_engine("sam", checkpoint=checkpoint, runtime="tensorflow", device="cpu")


def test_sam_encoder_declares_a_clean_fp32_stem(tmp_path):
    from annotator.engine.runtime.onnx_runner import cached_onnx_path
    from annotator.engine.runtime.onnx_split import split_onnx
    from annotator.engine.runtime.sam_runtime import FP32_STEM, encoder_spec

    spec = encoder_spec(_engine())
    assert spec.fp32_scopes == FP32_STEM
    whole = cached_onnx_path(spec, CompiledModelCache(tmp_path))
    cut = split_onnx(whole, FP32_STEM, tmp_path / "h.onnx", tmp_path / "t.onnx")
    assert cut.startswith("/blocks.0/")


@needs_ov
def test_openvino_runs_the_sam_encoder(tmp_path):
    from annotator.engine.runtime.sam_runtime import accelerate_sam

    image, _ = _slice(1)
    reference = _engine()
    fast = _engine()
    accelerate_sam(fast, "openvino-fp32", cache=CompiledModelCache(tmp_path))
    assert fast.runtime == "openvino-fp32"
    np.testing.assert_allclose(fast.embed(image).features, reference.embed(image).features, rtol=1e-3, atol=1e-4)


def test_window_flow_for_sam_background_check_then_stored_choice(tmp_path):
    """What the window does with a SAM checkpoint: load on torch at once ("auto-stored" finds
    nothing), run the background preparation (here in-process), and the next start loads the
    stored fast runtime without checking again."""
    from annotator.engine.factory import create_engine
    from annotator.engine.runtime import prepare

    checkpoint = save_tiny_checkpoint(tmp_path / "sam_tiny.pth", seed=5, depth=1)
    first = create_engine("sam", checkpoint=checkpoint, runtime="auto-stored", device="cpu")
    assert first.runtime_pending
    assert first.runtime == "torch-fp32"
    assert prepare.main(["auto", "sam", str(checkpoint)]) == 0
    second = create_engine("sam", checkpoint=checkpoint, runtime="auto-stored", device="cpu")
    assert not second.runtime_pending
    assert second.runtime != "torch-fp32" or not _fast_runtime_beats_torch(tmp_path)
    image, boxes = _slice(2)
    want = first.predict(first.embed(image), box_xyxy=boxes[0], multimask=False)
    got = second.predict(second.embed(image), box_xyxy=boxes[0], multimask=False)
    assert np.mean(got.masks == want.masks) > 0.99


def _fast_runtime_beats_torch(tmp_path) -> bool:
    """Whether the stored decision found a variant that passed (it must also be faster than torch,
    which a tiny model on a busy machine may not be): read from the stored selection files."""
    import json
    import os
    from pathlib import Path

    root = Path(os.environ["ANNOTATOR_CACHE_DIR"])
    for path in root.rglob("selections/*.json"):
        results = json.loads(path.read_text()).get("results", [])
        if any(r["passed"] and r["variant"] != "torch-fp32" for r in results):
            return True
    return False
