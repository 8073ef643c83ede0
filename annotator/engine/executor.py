"""EngineExecutor: one long-lived worker thread owns the model, so the GUI never waits on it and
two torch jobs never compete; requests carry ids so superseded work is skipped and stale results dropped.

Usage (Qt-free; qt/engine_bridge.py re-emits `on_result` into the GUI thread)::

    service = EmbeddingService(engine, EmbeddingCache.from_settings())
    executor = EngineExecutor(service, on_result=bridge.handle_result_from_worker)
    view = SliceRef(volume, axis=0, index=42, window=Window(40, 400))
    executor.embed(view)                       # the visible slice, high priority
    executor.prefetch(view, radius=3)          # 42, 43, 41, 44, 40, 45, 39 (low priority)
    executor.prefetch(view, 1, windows=[lung], direction=-1)  # 42, 42 in lung, 41, 43
    ticket = executor.predict(PredictRequest.from_prompts(view, prompts))
    ticket.future.result()                     # EngineResult (tests); the GUI uses on_result
    executor.shutdown()                        # on quit: cancels queued work, joins the thread

Contract:
- Every submit returns a Ticket(request_id, future). Request ids increase monotonically across
  all kinds. The future always resolves to an EngineResult (never raises): status "ok", "error"
  (the engine raised; the worker lives on), "cancelled" (cancel(), superseded before it ran,
  prefetch moved, shutdown) or "stale" (it ran but a newer predict for the same slice exists).
- `on_result(result)` is called ON THE WORKER THREAD for "ok" and "error" results only;
  stale and cancelled results are never delivered. Keep it short and thread-safe (emit a
  Qt signal to a GUI-thread QObject's bound method, or use superqt.ensure_main_thread).
- Priority: predict > embed (visible slice) > prefetch; FIFO within a priority. One job runs at
  a time; a running prefetch may be interrupted (make_way), other running work is not.
- predict: a newer predict for the same slice (same Volume object, axis, index) cancels queued
  older ones, and an older one that completes after a newer one was submitted is "stale".
- embed: a newer embed request for the same volume and axis (one slice view) cancels queued
  older ones for that view (the user scrolled on); other views' requests are kept.
  embed(view, supersede=False) queues work that is neither cancelled by later embeds nor
  cancels others (e.g. slices a propagation will need next).
- make_way(refs): a running prefetch of a (slice, window) not in refs is interrupted (OpenVINO
  stops within a few ms, torch at its next block, ONNX Runtime at its next node) and queued
  again; called with the embeddings a prompt is about to need.
- prefetch(view, radius, windows=(), direction=1): cancels the previous prefetch, then queues
  view.index, view.index in each extra window, then +1, -1, +2, -2, ... (-1, +1, ... when
  direction is negative) within the volume. Already-cached slices cost nothing.
- A CUDA out-of-memory error re-runs that request on a CPU copy of the engine (engine method
  `cpu_fallback()`, or the `cpu_fallback` factory given here) and reports a warning in
  result.warnings; the GPU engine is kept for later requests.
- `synchronous=True` runs every request on the caller's thread at submit time (the force-sync
  escape hatch for debugging and profiling); prefetch is then a no-op.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from annotator.core.geometry import Window
from annotator.core.prompts import PromptSet
from annotator.core.volume import Volume
from annotator.engine.api import ImageEmbedding, MaskPrediction, PromptEngine
from annotator.engine.service import EmbeddingCancelled, EmbeddingService

log = logging.getLogger(__name__)

ORDER_HISTORY = 10_000
RequestKind = Literal["predict", "embed", "prefetch"]
ResultStatus = Literal["ok", "error", "cancelled", "stale"]

PRIORITY_PREDICT = 0
PRIORITY_EMBED = 1
PRIORITY_PREFETCH = 2
_KIND_PRIORITY: dict[RequestKind, int] = {"predict": PRIORITY_PREDICT, "embed": PRIORITY_EMBED, "prefetch": PRIORITY_PREFETCH}


@dataclass(frozen=True, eq=False)
class SliceRef:
    """Which slice: an immutable snapshot captured on the GUI thread (the Volume is frozen)."""

    volume: Volume = field(repr=False)
    axis: int
    index: int
    window: Window

    def slot(self) -> tuple[int, int, int]:
        """Identity of the slice for supersede/stale decisions (cheap: no content hashing)."""
        return (id(self.volume), int(self.axis), int(self.index))

    def at(self, index: int) -> SliceRef:
        return SliceRef(self.volume, self.axis, int(index), self.window)


@dataclass(frozen=True, eq=False)
class PredictRequest:
    """Prompts for one slice in raw-slice pixels (x = column, y = row), as PromptEngine.predict."""

    slice: SliceRef
    points_xy: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    box_xyxy: np.ndarray | None = None
    mask_input: np.ndarray | None = None
    multimask: bool = True

    @classmethod
    def from_prompts(cls, view: SliceRef, prompts: PromptSet, *, mask_input: np.ndarray | None = None,
                     multimask: bool | None = None) -> PredictRequest:
        """From a PromptSet; multimask defaults to True for a single click, False otherwise (SAM's advice)."""
        has_points = len(prompts.points) > 0
        if multimask is None:
            multimask = len(prompts.points) == 1 and prompts.box is None
        return cls(
            slice=view,
            points_xy=prompts.points_xy() if has_points else None,
            point_labels=prompts.point_labels() if has_points else None,
            box_xyxy=prompts.box.xyxy() if prompts.box is not None else None,
            mask_input=mask_input,
            multimask=bool(multimask),
        )


@dataclass(frozen=True, eq=False)
class EngineResult:
    """The outcome of one request; see the module docstring for the meaning of `status`."""

    request_id: int
    kind: RequestKind
    slice: SliceRef
    status: ResultStatus
    prediction: MaskPrediction | None = field(default=None, repr=False)
    embedding: ImageEmbedding | None = field(default=None, repr=False)
    error: str | None = None
    warnings: tuple[str, ...] = ()
    elapsed_s: float = 0.0
    device: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class PredictionSuperseded(Exception):  # an outcome, like KeyboardInterrupt
    """The prediction was cancelled, superseded by a newer one for its slice, or the executor stopped."""


@dataclass(frozen=True, eq=False)
class Ticket:
    """Handle of a submitted request."""

    request_id: int
    kind: RequestKind
    future: Future = field(repr=False)
    view: SliceRef | None = field(default=None, repr=False)  # the slice and window it is about

    def result(self, timeout: float | None = None) -> EngineResult:
        return self.future.result(timeout=timeout)


@dataclass(eq=False)
class _Job:
    request_id: int
    kind: RequestKind
    view: SliceRef
    request: PredictRequest | None
    future: Future
    cancel: threading.Event = field(default_factory=threading.Event)
    prefetch_generation: int = 0
    sticky: bool = False  # embed(supersede=False): never superseded


@dataclass
class ExecutorStats:
    ran: int = 0
    cancelled: int = 0
    stale: int = 0
    errors: int = 0
    cpu_fallbacks: int = 0
    interrupted: int = 0  # running prefetches stopped for a prompt (make_way)
    # (kind, slice index) of the last requests run, for tests and logs; bounded for long sessions
    order: deque[tuple[RequestKind, int]] = field(default_factory=lambda: deque(maxlen=ORDER_HISTORY))


def _view_key(view: SliceRef) -> tuple[int, int]:
    """One slice view: a volume seen along one array axis."""
    return (id(view.volume), int(view.axis))


def _is_cuda_oom(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")
    oom_type = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None) if torch else None
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "CUDA out of memory" in str(exc)


def prefetch_order(center: int, radius: int, count: int, direction: int = 1) -> list[int]:
    """center, center+1, center-1, center+2, center-2, ... within 0..count-1; with direction -1 the
    lower neighbour of each pair comes first (the user was scrolling down through the indices)."""
    order = [center] if 0 <= center < count else []
    sign = -1 if direction < 0 else 1
    for step in range(1, max(0, radius) + 1):
        for index in (center + sign * step, center - sign * step):
            if 0 <= index < count:
                order.append(index)
    return order


class EngineExecutor:
    """One worker thread that owns the engine; see the module docstring for the contract."""

    def __init__(self, service: EmbeddingService, *, on_result: Callable[[EngineResult], None] | None = None,
                 cpu_fallback: Callable[[], PromptEngine] | None = None, synchronous: bool = False,
                 name: str = "annotator-engine") -> None:
        self.service = service
        self.on_result = on_result
        self.synchronous = synchronous
        self.stats = ExecutorStats()
        self._cpu_fallback_factory = cpu_fallback or getattr(service.engine, "cpu_fallback", None)
        self._cpu_service: EmbeddingService | None = None
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self._heap: list[tuple[int, int, _Job]] = []
        self._queued: dict[int, _Job] = {}
        self._running: _Job | None = None
        self._latest_predict: dict[tuple[int, int, int], int] = {}
        self._latest_embed: dict[tuple[int, int], int] = {}
        self._prefetch_generation = 0
        self._prompts_active = 0  # prompts in progress (prompting): prefetch waits
        self._closed = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        if not synchronous:
            self._thread = threading.Thread(target=self._worker, name=name, daemon=True)
            self._thread.start()

    # ---- submitting (any thread) ------------------------------------------------------------
    @property
    def engine(self) -> PromptEngine:
        return self.service.engine

    def predict(self, request: PredictRequest) -> Ticket:
        """Queue a prediction; supersedes queued older predictions for the same slice."""
        with self._cond:
            job = self._new_job("predict", request.slice, request)
            slot = request.slice.slot()
            self._latest_predict[slot] = job.request_id
            for other in list(self._queued.values()):
                if other.kind == "predict" and other.view.slot() == slot:
                    self._cancel_queued(other)
            return self._enqueue(job)

    def predict_result(self, request: PredictRequest, timeout: float | None = None) -> MaskPrediction:
        """predict() and wait: the prediction, EngineError when the engine failed, or
        PredictionSuperseded when it was cancelled, superseded or the executor stopped."""
        from annotator.engine.api import EngineError

        result = self.predict(request).result(timeout=timeout)
        if result.status == "ok" and result.prediction is not None:
            return result.prediction
        if result.status == "error":
            raise EngineError(result.error or "prediction failed")
        raise PredictionSuperseded(f"prediction on slice {request.slice.index} was {result.status}")

    def embed(self, view: SliceRef, *, supersede: bool = True) -> Ticket:
        """Queue the embedding of the visible slice; cancels queued older embeds of the same view.

        supersede=False: keep this request whatever is submitted later, and cancel nothing.
        """
        with self._cond:
            job = self._new_job("embed", view, None)
            job.sticky = not supersede
            if supersede:
                self._latest_embed[_view_key(view)] = job.request_id
                for other in list(self._queued.values()):
                    if other.kind == "embed" and not other.sticky and _view_key(other.view) == _view_key(view):
                        self._cancel_queued(other)
            return self._enqueue(job)

    def prefetch(self, view: SliceRef, radius: int, *, windows: Sequence[Window] = (),
                 direction: int = 1) -> list[Ticket]:
        """Cancel the previous prefetch; queue view.index, then view.index in each of `windows` (the
        other model input windows a box on it may try), then its neighbours outward in both
        directions, the `direction` of scrolling first."""
        if self.synchronous:
            return []
        count = int(view.volume.array.shape[view.axis])
        indices = prefetch_order(int(view.index), int(radius), count, direction)
        refs: list[SliceRef] = []
        if indices:  # the visible slice lies inside the volume
            others = [w for w in dict.fromkeys(windows) if w.key() != view.window.key()]
            refs = [view] + [SliceRef(view.volume, view.axis, view.index, w) for w in others]
        refs += [view.at(index) for index in indices[1:]]
        with self._cond:
            self._cancel_prefetch_locked()
            tickets = []
            for ref in refs:
                job = self._new_job("prefetch", ref, None)
                job.prefetch_generation = self._prefetch_generation
                tickets.append(self._enqueue(job))
            return tickets

    @contextmanager
    def prompting(self, needed: Sequence[SliceRef]) -> Iterator[None]:
        """While a prompt's predictions run (one after another, each submitted when the last one
        ends), no prefetch job starts in the gaps between them; on entry make_way(needed)."""
        self.make_way(needed)
        with self._cond:
            self._prompts_active += 1
        try:
            yield
        finally:
            with self._cond:
                self._prompts_active -= 1
                self._cond.notify_all()

    def make_way(self, needed: Sequence[SliceRef]) -> None:
        """The predictions about to be submitted need these (slice, window) embeddings: a running
        prefetch of anything else is interrupted (OpenVINO, torch and ONNX Runtime runs stop mid-run) and
        queued again behind them, so a prompt does not wait for background work it does not need."""
        wanted = {(ref.slot(), ref.window.key()) for ref in needed}
        with self._cond:
            job = self._running
            if job is None or job.kind != "prefetch" or job.cancel.is_set() or self._closed:
                return
            if (job.view.slot(), job.view.window.key()) in wanted:
                return  # the prompt needs it: waiting for it beats starting it again
            job.cancel.set()
            self.stats.interrupted += 1
            again = self._new_job("prefetch", job.view, None)
            again.prefetch_generation = job.prefetch_generation
            self._enqueue(again)

    def cancel_prefetch(self) -> None:
        """Drop all queued prefetch work (the user moved elsewhere)."""
        with self._cond:
            self._cancel_prefetch_locked()

    def cancel(self, request_id: int) -> bool:
        """Cancel a queued or running request; True if it was still pending or running."""
        with self._cond:
            job = self._queued.get(request_id)
            if job is not None:
                self._cancel_queued(job)
                return True
            if self._running is not None and self._running.request_id == request_id:
                self._running.cancel.set()
                return True
            return False

    def pending_count(self) -> int:
        with self._cond:
            return len(self._queued) + (1 if self._running is not None else 0)

    def wait_until_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is queued or running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queued and self._running is None, timeout=timeout)

    def shutdown(self, cancel_futures: bool = True, timeout: float | None = 10.0) -> bool:
        """Stop accepting work, cancel (or drain) the queue, join the worker. True if it stopped."""
        with self._cond:
            self._closed = True
            if cancel_futures:
                for job in list(self._queued.values()):
                    self._cancel_queued(job)
                if self._running is not None:
                    self._running.cancel.set()
            self._cond.notify_all()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        alive = self._thread.is_alive()
        if alive:
            log.warning("engine worker still running after %.1f s; it will stop after its current job", timeout or 0)
        return not alive

    def __enter__(self) -> EngineExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ---- internals (hold self._cond) --------------------------------------------------------
    def _new_job(self, kind: RequestKind, view: SliceRef, request: PredictRequest | None) -> _Job:
        if self._closed:
            raise RuntimeError("EngineExecutor is shut down")
        return _Job(request_id=next(self._ids), kind=kind, view=view, request=request, future=Future())

    def _enqueue(self, job: _Job) -> Ticket:
        ticket = Ticket(job.request_id, job.kind, job.future, job.view)
        if self.synchronous:
            self._run(job)
            self._forget(job)
            return ticket
        self._queued[job.request_id] = job
        heapq.heappush(self._heap, (_KIND_PRIORITY[job.kind], next(self._seq), job))
        self._cond.notify_all()
        return ticket

    def _cancel_queued(self, job: _Job) -> None:
        job.cancel.set()
        if self._queued.pop(job.request_id, None) is not None:
            self.stats.cancelled += 1
            job.future.set_result(EngineResult(job.request_id, job.kind, job.view, "cancelled"))
        self._cond.notify_all()

    def _cancel_prefetch_locked(self) -> None:
        self._prefetch_generation += 1
        for job in list(self._queued.values()):
            if job.kind == "prefetch":
                self._cancel_queued(job)
        if self._running is not None and self._running.kind == "prefetch":
            self._running.cancel.set()

    def _forget(self, job: _Job) -> None:
        # "Latest request per slice" only matters while a request for that slice is pending: a
        # long session over many volumes must not keep one entry per slice it ever touched.
        if job.kind == "predict" and self._latest_predict.get(job.view.slot()) == job.request_id:
            del self._latest_predict[job.view.slot()]
        elif job.kind == "embed" and self._latest_embed.get(_view_key(job.view)) == job.request_id:
            del self._latest_embed[_view_key(job.view)]

    def _is_superseded(self, job: _Job) -> bool:
        if job.kind == "predict":
            return job.request_id < self._latest_predict.get(job.view.slot(), 0)
        if job.kind == "embed":
            return not job.sticky and job.request_id < self._latest_embed.get(_view_key(job.view), 0)
        return job.prefetch_generation < self._prefetch_generation

    # ---- the worker --------------------------------------------------------------------------
    def _worker(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._heap or (
                        self._prompts_active and self._heap[0][2].kind == "prefetch")):
                    self._cond.wait()
                if not self._heap:
                    break  # closed and drained
                _, _, job = heapq.heappop(self._heap)
                if self._queued.pop(job.request_id, None) is None:
                    continue  # cancelled while queued; its future is already resolved
                self._running = job
            try:
                self._run(job)
            finally:
                with self._cond:
                    self._running = None
                    self._forget(job)
                    self._cond.notify_all()

    def _run(self, job: _Job) -> None:
        if job.cancel.is_set():
            self._finish(job, EngineResult(job.request_id, job.kind, job.view, "cancelled"))
            return
        start = time.perf_counter()
        warnings: list[str] = []
        service = self.service
        try:
            try:
                result = self._compute(job, service, start, warnings)
            except Exception as exc:
                fallback = self._cpu_service_for(exc)
                if fallback is None:
                    raise
                message = (f"CUDA out of memory on {job.kind} of slice {job.view.index}; "
                           f"ran it on the CPU instead ({exc})")
                log.warning(message)
                warnings.append(message)
                self.stats.cpu_fallbacks += 1
                _empty_cuda_cache()
                result = self._compute(job, fallback, start, warnings)
        except EmbeddingCancelled:
            result = EngineResult(job.request_id, job.kind, job.view, "cancelled")
        except Exception as exc:  # reported as a result; the worker must live on
            log.warning("engine %s request %d failed: %s: %s", job.kind, job.request_id, type(exc).__name__, exc,
                        exc_info=True)
            result = EngineResult(job.request_id, job.kind, job.view, "error", error=f"{type(exc).__name__}: {exc}",
                                  warnings=tuple(warnings), elapsed_s=time.perf_counter() - start,
                                  device=str(getattr(self.engine, "device", "")))
        self._finish(job, result)

    def _compute(self, job: _Job, service: EmbeddingService, start: float, warnings: list[str]) -> EngineResult:
        with self._cond:
            superseded = self._is_superseded(job)
        if superseded:
            return EngineResult(job.request_id, job.kind, job.view, "cancelled")
        self.stats.order.append((job.kind, job.view.index))
        view = job.view
        embedding = service.embedding(view.volume, view.axis, view.index, view.window, cancel=job.cancel)
        prediction = None
        if job.kind == "predict":
            req = job.request
            assert req is not None  # internal invariant: predict jobs carry a request
            prediction = service.engine.predict(
                embedding, points_xy=req.points_xy, point_labels=req.point_labels, box_xyxy=req.box_xyxy,
                mask_input=req.mask_input, multimask=req.multimask)
        self.stats.ran += 1
        return EngineResult(job.request_id, job.kind, view, "ok", prediction=prediction,
                            embedding=embedding if job.kind != "predict" else None,
                            warnings=tuple(warnings), elapsed_s=time.perf_counter() - start,
                            device=str(getattr(service.engine, "device", "")))

    def _cpu_service_for(self, exc: BaseException) -> EmbeddingService | None:
        if not _is_cuda_oom(exc) or self._cpu_fallback_factory is None:
            return None
        if self._cpu_service is None:
            self._cpu_service = EmbeddingService(self._cpu_fallback_factory(), self.service.cache)
        return self._cpu_service

    def _finish(self, job: _Job, result: EngineResult) -> None:
        if result.status == "ok" and job.kind == "predict":
            with self._cond:
                if self._is_superseded(job):
                    result = EngineResult(job.request_id, job.kind, job.view, "stale", prediction=result.prediction,
                                          elapsed_s=result.elapsed_s, device=result.device)
        if result.status == "ok" and job.cancel.is_set() and job.kind == "predict":
            result = EngineResult(job.request_id, job.kind, job.view, "cancelled")
        if result.status == "stale":
            self.stats.stale += 1
        elif result.status == "cancelled":
            self.stats.cancelled += 1
        elif result.status == "error":
            self.stats.errors += 1
        if result.status in ("ok", "error") and self.on_result is not None:
            try:
                self.on_result(result)
            except Exception:  # a broken listener must not kill the worker
                log.exception("on_result callback failed for request %d", job.request_id)
        if not job.future.done():
            job.future.set_result(result)


def _empty_cuda_cache() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
