"""EngineExecutor: priorities, supersede, stale drop, cancel, engine errors as results, clean
shutdown, prefetch order, CUDA-OOM fallback. A gated fake engine makes the timing deterministic;
the last test runs the real SAM code end to end."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from annotator.core.geometry import Window
from annotator.core.prompts import BoxPrompt, PointPrompt, PromptSet
from annotator.core.volume import Volume
from annotator.engine.api import ImageEmbedding, MaskPrediction
from annotator.engine.embedding_cache import EmbeddingCache
from annotator.engine.executor import EngineExecutor, PredictRequest, SliceRef, prefetch_order
from annotator.engine.service import EmbeddingService

WAIT = 10.0


class GatedEngine:
    """Fake engine: optionally blocks inside embed/predict until released, records calls."""

    model_id = "fake"
    model_sha256 = "f" * 64
    preprocess_version = 1
    device = "cpu"
    runtime = "fake"
    prompt_kind = "points"

    def __init__(self):
        self.calls: list[tuple[str, int]] = []
        self.block_embed = False
        self.block_predict = False
        self.inside = threading.Event()
        self.release = threading.Event()
        self.fail_predict: Exception | None = None
        self.fail_embed: Exception | None = None

    def _maybe_block(self, blocked):
        if blocked:
            self.inside.set()
            if not self.release.wait(WAIT):
                raise TimeoutError("test never released the engine")

    def embed(self, image, *, cancel=None, progress=None):
        self.calls.append(("embed", int(image[0, 0, 0])))
        self._maybe_block(self.block_embed)
        if self.fail_embed is not None:
            raise self.fail_embed
        return ImageEmbedding(image[None, :, :, 0].astype(np.float32), image.shape[:2], image.shape[:2], self.model_id)

    def predict(self, embedding, *, points_xy=None, point_labels=None, box_xyxy=None, mask_input=None,
                multimask=True):
        self.calls.append(("predict", int(embedding.features[0, 0, 0])))
        self._maybe_block(self.block_predict)
        if self.fail_predict is not None:
            raise self.fail_predict
        masks = np.zeros((1,) + tuple(embedding.original_size), dtype=bool)
        if points_xy is not None:
            x, y = (int(v) for v in points_xy[0])
            masks[0, y, x] = True
        return MaskPrediction(masks, np.ones(1, np.float32), np.zeros((1, 4, 4), np.float32))


@pytest.fixture
def volume():
    # slice z has value z everywhere, so the fake engine can tell which slice it saw
    array = np.broadcast_to(np.arange(10, dtype=np.float32)[:, None, None], (10, 8, 8)).copy()
    return Volume(array, (1.0, 1.0, 1.0))


WINDOW = Window.from_bounds(0.0, 255.0)


@pytest.fixture
def engine():
    return GatedEngine()


@pytest.fixture
def make_executor(engine):
    created = []

    def make(**kwargs):
        results = []
        executor = EngineExecutor(EmbeddingService(engine, EmbeddingCache(1 << 20, None)),
                                  on_result=results.append, **kwargs)
        created.append(executor)
        return executor, results

    yield make
    engine.release.set()
    for executor in created:
        assert executor.shutdown(timeout=WAIT)
    assert not [t for t in threading.enumerate() if t.name == "annotator-engine"]


def _click(view, x=1, y=2):
    return PredictRequest.from_prompts(view, PromptSet((PointPrompt(x, y),)))


def _block_worker(executor, engine, view):
    """Occupy the worker with an embed that waits for engine.release."""
    engine.block_embed = True
    ticket = executor.embed(view)
    assert engine.inside.wait(WAIT)
    engine.block_embed = False
    return ticket


class InterruptibleEngine(GatedEngine):
    """Like OpenVINO's encoder: a blocked embed stops as soon as its cancel event is set."""

    def embed(self, image, *, cancel=None, progress=None):
        from annotator.engine.service import EmbeddingCancelled

        self.calls.append(("embed", int(image[0, 0, 0])))
        if self.block_embed:
            self.inside.set()
            while not self.release.wait(0.005):
                if cancel is not None and cancel.is_set():
                    self.calls.append(("interrupted", int(image[0, 0, 0])))
                    raise EmbeddingCancelled("interrupted")
        return ImageEmbedding(image[None, :, :, 0].astype(np.float32), image.shape[:2], image.shape[:2], self.model_id)


def test_a_prompt_interrupts_background_work_it_does_not_need_and_waits_for_work_it_does(volume):
    engine = InterruptibleEngine()
    executor = EngineExecutor(EmbeddingService(engine, EmbeddingCache(1 << 20, None)))
    try:
        lung = Window(-600, 1500)
        engine.block_embed = True
        first = executor.prefetch(SliceRef(volume, 0, 5, WINDOW), radius=1, windows=[lung])  # 5, 5 lung, 6, 4
        assert engine.inside.wait(WAIT)  # slice 5 (default window) is being embedded in the background
        # A box on slice 5 that needs the default and lung windows: the running job is needed: kept.
        executor.make_way([SliceRef(volume, 0, 5, WINDOW), SliceRef(volume, 0, 5, lung)])
        assert executor.stats.interrupted == 0
        engine.release.set()
        assert first[0].result(WAIT).status == "ok"
        assert executor.wait_until_idle(WAIT)
        # Now a neighbour is being prefetched when a box on slice 2 arrives: it steps aside.
        engine.release.clear()
        engine.inside.clear()
        engine.calls.clear()
        second = executor.prefetch(SliceRef(volume, 0, 8, WINDOW), radius=0)
        assert engine.inside.wait(WAIT)
        executor.make_way([SliceRef(volume, 0, 2, WINDOW)])
        engine.block_embed = False
        prediction = executor.predict_result(_click(SliceRef(volume, 0, 2, WINDOW)), timeout=WAIT)
        assert prediction.masks.shape[0] >= 1
        assert second[0].result(WAIT).status == "cancelled"
        assert executor.stats.interrupted == 1
        assert executor.wait_until_idle(WAIT)
        # The interrupted slice was queued again behind the prompt and embedded after it.
        assert engine.calls == [("embed", 8), ("interrupted", 8), ("embed", 2), ("predict", 2), ("embed", 8)]
        assert executor.service.is_cached(volume, 0, 8, WINDOW)
    finally:
        engine.release.set()
        assert executor.shutdown(timeout=WAIT)


def test_no_prefetch_starts_between_the_predictions_of_one_prompt(make_executor, engine, volume):
    executor, _ = make_executor()
    view = SliceRef(volume, 0, 2, WINDOW)
    with executor.prompting([view]):
        tickets = executor.prefetch(SliceRef(volume, 0, 7, WINDOW), radius=0)
        for _ in range(3):  # a prompt's predictions, each submitted after the last one ended
            executor.predict_result(_click(view), timeout=WAIT)
            assert not tickets[0].future.done()
        assert ("embed", 7) not in engine.calls
    assert tickets[0].result(WAIT).status == "ok"  # released once the prompt is done
    assert engine.calls[-1] == ("embed", 7)


def test_priorities_predict_then_embed_then_prefetch(make_executor, engine, volume):
    executor, _ = make_executor()
    _block_worker(executor, engine, SliceRef(volume, 0, 9, WINDOW))
    prefetch = executor.prefetch(SliceRef(volume, 0, 1, WINDOW), radius=0)
    embed = executor.embed(SliceRef(volume, 0, 2, WINDOW))
    predict = executor.predict(_click(SliceRef(volume, 0, 3, WINDOW)))
    engine.release.set()
    assert executor.wait_until_idle(WAIT)
    assert [r.result().status for r in (prefetch[0], embed, predict)] == ["ok", "ok", "ok"]
    assert list(executor.stats.order)[1:] == [("predict", 3), ("embed", 2), ("prefetch", 1)]
    assert predict.request_id > embed.request_id > prefetch[0].request_id


def test_newer_predict_supersedes_queued_older_one_for_the_same_slice(make_executor, engine, volume):
    executor, results = make_executor()
    _block_worker(executor, engine, SliceRef(volume, 0, 9, WINDOW))
    view = SliceRef(volume, 0, 4, WINDOW)
    older = executor.predict(_click(view, 1, 1))
    other_slice = executor.predict(_click(SliceRef(volume, 0, 5, WINDOW)))
    newer = executor.predict(_click(view, 3, 3))
    assert older.result(WAIT).status == "cancelled"  # resolved at once, before it ever ran
    engine.release.set()
    assert newer.result(WAIT).status == "ok"
    assert other_slice.result(WAIT).status == "ok"
    assert executor.wait_until_idle(WAIT)
    assert newer.result().prediction.masks[0, 3, 3]
    delivered = [r.request_id for r in results if r.kind == "predict"]
    assert older.request_id not in delivered
    assert sorted(delivered) == sorted([other_slice.request_id, newer.request_id])
    assert [c for c in engine.calls if c[0] == "predict"] == [("predict", 5), ("predict", 4)]


def test_result_of_an_older_running_predict_is_stale_and_dropped(make_executor, engine, volume):
    executor, results = make_executor()
    view = SliceRef(volume, 0, 4, WINDOW)
    engine.block_predict = True
    older = executor.predict(_click(view, 1, 1))
    assert engine.inside.wait(WAIT)  # the older one is running now
    engine.block_predict = False
    newer = executor.predict(_click(view, 2, 2))
    engine.release.set()
    assert older.result(WAIT).status == "stale"
    assert newer.result(WAIT).status == "ok"
    assert executor.wait_until_idle(WAIT)
    assert [r.request_id for r in results] == [newer.request_id]
    assert executor.stats.stale == 1


def test_cancel_a_queued_request(make_executor, engine, volume):
    executor, results = make_executor()
    _block_worker(executor, engine, SliceRef(volume, 0, 9, WINDOW))
    ticket = executor.predict(_click(SliceRef(volume, 0, 6, WINDOW)))
    assert executor.cancel(ticket.request_id)
    assert ticket.result(WAIT).status == "cancelled"
    engine.release.set()
    assert executor.wait_until_idle(WAIT)
    assert ("embed", 6) not in engine.calls
    assert all(r.request_id != ticket.request_id for r in results)
    assert not executor.cancel(ticket.request_id)  # already gone


def test_engine_exception_is_a_result_and_the_worker_lives_on(make_executor, engine, volume):
    executor, results = make_executor()
    engine.fail_predict = ValueError("decoder exploded")
    failed = executor.predict(_click(SliceRef(volume, 0, 1, WINDOW))).result(WAIT)
    assert failed.status == "error"
    assert "ValueError: decoder exploded" in failed.error
    assert results[-1] is failed  # errors are delivered, so the GUI can show them
    engine.fail_predict = None
    assert executor.predict(_click(SliceRef(volume, 0, 1, WINDOW))).result(WAIT).status == "ok"


def test_shutdown_cancels_queued_work_and_leaves_no_thread(engine, volume):
    executor = EngineExecutor(EmbeddingService(engine, EmbeddingCache(1 << 20, None)))
    running = _block_worker(executor, engine, SliceRef(volume, 0, 9, WINDOW))
    queued = [executor.predict(_click(SliceRef(volume, 0, i, WINDOW))) for i in range(3)]
    stopper = threading.Thread(target=executor.shutdown, kwargs={"timeout": WAIT})
    stopper.start()
    for ticket in queued:
        assert ticket.result(WAIT).status == "cancelled"
    engine.release.set()
    stopper.join(WAIT)
    assert running.result(WAIT).status in ("ok", "cancelled")
    assert not [t for t in threading.enumerate() if t.name == "annotator-engine"]
    with pytest.raises(RuntimeError, match="shut down"):
        executor.predict(_click(SliceRef(volume, 0, 1, WINDOW)))


def test_prefetch_order_visible_slice_first_then_outward():
    assert prefetch_order(5, 2, 10) == [5, 6, 4, 7, 3]
    assert prefetch_order(0, 2, 10) == [0, 1, 2]
    assert prefetch_order(9, 3, 10) == [9, 8, 7, 6]
    # Scrolling down through the indices: the lower neighbour of each pair first.
    assert prefetch_order(5, 2, 10, direction=-1) == [5, 4, 6, 3, 7]
    assert prefetch_order(0, 2, 10, direction=-1) == [0, 1, 2]


def test_prefetch_embeds_the_visible_slice_in_the_other_windows_before_the_neighbours(make_executor, engine, volume):
    executor, _ = make_executor()
    lung, bone = Window(-600, 1500), Window(400, 1800)
    view = SliceRef(volume, 0, 5, WINDOW)
    tickets = executor.prefetch(view, radius=1, windows=[lung, WINDOW, bone, lung], direction=-1)
    assert executor.wait_until_idle(WAIT)
    done = [t.result() for t in tickets]
    assert [(r.slice.index, r.slice.window) for r in done] == [
        (5, WINDOW), (5, lung), (5, bone), (4, WINDOW), (6, WINDOW)]  # repeated and default windows once
    assert all(r.status == "ok" for r in done)
    for window in (WINDOW, lung, bone):
        assert executor.service.is_cached(volume, 0, 5, window)
    # A box arriving now on slice 5 needs no encoder call in any of the three windows.
    engine.calls.clear()
    for window in (WINDOW, lung, bone):
        executor.predict_result(_click(SliceRef(volume, 0, 5, window)), timeout=WAIT)
    assert [c for c in engine.calls if c[0] == "embed"] == []


def test_prefetch_runs_in_order_skips_cached_and_is_cancelled_when_the_user_moves(make_executor, engine, volume):
    executor, _ = make_executor()
    executor.service.embedding(volume, 0, 4, WINDOW)  # already paid for
    engine.calls.clear()
    _block_worker(executor, engine, SliceRef(volume, 0, 9, WINDOW))
    first = executor.prefetch(SliceRef(volume, 0, 5, WINDOW), radius=1)  # 5, 6, 4
    moved = executor.prefetch(SliceRef(volume, 0, 1, WINDOW), radius=1)  # user moved: 1, 2, 0
    assert [t.result(WAIT).status for t in first] == ["cancelled"] * 3
    engine.release.set()
    assert executor.wait_until_idle(WAIT)
    assert [t.result().status for t in moved] == ["ok"] * 3
    assert engine.calls == [("embed", 9), ("embed", 1), ("embed", 2), ("embed", 0)]
    executor.prefetch(SliceRef(volume, 0, 4, WINDOW), radius=1)  # 4 cached; 5 and 3 new
    assert executor.wait_until_idle(WAIT)
    assert engine.calls[4:] == [("embed", 5), ("embed", 3)]


def test_cuda_out_of_memory_falls_back_to_cpu_for_that_request(make_executor, engine, volume):
    torch = pytest.importorskip("torch")
    cpu_engine = GatedEngine()
    cpu_engine.device = "cpu"
    executor, results = make_executor(cpu_fallback=lambda: cpu_engine)
    engine.device = "cuda"
    engine.fail_embed = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    result = executor.predict(_click(SliceRef(volume, 0, 3, WINDOW))).result(WAIT)
    assert result.status == "ok"
    assert result.device == "cpu"
    assert any("out of memory" in w for w in result.warnings)
    assert executor.stats.cpu_fallbacks == 1
    assert cpu_engine.calls == [("embed", 3), ("predict", 3)]
    engine.fail_embed = None  # the GPU engine keeps serving later requests
    assert executor.predict(_click(SliceRef(volume, 0, 7, WINDOW))).result(WAIT).device == "cuda"


def test_synchronous_mode_runs_on_the_callers_thread(engine, volume):
    seen = []
    executor = EngineExecutor(EmbeddingService(engine, EmbeddingCache(1 << 20, None)), synchronous=True,
                              on_result=lambda r: seen.append(threading.current_thread()))
    ticket = executor.predict(PredictRequest.from_prompts(SliceRef(volume, 0, 2, WINDOW),
                                                          PromptSet(box=BoxPrompt(1, 1, 4, 4))))
    assert ticket.future.done()
    assert ticket.result().status == "ok"
    assert seen == [threading.current_thread()]
    assert executor.shutdown()


def test_end_to_end_with_real_sam_equals_direct_prediction(volume):
    pytest.importorskip("torch")
    from support.sam_models import build_tiny_sam

    from annotator.engine.sam_engine import SamEngine

    sam_engine = SamEngine(build_tiny_sam(seed=2), model_id="tiny", model_sha256="0" * 64)
    service = EmbeddingService(sam_engine, EmbeddingCache(1 << 26, None))
    with EngineExecutor(service) as executor:
        view = SliceRef(volume, 0, 5, WINDOW)
        request = PredictRequest.from_prompts(view, PromptSet((PointPrompt(3, 4),)))
        result = executor.predict(request).result(60)
        assert result.status == "ok", result.error
        direct = sam_engine.predict(service.cached(volume, 0, 5, WINDOW), points_xy=np.array([[3.0, 4.0]]),
                                    point_labels=np.array([1]), multimask=True)
        np.testing.assert_array_equal(result.prediction.masks, direct.masks)
        assert result.prediction.masks.shape == (3, 8, 8)


def test_newer_embed_cancels_queued_older_embeds_of_the_same_view_only(make_executor, engine, volume):
    executor, _ = make_executor()
    _block_worker(executor, engine, SliceRef(volume, 0, 9, WINDOW))
    older = executor.embed(SliceRef(volume, 0, 1, WINDOW))
    coronal = executor.embed(SliceRef(volume, 1, 1, WINDOW))
    newer = executor.embed(SliceRef(volume, 0, 2, WINDOW))
    assert older.result(WAIT).status == "cancelled"
    engine.release.set()
    assert coronal.result(WAIT).status == "ok"
    assert newer.result(WAIT).status == "ok"


def test_embed_without_supersede_is_kept(make_executor, engine, volume):
    executor, _ = make_executor()
    _block_worker(executor, engine, SliceRef(volume, 0, 9, WINDOW))
    ahead = [executor.embed(SliceRef(volume, 0, i, WINDOW), supersede=False) for i in (3, 4)]
    visible = executor.embed(SliceRef(volume, 0, 5, WINDOW))
    engine.release.set()
    assert [t.result(WAIT).status for t in (*ahead, visible)] == ["ok", "ok", "ok"]


def test_a_long_session_keeps_no_record_per_slice_it_ever_touched(engine, volume):
    """Bookkeeping for superseding is per pending request: after 300 slices it is empty again."""
    executor = EngineExecutor(EmbeddingService(engine, EmbeddingCache(1 << 20, None)), synchronous=True)
    for index in range(volume.shape_zyx[0]):
        for _ in range(60):
            ticket = executor.predict(PredictRequest.from_prompts(SliceRef(volume, 0, index, WINDOW),
                                                                  PromptSet(box=BoxPrompt(1, 1, 4, 4))))
            assert ticket.result().status == "ok"
    assert executor._latest_predict == {}
    assert executor._latest_embed == {}
    assert len(executor.stats.order) <= executor.stats.order.maxlen
    assert executor.shutdown()


def test_checkpoint_hash_memo_is_bounded(tmp_path):
    from annotator.engine import checkpoints

    for i in range(checkpoints._SHA_MEMO_SIZE + 20):
        path = tmp_path / f"w{i}.pth"
        path.write_bytes(bytes([i % 256]) * 10)
        checkpoints.file_sha256(path)
    assert len(checkpoints._sha_memo) == checkpoints._SHA_MEMO_SIZE
