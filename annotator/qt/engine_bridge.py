"""EngineBridge: the only place engine results cross into the GUI thread.

It loads the engine (a loader thread), owns the EngineExecutor (one worker thread that owns the
model) and embeds what the user looks at; prompts and propagation are its two controllers
(qt.prompt_controller, qt.propagation_controller), which share one helper thread whose every model
call is a request to the executor. Worker threads hand results back through typed signals of
GUI-thread QObjects connected to bound methods (queued across threads; never a lambda).
"""

from __future__ import annotations

import itertools
import logging
import subprocess
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

from PySide6.QtCore import QObject, Qt, QTimer, Signal

from annotator.core.document import AnnotationDocument
from annotator.core.geometry import Window, slice_2d
from annotator.core.prompts import PointPrompt
from annotator.core.volume import Volume
from annotator.engine.api import MaskPrediction
from annotator.qt.prompt_controller import PromptController
from annotator.qt.propagation_controller import PropagationController

if TYPE_CHECKING:
    from annotator.engine.executor import EngineExecutor
    from annotator.engine.service import EmbeddingService

log = logging.getLogger(__name__)

VIEW_SETTLE_MS = 60
EngineState = Literal["not started", "loading", "ready", "failed"]


class EngineBridge(QObject):
    """Connects the document to the engine: embeds what the user looks at, turns prompts into a
    preview, runs propagation, and reports engine state for the status bar and engine panel."""

    status_changed = Signal()
    error = Signal(str)
    busy_text_changed = Signal(int, str)  # axis, text ("" clears)
    prediction_ready = Signal()
    embedding_ready = Signal(int, int)  # axis, index
    propagation_progress = Signal(int, int)  # done, total
    propagation_finished = Signal(str)  # "" on success, else why not
    _engine_loaded = Signal(int, object)  # load generation, a PromptEngine, from the loader thread
    _engine_failed = Signal(int, str)     # load generation, why it could not load
    _executor_result = Signal(object)  # EngineResult of an embed/prefetch/predict, from the engine thread

    def __init__(self, doc: AnnotationDocument, settings: Any = None, options: dict | None = None,
                 parent: QObject | None = None, *, engine: Any = None, cache: Any = None) -> None:
        super().__init__(parent)
        self.doc = doc
        self.settings = settings
        self.options = dict(options or {})
        self.engine = engine
        self.cache = cache
        self.service: EmbeddingService | None = None
        self.executor: EngineExecutor | None = None
        self.state: EngineState = "not started"
        self.load_error = ""
        self.last_embed_s: float | None = None
        self.prefetch_done = 0
        self.prefetch_total = 0
        # (slice, window) of the visible slice's prefetch round not embedded yet: only those count,
        # not the slices propagation queues ahead of itself (it prefetches too)
        self._prefetch_round: set[tuple[tuple[int, int, int], tuple[float, float]]] = set()
        self.active_axis = 0
        self._closed = False
        self._load_generation = 0  # a load started before the latest reload delivers a stale engine
        self._model_window: tuple[Volume, Window] | None = None
        self._settled: dict[tuple[int, int], int] = {}  # the slice last embedded per view (one entry)
        self._direction: dict[tuple[int, int], int] = {}  # +1 / -1: the way the user last scrolled
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="annotator-engine-load")
        self._helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="annotator-prompts")
        generations = itertools.count(1)
        self.prompts = PromptController(self, self._helper, generations)
        self.propagation = PropagationController(self, self._helper, generations)
        self.prompts.prediction_ready.connect(self.prediction_ready)
        self.prompts.busy_text.connect(self.busy_text_changed)
        self.prompts.failed.connect(self.error)
        self.propagation.progress.connect(self.propagation_progress)
        self.propagation.finished.connect(self.propagation_finished)
        self.propagation.failed.connect(self.error)
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(VIEW_SETTLE_MS)
        self._settle.timeout.connect(self._on_settle_timeout)
        self._engine_loaded.connect(self._on_engine_loaded, Qt.ConnectionType.QueuedConnection)
        self._engine_failed.connect(self._on_engine_failed, Qt.ConnectionType.QueuedConnection)
        self._executor_result.connect(self._on_executor_result, Qt.ConnectionType.QueuedConnection)
        doc.volume_changed.connect(self._on_doc_view_changed)
        doc.cursor_changed.connect(self._on_doc_view_changed)

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Load the engine on a worker thread (or use the one given); the window stays usable."""
        if self.engine is not None:
            self._build(self.engine)
            return
        self.state = "loading"
        self.status_changed.emit()
        name = self.options.get("engine") or getattr(self.settings, "engine", "auto") or "auto"
        checkpoint = self.options.get("checkpoint") or getattr(self.settings, "checkpoint", None)
        runtime = self.options.get("runtime") or getattr(self.settings, "runtime", "auto") or "auto"
        server = self.options.get("server", getattr(self.settings, "server_url", None)) or None
        self._load_generation += 1
        generation = self._load_generation
        future = self._loader.submit(_create_engine, "remote" if server else name, checkpoint, runtime,
                                     **({"server": server} if server else {}))
        future.add_done_callback(lambda done: self._deliver_engine(generation, done))

    def reload(self, *, engine_name: str | None = None, checkpoint: str | None = None,
               runtime: str | None = None, server: str | None = None) -> None:
        """Switch model, runtime or server (chosen in the engine panel; server "" = this computer):
        stops the old executor first."""
        if server is not None:
            self.options["server"] = server
        if engine_name is not None:
            self.options["engine"] = engine_name
        if checkpoint is not None:
            self.options["checkpoint"] = checkpoint
        if runtime is not None:
            self.options["runtime"] = runtime
        self._stop_executor()
        _stop_background_check(self.engine)
        self.engine = None
        self.service = None
        self.start()

    def _deliver_engine(self, generation: int, future: Future) -> None:  # runs on the loader thread
        exc = future.exception()
        if exc is not None:
            self._engine_failed.emit(generation, str(exc))
        elif self._closed:
            _stop_background_check(future.result())
        else:
            self._engine_loaded.emit(generation, future.result())

    def _on_engine_loaded(self, generation: int, engine: Any) -> None:
        if self._closed or generation != self._load_generation:
            _stop_background_check(engine)  # superseded by a later choice: never built, nothing left running
            return
        self._build(engine)

    def _on_engine_failed(self, generation: int, why: str) -> None:
        if self._closed or generation != self._load_generation:
            return
        self.state = "failed"
        self.load_error = why
        self.prompts.engine_failed()
        self.status_changed.emit()
        self.error.emit(f"Could not load the segmentation engine: {why}")

    def _build(self, engine: Any) -> None:
        from annotator.engine.embedding_cache import EmbeddingCache
        from annotator.engine.executor import EngineExecutor
        from annotator.engine.service import EmbeddingService

        self._stop_executor()  # one executor, one model thread, whatever came before
        self.engine = engine
        if self.cache is None:
            self.cache = EmbeddingCache.from_settings(self.settings) if self.settings is not None \
                else EmbeddingCache(disk_dir=None)
        service = EmbeddingService(engine, self.cache)
        self.service = service
        self.executor = EngineExecutor(service, on_result=self._on_result_from_worker)
        self.state = "ready"
        self.status_changed.emit()
        self._on_settle_timeout()
        self.prompts.engine_ready()

    def _stop_executor(self) -> None:
        self.propagation.cancel()
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=True, timeout=10.0)
            self.executor = None

    def shutdown(self) -> None:
        """Cancel queued work, stop every thread this bridge started (bounded waits)."""
        if self._closed:
            return
        self._closed = True
        self.prompts.stop()
        self.propagation.stop()
        self._settle.stop()
        self._stop_executor()  # unblocks a helper waiting on a prediction (its future resolves)
        self._helper.shutdown(wait=True, cancel_futures=True)
        self._loader.shutdown(wait=True, cancel_futures=True)
        _stop_background_check(self.engine)

    @property
    def ready(self) -> bool:
        return self.state == "ready" and self.executor is not None

    @property
    def propagating(self) -> bool:
        return self.propagation.running

    def summary(self) -> str:
        """One line for the status bar: what model ran, where, how fast."""
        if self.state == "loading":
            return "engine: loading…"
        if self.state == "failed":
            return "engine: failed to load"
        if not self.ready:
            return "engine: none"
        engine = self.engine
        bundled = " (bundled)" if engine.model_id == "lite-medsam" else ""
        text = f"{engine.model_id}{bundled} · {engine.runtime} · {engine.device}"
        check = getattr(engine, "background_check", None)
        if check is not None and check.poll() is None:
            text += " (faster runtime being prepared in the background)"
        if self.last_embed_s is not None:
            text += f" · embed {self.last_embed_s * 1000:.0f} ms"
        return text

    def wait_prediction(self, request: Any) -> MaskPrediction:
        """Helper threads: one prediction through the executor (EngineError when the engine failed,
        PredictionSuperseded when it was cancelled, superseded or the engine stopped)."""
        from annotator.engine.executor import PredictionSuperseded

        executor = self.executor
        if executor is None:
            raise PredictionSuperseded("engine stopped")
        return executor.predict_result(request)

    # ---- embedding what the user looks at ---------------------------------------------------
    def model_window(self) -> Window:
        """The model input window without a box (engine.input_window.default_model_window): what
        the visible slice is embedded in ahead of any prompt. The display window stays the user's."""
        from annotator.engine.input_window import default_model_window

        volume = self.doc.current_volume()
        if self._model_window is None or self._model_window[0] is not volume:
            self._model_window = (volume, default_model_window(volume))
        return self._model_window[1]

    def set_active_axis(self, axis: int) -> None:
        if axis != self.active_axis:
            self.active_axis = axis
            self._settle.start()

    def _on_doc_view_changed(self, *args: object) -> None:
        if not self._closed:
            self._settle.start()  # embed once scrolling pauses, not for every slice flown past

    def _slice_ref(self, axis: int, index: int | None = None) -> Any:
        from annotator.engine.executor import SliceRef

        return SliceRef(self.doc.current_volume(), axis, self.doc.slice_index(axis) if index is None else index,
                        self.model_window())

    def _on_settle_timeout(self) -> None:
        service, executor = self.service, self.executor
        if service is None or executor is None or not self.doc.has_volume or self.propagating:
            return
        ref = self._slice_ref(self.active_axis)
        if not service.is_cached(ref.volume, ref.axis, ref.index, ref.window):
            self.busy_text_changed.emit(ref.axis, f"Embedding slice {ref.index + 1}…")
            executor.embed(ref)
        # The other input windows a box here would try come next (the look at the slice is spent
        # on them), then the neighbours, those in the direction of scrolling first.
        from annotator.engine.input_window import slice_windows

        windows = slice_windows(ref.volume, slice_2d(ref.volume.array, ref.axis, ref.index))
        view_key = (id(ref.volume), ref.axis)
        previous = self._settled.get(view_key)
        direction = self._direction.get(view_key, 1)
        if previous is not None and previous != ref.index:
            direction = 1 if ref.index > previous else -1
        self._settled, self._direction = {view_key: ref.index}, {view_key: direction}
        radius = int(getattr(self.settings, "prefetch_radius", 3) or 0)
        if radius > 0:  # 0: the user turned prefetching off, the other windows included
            tickets = executor.prefetch(ref, radius, windows=windows[1:], direction=direction)
            self._prefetch_round = {(t.view.slot(), t.view.window.key()) for t in tickets if t.view is not None}
            self.prefetch_total = len(self._prefetch_round)
            self.prefetch_done = 0
            self.status_changed.emit()

    def _on_result_from_worker(self, result: Any) -> None:  # runs on the engine thread
        if not self._closed:
            self._executor_result.emit(result)

    def _on_executor_result(self, result: Any) -> None:
        """ok/error results only (the executor never delivers cancelled or stale ones)."""
        if self._closed:
            return
        if result.status == "error":
            if result.kind != "prefetch":
                self.error.emit(f"Embedding failed: {result.error}")
            return
        if result.kind in ("embed", "prefetch"):
            if result.elapsed_s > 0.005:  # a cache hit costs nothing; only real encoder runs count
                self.last_embed_s = result.elapsed_s
            done = (result.slice.slot(), result.slice.window.key())
            if done in self._prefetch_round:  # an embed of a slice the round wanted counts too
                self._prefetch_round.discard(done)
                self.prefetch_done += 1
            if result.slice.index == self.doc.slice_index(result.slice.axis) and self.prompts.pending is None:
                self.busy_text_changed.emit(result.slice.axis, "")
            self.embedding_ready.emit(result.slice.axis, result.slice.index)
            self.status_changed.emit()
        elif result.kind == "predict" and result.warnings:
            self.error.emit("; ".join(result.warnings))

    # ---- prompts and propagation (the controllers) ------------------------------------------
    def request_prediction(self, axis: int, index: int, *, at_once: bool = False) -> None:
        self.prompts.request(axis, index, at_once=at_once)

    def add_click(self, axis: int, index: int, point: PointPrompt) -> None:
        self.prompts.add_click(axis, index, point)

    def discard(self) -> None:
        self.prompts.discard()

    def propagate(self, axis: int) -> None:
        self.propagation.start(axis)

    def cancel_propagation(self) -> None:
        self.propagation.cancel()

    def propagation_keys(self, axis: int, label_id: int) -> list:
        return self.propagation.keys(axis, label_id)


def _stop_background_check(engine: Any) -> None:
    check = getattr(engine, "background_check", None)
    if check is not None and check.poll() is None:
        check.terminate()  # its cache writes are atomic; the next start simply checks again
        try:
            check.wait(timeout=10)
        except subprocess.TimeoutExpired:
            check.kill()
            check.wait(timeout=10)


def _create_engine(name: str, checkpoint: str | None, runtime: str, server: str | None = None) -> Any:  # loader thread
    from annotator.engine.factory import create_engine

    start = time.perf_counter()
    if runtime == "auto" and name not in ("classical", "remote"):
        runtime = "auto-stored"  # never wait minutes for the first-start runtime check in the window
    engine: Any = create_engine(name, checkpoint=checkpoint, runtime=runtime, server=server)
    log.info("engine %s ready in %.1f s", getattr(engine, "model_id", name), time.perf_counter() - start)
    if getattr(engine, "runtime_pending", False):
        from annotator.engine.runtime.prepare import start_background_preparation

        engine.background_check = start_background_preparation(engine=name, checkpoint=checkpoint)
        log.info("fast runtime check running in the background; used from the next start")
    return engine
