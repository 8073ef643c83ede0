"""Each embedding is paid for once: counted at the real SAM image encoder."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.core.geometry import Window
from annotator.core.volume import Volume
from annotator.engine.embedding_cache import EmbeddingCache
from annotator.engine.service import EmbeddingService

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    from support.sam_models import one_torch_thread

    with one_torch_thread():
        yield


@pytest.fixture
def volume():
    rng = np.random.default_rng(0)
    return Volume(rng.normal(0, 300, size=(4, 40, 56)).astype(np.int16), (2.5, 0.8, 0.8), modality="CT")


def _counting_engine(seed=0, model_id="tiny", sha="0" * 64):
    from support.sam_models import build_tiny_sam

    from annotator.engine.sam_engine import SamEngine

    sam = build_tiny_sam(seed=seed)
    calls = []
    sam.image_encoder.register_forward_hook(lambda *args: calls.append(1))
    return SamEngine(sam, model_id=model_id, model_sha256=sha), calls


@pytest.fixture(scope="module")
def tiny_engine_and_calls():
    return _counting_engine()


def test_revisit_new_instance_window_and_model_changes(volume, tmp_path, tiny_engine_and_calls):
    engine, calls = tiny_engine_and_calls
    window = Window(40, 400)
    service = EmbeddingService(engine, EmbeddingCache(memory_bytes=1 << 26, disk_dir=tmp_path))
    first = service.embedding(volume, 0, 2, window)
    assert len(calls) == 1
    # revisiting the slice: 0 encoder calls
    again = service.embedding(volume, 0, 2, window)
    assert again is first
    assert len(calls) == 1

    # a new engine instance (fresh memory tier) on the same volume, same disk cache: 0 encoder calls
    engine2, calls2 = _counting_engine()
    service2 = EmbeddingService(engine2, EmbeddingCache(memory_bytes=1 << 26, disk_dir=tmp_path))
    same_volume_reloaded = Volume(volume.array.copy(), volume.spacing_zyx_mm, modality="CT")
    restored = service2.embedding(same_volume_reloaded, 0, 2, window)
    assert calls2 == []
    np.testing.assert_array_equal(restored.features, first.features)
    point = dict(points_xy=np.array([[20.0, 15.0]]), point_labels=np.array([1]))
    np.testing.assert_array_equal(engine2.predict(restored, **point).masks, engine.predict(first, **point).masks)

    # another window: miss
    service2.embedding(same_volume_reloaded, 0, 2, Window(-600, 1500))
    assert len(calls2) == 1
    # another plane through the same volume: miss
    service2.embedding(same_volume_reloaded, 1, 2, window)
    assert len(calls2) == 2

    # another model (different weights hash) on the same disk cache: miss
    engine3, calls3 = _counting_engine(seed=1, model_id="tiny", sha="1" * 64)
    EmbeddingService(engine3, EmbeddingCache(memory_bytes=1 << 26, disk_dir=tmp_path)).embedding(volume, 0, 2, window)
    assert len(calls3) == 1
    # changed voxels: miss
    edited = Volume(volume.array + 1, volume.spacing_zyx_mm, modality="CT")
    service2.embedding(edited, 0, 2, window)
    assert len(calls2) == 3


def test_fp16_cached_embedding_predicts_like_fp32(volume, tiny_engine_and_calls):
    from annotator.engine.slices import slice_rgb_u8

    engine, _ = tiny_engine_and_calls
    window = Window(40, 400)
    fresh = engine.embed(slice_rgb_u8(volume, 0, 1, window))
    cached = EmbeddingService(engine, EmbeddingCache(1 << 26, None)).embedding(volume, 0, 1, window)
    assert cached.features.dtype == np.float16
    box = dict(box_xyxy=np.array([5.0, 5.0, 40.0, 30.0]), multimask=False)
    a, b = engine.predict(fresh, **box), engine.predict(cached, **box)
    np.testing.assert_allclose(a.low_res_logits, b.low_res_logits, atol=0.05)
    assert (a.masks != b.masks).mean() < 0.01


def test_clicks_through_the_executor_embed_once(volume, tiny_engine_and_calls):
    from annotator.core.prompts import PointPrompt, PromptSet
    from annotator.engine.executor import EngineExecutor, PredictRequest, SliceRef

    engine, calls = tiny_engine_and_calls
    before = len(calls)
    view = SliceRef(volume, 0, 3, Window(40, 400))
    with EngineExecutor(EmbeddingService(engine, EmbeddingCache(1 << 26, None))) as executor:
        for x in (10.0, 20.0, 30.0):
            result = executor.predict(PredictRequest.from_prompts(view, PromptSet((PointPrompt(x, 12.0),)))).result(60)
            assert result.ok, result.error
        executor.embed(view).result(60)  # the visible slice again: already there
    assert len(calls) - before == 1
