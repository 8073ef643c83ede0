"""Accuracy guard of the fast runtimes with the real LiteMedSAM weights on a real CT (issue 8): every
runtime/precision offered by default gives the evaluation protocol's box masks of torch fp32."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "labelled" / "ct_totalseg_abdomen_3mm"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None
                       and importlib.util.find_spec("openvino") is None,
                       reason="no fast runtime installed (the `fast` extra)"),
]


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    """Exports are the slow part: one cache for the whole module."""
    return tmp_path_factory.mktemp("compiled-models")


@pytest.fixture(scope="module")
def case():
    """The evaluation protocol's items on the shared CT, with torch fp32's box masks as reference."""
    if not DATA.is_dir():
        pytest.skip(f"{DATA} not present")
    from annotator.engine.lite_medsam.engine import LiteMedSamEngine
    from annotator.evaluate import protocol
    from annotator.io import load_volume, read_labels_onto

    volume = load_volume(DATA / "image.nii.gz")
    labels = read_labels_onto(volume, DATA / "labels.nii.gz").array
    names = {int(k): v for k, v in json.loads((DATA / "labels.json").read_text())["labels"].items()}
    slices_u8, _ = protocol.windowed_volume_u8(volume.array)
    items, _ = protocol.select_items(labels, names, 0, "axial")
    engine = LiteMedSamEngine.load(runtime="torch", device="cpu")
    prompts = []
    for item in items:
        truth = protocol.plane_slice(labels, 0, item.slice_index) == item.label
        prompts.append((item.slice_index, protocol.tight_box_xyxy(truth), truth))
    reference = _box_masks(engine, slices_u8, prompts)
    return engine, slices_u8, prompts, reference


def _box_masks(engine, slices_u8, prompts) -> list[np.ndarray]:
    """Step 0 of the evaluation protocol: one box, multimask off; each slice embedded once."""
    embeddings = {}
    masks = []
    for index, box, _ in prompts:
        if index not in embeddings:
            embeddings[index] = engine.embed(slices_u8[index])
        masks.append(engine.predict(embeddings[index], box_xyxy=box, multimask=False).best_mask)
    return masks


def _offered_variants() -> list[str]:
    from annotator.engine.runtime.select import candidate_variants

    return [v for v in candidate_variants("cpu") if v != "torch-fp32"]


@pytest.mark.parametrize("variant", _offered_variants())
def test_offered_runtime_gives_torch_fp32_masks(case, cache_root, variant):
    from annotator.engine.runtime.compiled_cache import CompiledModelCache
    from annotator.engine.runtime.lite_medsam_runtime import encoder_spec
    from annotator.engine.runtime.select import build_runner
    from annotator.evaluate.protocol import dice

    engine, slices_u8, prompts, reference = case
    runner = build_runner(variant, encoder_spec(engine), CompiledModelCache(cache_root))
    torch_encode, torch_runtime = engine._encoder, engine.runtime
    engine.set_encoder(lambda x: runner(x)[0], runner.name)
    try:
        masks = _box_masks(engine, slices_u8, prompts)
    finally:
        engine.set_encoder(torch_encode, torch_runtime)
    agreement = [dice(m, r) for m, r in zip(masks, reference, strict=True)]
    box_dice = np.mean([dice(m, t) for m, (_, _, t) in zip(masks, prompts, strict=True)])
    reference_box_dice = np.mean([dice(r, t) for r, (_, _, t) in zip(reference, prompts, strict=True)])
    print(f"{variant}: agreement mean {np.mean(agreement):.4f} min {np.min(agreement):.4f}; "
          f"mean_dice_box {box_dice:.4f} (torch-fp32 {reference_box_dice:.4f})")
    assert len(prompts) >= 15
    assert np.mean(agreement) >= 0.99
    assert np.min(agreement) >= 0.93
    assert abs(box_dice - reference_box_dice) <= 0.005


def test_auto_choice_is_checked_stored_and_reloaded_without_export(case, cache_root):
    from annotator.engine.runtime.compiled_cache import CompiledModelCache
    from annotator.engine.runtime.lite_medsam_runtime import accelerate_lite_medsam
    from annotator.engine.runtime.select import candidate_variants

    engine, slices_u8, prompts, reference = case
    torch_encode = engine._encoder
    try:
        first = accelerate_lite_medsam(engine, "auto", cache=CompiledModelCache(cache_root))
        assert engine.runtime == first.name
        assert not first.from_cache
        assert first.name in candidate_variants("cpu")
        checked = {r.variant: r for r in first.results}
        assert checked[first.name].passed
        restart = CompiledModelCache(cache_root)
        second = accelerate_lite_medsam(engine, "auto", cache=restart)
        assert second.from_cache
        assert second.name == first.name
        assert restart.stats.builds == 0  # second start: nothing exported or compiled again
        # the prompt path was put on a fast runtime too, and gives torch's masks
        assert engine._prompt_runner is not None
        for index, box, truth in prompts[:4]:
            embedding = engine.embed(slices_u8[index])
            y, x = np.argwhere(truth)[0]
            kwargs = [dict(box_xyxy=box), dict(box_xyxy=box, points_xy=np.array([[x, y]]), point_labels=np.array([0]))]
            fast = [engine.predict(embedding, multimask=False, **kw) for kw in kwargs]
            fast.append(engine.predict(embedding, box_xyxy=box, mask_input=fast[0].low_res_logits, multimask=False))
            runner, engine._prompt_runner = engine._prompt_runner, None
            slow = [engine.predict(embedding, multimask=False, **kw) for kw in kwargs]
            slow.append(engine.predict(embedding, box_xyxy=box, mask_input=slow[0].low_res_logits, multimask=False))
            engine.set_prompt_runner(runner)
            for f, s in zip(fast, slow, strict=True):
                assert np.array_equal(f.masks, s.masks)
                np.testing.assert_allclose(f.low_res_logits, s.low_res_logits, rtol=1e-3, atol=1e-3)
    finally:
        engine.set_encoder(torch_encode, "torch-fp32")
        engine.set_prompt_runner(None)
