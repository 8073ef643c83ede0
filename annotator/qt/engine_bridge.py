"""EngineBridge: the only place engine results cross into the GUI thread.

It owns the EngineExecutor (one worker thread that owns the model) plus one helper thread that
runs the click strategy and propagation, whose every model call is a request to that executor:
the model only ever runs on the executor's thread, and the GUI thread never waits on either.
Worker threads hand results back by emitting `_delivered`, a signal of this GUI-thread QObject
connected to a bound method (queued across threads; never a lambda).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer, Signal

from annotator.core.document import AnnotationDocument, Preview
from annotator.core.geometry import Window, slice_2d
from annotator.core.prompts import PromptSet
from annotator.core.volume import Volume

log = logging.getLogger(__name__)

CLICK_DEBOUNCE_MS = 100
VIEW_SETTLE_MS = 60


@dataclass(frozen=True)
class PromptJob:
    """An immutable snapshot of what to segment, captured on the GUI thread."""

    generation: int
    volume: Volume
    axis: int
    index: int
    prompts: PromptSet
    prompt_kind: str
    default_window: Window  # the model input window without a box (engine.input_window)


@dataclass(frozen=True)
class PropagationJob:
    generation: int
    volume: Volume
    axis: int
    keys: tuple  # engine.propagate.Key per key slice of the label
    label_id: int


def _following_slices(bridge: EngineBridge, executor, view):  # noqa: ANN001, ANN202
    """engine.propagate's ExecutorSlices that also tells the GUI which slice is being segmented,
    so the views follow the propagation."""
    from annotator.engine.propagate import ExecutorSlices

    class FollowingSlices(ExecutorSlices):
        def predict(self, index: int, window, **kwargs):  # noqa: ANN001, ANN003, ANN202
            if not bridge._closed:
                bridge._delivered.emit(("propagation-slice", view.axis, int(index)))
            return super().predict(index, window, **kwargs)

    return FollowingSlices(executor, view)


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
    _delivered = Signal(object)  # from worker threads; connected to self._on_delivered

    def __init__(self, doc: AnnotationDocument, settings=None, options: dict | None = None,  # noqa: ANN001
                 parent: QObject | None = None, *, engine=None, cache=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.doc = doc
        self.settings = settings
        self.options = dict(options or {})
        self.engine = engine
        self.cache = cache
        self.service = None
        self.executor = None
        self.state = "not started"  # "loading", "ready", "failed"
        self.load_error = ""
        self.last_embed_s: float | None = None
        self.prefetch_done = 0
        self.prefetch_total = 0
        self.active_axis = 0
        self.propagating = False
        self._generation = itertools.count(1)
        self._latest: dict[tuple[int, int], int] = {}
        self._cancel_propagation = threading.Event()
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="annotator-engine-load")
        self._prompt_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="annotator-prompts")
        self._closed = False
        self._pending_predict: tuple[int, int] | None = None
        self._model_window: tuple[Volume, Window] | None = None
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(CLICK_DEBOUNCE_MS)
        self._debounce.timeout.connect(self._on_debounce_timeout)
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(VIEW_SETTLE_MS)
        self._settle.timeout.connect(self._on_settle_timeout)
        self._delivered.connect(self._on_delivered, Qt.ConnectionType.QueuedConnection)
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
        future = self._loader.submit(_create_engine, name, checkpoint, runtime)
        future.add_done_callback(self._deliver_engine)

    def reload(self, *, engine_name: str | None = None, checkpoint: str | None = None,
               runtime: str | None = None) -> None:
        """Switch model or runtime (chosen in the engine panel): stops the old executor first."""
        if engine_name is not None:
            self.options["engine"] = engine_name
        if checkpoint is not None:
            self.options["checkpoint"] = checkpoint
        if runtime is not None:
            self.options["runtime"] = runtime
        self._stop_executor()
        self.engine = None
        self.service = None
        self.start()

    def _deliver_engine(self, future) -> None:  # noqa: ANN001 - runs on the loader thread
        if self._closed:
            return
        exc = future.exception()
        self._delivered.emit(("engine", None if exc else future.result(), exc))

    def _build(self, engine) -> None:  # noqa: ANN001
        from annotator.engine.embedding_cache import EmbeddingCache
        from annotator.engine.executor import EngineExecutor
        from annotator.engine.service import EmbeddingService

        self.engine = engine
        if self.cache is None:
            self.cache = EmbeddingCache.from_settings(self.settings) if self.settings is not None \
                else EmbeddingCache(disk_dir=None)
        self.service = EmbeddingService(engine, self.cache)
        self.executor = EngineExecutor(self.service, on_result=self._on_executor_result)
        self.state = "ready"
        self.status_changed.emit()
        self._on_settle_timeout()

    def _stop_executor(self) -> None:
        self._cancel_propagation.set()
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=True, timeout=10.0)
            self.executor = None

    def shutdown(self) -> None:
        """Cancel queued work, stop every thread this bridge started (bounded waits)."""
        if self._closed:
            return
        self._closed = True
        self._debounce.stop()
        self._settle.stop()
        self._stop_executor()  # unblocks a helper waiting on a prediction (its future resolves)
        self._prompt_pool.shutdown(wait=True, cancel_futures=True)
        self._loader.shutdown(wait=True, cancel_futures=True)
        check = getattr(self.engine, "background_check", None)
        if check is not None and check.poll() is None:
            check.terminate()  # its cache writes are atomic; the next start simply checks again
            check.wait(timeout=10)

    @property
    def ready(self) -> bool:
        return self.state == "ready" and self.executor is not None

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

    # ---- embedding what the user looks at ---------------------------------------------------
    def set_active_axis(self, axis: int) -> None:
        if axis != self.active_axis:
            self.active_axis = axis
            self._settle.start()

    def _on_doc_view_changed(self, *args) -> None:  # noqa: ANN002
        if not self._closed:
            self._settle.start()  # embed once scrolling pauses, not for every slice flown past

    def model_window(self) -> Window:
        """The model input window without a box (engine.input_window.default_model_window): what
        the visible slice is embedded in ahead of any prompt. The display window stays the user's."""
        from annotator.engine.input_window import default_model_window

        volume = self.doc.volume
        if self._model_window is None or self._model_window[0] is not volume:
            self._model_window = (volume, default_model_window(volume))
        return self._model_window[1]

    def _slice_ref(self, axis: int, index: int | None = None):  # noqa: ANN202
        from annotator.engine.executor import SliceRef

        return SliceRef(self.doc.volume, axis, self.doc.slice_index(axis) if index is None else index,
                        self.model_window())

    def _on_settle_timeout(self) -> None:
        if not self.ready or not self.doc.has_volume or self.propagating:
            return
        ref = self._slice_ref(self.active_axis)
        if not self.service.is_cached(ref.volume, ref.axis, ref.index, ref.window):
            self.busy_text_changed.emit(ref.axis, f"Embedding slice {ref.index + 1}…")
            self.executor.embed(ref)
        radius = int(getattr(self.settings, "prefetch_radius", 3) or 0)
        if radius > 0:
            tickets = self.executor.prefetch(ref, radius)
            self.prefetch_total = len(tickets)
            self.prefetch_done = 0
            self.status_changed.emit()

    def _on_executor_result(self, result) -> None:  # noqa: ANN001 - runs on the engine thread
        if not self._closed:
            self._delivered.emit(("engine-result", result))

    # ---- prompts -> preview -----------------------------------------------------------------
    def request_prediction(self, axis: int, index: int) -> None:
        """Segment the slice's prompts after a short pause (bursts of clicks become one job)."""
        self._pending_predict = (axis, index)
        self._debounce.start()

    def add_click(self, axis: int, index: int, point) -> None:  # noqa: ANN001
        self.doc.add_point(axis, index, point)
        self.request_prediction(axis, index)

    def discard(self) -> None:
        """Esc: forget pending work for the slice; a result still in flight is dropped."""
        self._debounce.stop()
        if self._pending_predict is not None:
            self._latest[self._pending_predict] = next(self._generation)
            self._pending_predict = None
        for key in list(self._latest):
            self._latest[key] = next(self._generation)
        for view_axis in range(3):
            self.busy_text_changed.emit(view_axis, "")

    def _on_debounce_timeout(self) -> None:
        if self._pending_predict is None:
            return
        axis, index = self._pending_predict
        self._pending_predict = None
        if not self.doc.has_volume:
            return
        prompts = self.doc.prompts(axis, index)
        if not prompts:
            return
        if not self.ready:
            self.error.emit("The segmentation engine is not ready: " + (self.load_error or self.state))
            return
        generation = next(self._generation)
        self._latest[(axis, index)] = generation
        job = PromptJob(generation, self.doc.volume, axis, index, prompts, getattr(self.engine, "prompt_kind", "box"),
                        self.model_window())
        if not self.service.is_cached(job.volume, axis, index, job.default_window):
            self.busy_text_changed.emit(axis, f"Embedding slice {index + 1}… (prompts kept)")
        else:
            self.busy_text_changed.emit(axis, "Segmenting…")
        self._prompt_pool.submit(self._run_prompt_job, job)

    def _wait_prediction(self, request):  # noqa: ANN001, ANN202 - helper thread
        executor = self.executor
        if executor is None:
            from annotator.engine.api import EngineError

            raise EngineError("engine stopped")
        result = executor.predict(request).result()
        if result.status == "ok":
            return result.prediction
        from annotator.engine.api import EngineError

        if result.status == "error":
            raise EngineError(result.error or "prediction failed")
        raise _Superseded(result.status)

    def _run_prompt_job(self, job: PromptJob) -> None:
        """Helper thread: the input window and click strategy (engine.slice_segmentation, as
        `annotator evaluate` runs them), each model call a request to the executor."""
        from annotator.engine import click_strategy, slice_segmentation
        from annotator.engine.executor import PredictRequest, SliceRef
        from annotator.engine.input_window import candidate_windows
        from annotator.engine.slices import slice_rgb_u8

        def predict_in(window: Window):  # noqa: ANN202
            ref = SliceRef(job.volume, job.axis, job.index, window)
            return lambda **kwargs: self._wait_prediction(PredictRequest(ref, **kwargs))

        def image_in(window: Window) -> np.ndarray:
            return slice_rgb_u8(job.volume, job.axis, job.index, window)[..., 0]

        try:
            raw = slice_2d(job.volume.array, job.axis, job.index)
            points = job.prompts.points
            box = job.prompts.box.xyxy() if job.prompts.box is not None else None
            if job.prompt_kind != "box" and box is None and len(points) == 1:
                # A lone click on a point model: keep all candidates so Tab can cycle them.
                pred = predict_in(job.default_window)(points_xy=job.prompts.points_xy(),
                                                      point_labels=job.prompts.point_labels(), multimask=True)
                order = np.argsort(-pred.scores)
                masks, scores = pred.masks[order].astype(bool), pred.scores[order]
                window = job.default_window
            else:
                clicks = tuple(click_strategy.Click(p.x, p.y, p.positive) for p in points)
                candidates = candidate_windows(job.volume, raw, box) if box is not None else [job.default_window]
                outcome = slice_segmentation.segment_slice(predict_in, job.prompt_kind, raw.shape, candidates,
                                                           box_xyxy=box, clicks=clicks, image_in=image_in)
                masks, scores, window = outcome.mask[None].astype(bool), np.array([1.0]), outcome.window
            payload = ("preview", job, masks, scores, window, None)
        except _Superseded:
            return
        except Exception as exc:  # noqa: BLE001 - reported to the user through the error signal
            log.warning("segmentation failed: %s", exc, exc_info=True)
            payload = ("preview", job, None, None, None, f"{type(exc).__name__}: {exc}")
        if not self._closed:
            self._delivered.emit(payload)

    # ---- propagation ------------------------------------------------------------------------
    def propagate(self, axis: int) -> None:
        """Propagate the active label along `axis` from its key slices (accepting a preview on this
        slice first): every slice the user segmented, brushed or erased for it. Without keys on
        this axis, the label's mask on this slice is the one key."""
        if not self.ready:
            raise RuntimeError("the segmentation engine is not ready")
        if self.propagating:
            return
        doc = self.doc
        index = doc.slice_index(axis)
        if doc.preview is not None and doc.preview.axis == axis and doc.preview.index == index:
            doc.accept_preview()
        if not doc.active_label:
            raise ValueError("choose a label to propagate")
        keys = self.propagation_keys(axis, doc.active_label)
        if not any(k.mask.any() for k in keys):
            raise ValueError(f"label {doc.labels.table[doc.active_label].name!r} has no voxels on this slice: "
                             "segment it here first, then propagate")
        self._cancel_propagation = threading.Event()
        self.propagating = True
        self.executor.cancel_prefetch()
        job = PropagationJob(next(self._generation), doc.volume, axis, tuple(keys), doc.active_label)
        self.propagation_progress.emit(0, 1)
        self._prompt_pool.submit(self._run_propagation, job, self._cancel_propagation)

    def propagation_keys(self, axis: int, label_id: int) -> list:
        """engine.propagate.Key per key slice of `label_id` along `axis`, masks read from the label
        map now; a slice brushed or erased (no window of its own) uses its nearest segmented key's
        window, else the default model window."""
        from annotator.engine.propagate import Key

        doc = self.doc
        marks = doc.key_marks(label_id, axis)
        if not marks:
            index = doc.slice_index(axis)
            return [Key(index, doc.label_slice(axis, index) == label_id, self.model_window())]
        windowed = {i: Window.from_bounds(*m.window) for i, m in marks.items() if m.window is not None}
        keys = []
        for index in sorted(marks):
            if index in windowed:
                window = windowed[index]
            elif windowed:
                window = windowed[min(windowed, key=lambda i: abs(i - index))]
            else:
                window = self.model_window()
            keys.append(Key(index, doc.label_slice(axis, index) == label_id, window))
        return keys

    def cancel_propagation(self) -> None:
        self._cancel_propagation.set()

    def _run_propagation(self, job: PropagationJob, cancel: threading.Event) -> None:
        from annotator.engine.executor import SliceRef
        from annotator.engine.propagate import propagate_volume

        executor = self.executor
        if executor is None:
            if not self._closed:
                self._delivered.emit(("propagation", job, None, "the engine stopped"))
            return
        first = job.keys[0]
        predictor = _following_slices(self, executor, SliceRef(job.volume, job.axis, first.index, first.window))

        def progress(done: int, total: int) -> None:
            if not self._closed:
                self._delivered.emit(("propagation-progress", done, total))

        try:
            result = propagate_volume(predictor, job.volume, job.axis, list(job.keys), progress=progress,
                                      cancel=cancel)
            payload = ("propagation", job, result, None)
        except Exception as exc:  # noqa: BLE001 - reported to the user (or a cancel when stopping)
            if cancel.is_set() or self._closed:
                payload = ("propagation", job, None, "cancelled")
            else:
                log.warning("propagation failed: %s", exc, exc_info=True)
                payload = ("propagation", job, None, f"{type(exc).__name__}: {exc}")
        finally:
            executor.cancel_prefetch()
        if not self._closed:
            self._delivered.emit(payload)

    # ---- results, on the GUI thread ---------------------------------------------------------
    def _on_delivered(self, payload: tuple) -> None:
        if self._closed:
            return
        kind = payload[0]
        if kind == "engine":
            _, engine, exc = payload
            if exc is not None:
                self.state = "failed"
                self.load_error = str(exc)
                self.status_changed.emit()
                self.error.emit(f"Could not load the segmentation engine: {exc}")
            else:
                self._build(engine)
        elif kind == "engine-result":
            self._on_engine_result(payload[1])
        elif kind == "preview":
            self._on_preview(*payload[1:])
        elif kind == "propagation-progress":
            self.propagation_progress.emit(payload[1], payload[2])
        elif kind == "propagation-slice":
            _, axis, index = payload
            if self.doc.has_volume:
                self.doc.set_slice(axis, index)  # the views follow so the user can watch
        elif kind == "propagation":
            self._on_propagation_done(*payload[1:])

    def _on_engine_result(self, result) -> None:  # noqa: ANN001
        if result.status == "error":
            # LiteMedSAM reports a cancelled encoder run as EngineError("embedding cancelled"),
            # not EmbeddingCancelled: that is the user moving on, not a failure to show.
            if result.kind != "prefetch" and "cancelled" not in (result.error or ""):
                self.error.emit(f"Embedding failed: {result.error}")
            return
        if result.kind in ("embed", "prefetch"):
            if result.elapsed_s > 0.005:  # a cache hit costs nothing; only real encoder runs count
                self.last_embed_s = result.elapsed_s
            if result.kind == "prefetch":
                self.prefetch_done += 1
            if result.slice.index == self.doc.slice_index(result.slice.axis) and self._pending_predict is None:
                self.busy_text_changed.emit(result.slice.axis, "")
            self.embedding_ready.emit(result.slice.axis, result.slice.index)
            self.status_changed.emit()
        elif result.kind == "predict" and result.warnings:
            self.error.emit("; ".join(result.warnings))

    def _on_preview(self, job: PromptJob, masks, scores, window, error) -> None:  # noqa: ANN001
        if self._latest.get((job.axis, job.index)) != job.generation:
            return  # a newer request for this slice exists, or Esc discarded it
        self.busy_text_changed.emit(job.axis, "")
        if error is not None:
            self.error.emit(f"Segmentation failed: {error}")
            return
        if self.doc.volume is not job.volume or self.doc.prompts(job.axis, job.index) != job.prompts:
            return  # the image or the prompts changed meanwhile; their own job is coming
        self.doc.set_preview(Preview(job.axis, job.index, masks, scores, window=window))
        self.prediction_ready.emit()

    def _on_propagation_done(self, job: PropagationJob, result, error) -> None:  # noqa: ANN001
        from annotator.engine.propagate import propagation_edit

        self.propagating = False
        if error is not None or result is None or result.cancelled:
            reason = error or "cancelled"
            self.propagation_finished.emit(reason)
            if reason != "cancelled":
                self.error.emit(f"Propagation failed: {reason}")
            return
        if self.doc.volume is not job.volume:
            self.propagation_finished.emit("the image changed")
            return
        name = self.doc.labels.table[job.label_id].name if job.label_id in self.doc.labels.table else "label"
        edit = propagation_edit(self.doc.labels, result, job.axis, job.label_id, description=f"propagate {name}")
        self.doc.apply_edit(edit)
        lo, hi = result.slice_range or (job.keys[0].index, job.keys[0].index)
        self.doc.status.emit(f"Propagated {name} over slices {lo + 1}–{hi + 1} "
                             f"(stopped: {', '.join(f'{k} {v}' for k, v in result.stops.items())})")
        self.propagation_finished.emit("")


class _Superseded(Exception):  # noqa: N818 - an outcome, not a failure
    """A newer request replaced this one, or the executor stopped."""


def _create_engine(name: str, checkpoint: str | None, runtime: str):  # noqa: ANN202 - loader thread
    from annotator.engine.factory import create_engine

    start = time.perf_counter()
    if runtime == "auto" and name in ("auto", "lite-medsam", "sam"):
        runtime = "auto-stored"  # never wait minutes for the first-start runtime check in the window
    engine = create_engine(name, checkpoint=checkpoint, runtime=runtime)
    log.info("engine %s ready in %.1f s", getattr(engine, "model_id", name), time.perf_counter() - start)
    if getattr(engine, "runtime_pending", False):
        from annotator.engine.runtime.prepare import start_background_preparation

        engine.background_check = start_background_preparation(engine=name, checkpoint=checkpoint)
        log.info("fast runtime check running in the background; used from the next start")
    return engine
