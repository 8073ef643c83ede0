"""Prompts to preview: bursts of clicks become one job after a short pause, the job runs the app's
slice segmentation (input window per box, click strategy) on a helper thread whose every model
call is a request to the executor, and the newest result for a slice becomes the document's preview."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer, Signal

from annotator.core.document import Preview
from annotator.core.geometry import Window, slice_2d
from annotator.core.prompts import BaseMask, PointPrompt, PromptSet
from annotator.core.volume import Volume
from annotator.engine.api import MaskPrediction
from annotator.engine.executor import PredictionSuperseded

if TYPE_CHECKING:
    from annotator.qt.engine_bridge import EngineBridge

log = logging.getLogger(__name__)

CLICK_DEBOUNCE_MS = 100


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

    @property
    def base(self) -> BaseMask | None:
        """The label's mask the clicks correct (none once a box was drawn)."""
        return self.prompts.base if self.prompts.box is None else None

    @property
    def first_window(self) -> Window:
        """The model window the first prediction needs without a box: the corrected mask's, else the default."""
        base = self.base
        return Window.from_bounds(*base.window) if base is not None and base.window is not None \
            else self.default_window


@dataclass(frozen=True)
class PreviewResult:
    """What a prompt job produced: candidate masks and the window they were made in, or an error."""

    job: PromptJob
    masks: np.ndarray | None = None
    scores: np.ndarray | None = None
    window: Window | None = None
    error: str | None = None


class PromptController(QObject):
    """Turns the slice's prompts into a preview, through `host` (the EngineBridge: engine state,
    embedding service, `wait_prediction`, `model_window`)."""

    prediction_ready = Signal()
    busy_text = Signal(int, str)  # axis, text ("" clears)
    failed = Signal(str)
    _preview_ready = Signal(object)  # PreviewResult, from the helper thread

    def __init__(self, host: EngineBridge, helper: Executor, generations: itertools.count) -> None:
        super().__init__(host)
        self.host = host
        self.doc = host.doc
        self.helper = helper
        self.generations = generations
        self.closed = False
        self.pending: tuple[int, int] | None = None
        # the slice whose prompts came while the model was still loading: run once it is ready
        self.waiting_for_engine: tuple[int, int] | None = None
        self._latest: dict[tuple[int, int], int] = {}
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(CLICK_DEBOUNCE_MS)
        self._debounce.timeout.connect(self._on_debounce_timeout)
        self._preview_ready.connect(self._on_preview_ready, Qt.ConnectionType.QueuedConnection)

    def request(self, axis: int, index: int, *, at_once: bool = False) -> None:
        """Segment the slice's prompts after a short pause (bursts of clicks become one job), or
        `at_once` (a box: one deliberate gesture, nothing to gather)."""
        self.pending = (axis, index)
        if at_once:
            self._debounce.stop()
            self._on_debounce_timeout()
        else:
            self._debounce.start()

    def add_click(self, axis: int, index: int, point: PointPrompt) -> None:
        self.doc.add_point(axis, index, point)
        self.request(axis, index)

    def discard(self) -> None:
        """Esc: forget pending work for the slice; a result still in flight is dropped."""
        self._debounce.stop()
        self.waiting_for_engine = None
        if self.pending is not None:
            self._latest[self.pending] = next(self.generations)
            self.pending = None
        for key in list(self._latest):
            self._latest[key] = next(self.generations)
        for view_axis in range(3):
            self.busy_text.emit(view_axis, "")

    def stop(self) -> None:
        self.closed = True
        self._debounce.stop()

    def _on_debounce_timeout(self) -> None:
        if self.pending is None:
            return
        axis, index = self.pending
        self.pending = None
        if not self.doc.has_volume:
            return
        prompts = self.doc.prompts(axis, index)
        if not prompts:
            return
        host = self.host
        if not host.ready and host.state == "loading":
            # A box drawn in the first seconds after opening is the normal case, not an error: keep
            # it on screen and segment it when the model is there (engine_ready).
            if self.waiting_for_engine is not None and self.waiting_for_engine != (axis, index):
                self.busy_text.emit(self.waiting_for_engine[0], "")
            self.waiting_for_engine = (axis, index)
            self.busy_text.emit(axis, "Loading the segmentation model… (prompts kept)")
            return
        if not host.ready:
            self.failed.emit("The segmentation engine is not ready: " + (host.load_error or host.state))
            return
        generation = next(self.generations)
        self._latest[(axis, index)] = generation
        job = PromptJob(generation, self.doc.current_volume(), axis, index, prompts, getattr(host.engine, "prompt_kind", "box"),
                        host.model_window())
        if host.service is not None and not host.service.is_cached(job.volume, axis, index, job.first_window):
            self.busy_text.emit(axis, f"Embedding slice {index + 1}… (prompts kept)")
        else:
            self.busy_text.emit(axis, "Segmenting…")
        self.helper.submit(self._run, job)

    def engine_ready(self) -> None:
        """The model is loaded: segment the prompts that waited for it."""
        if self.waiting_for_engine is not None and not self.closed:
            self.pending, self.waiting_for_engine = self.waiting_for_engine, None
            self._on_debounce_timeout()

    def engine_failed(self) -> None:
        """The model could not load (the bridge reports why): the waiting prompts stay on the slice
        as drawn, with nothing running for them."""
        if self.waiting_for_engine is not None:
            self.busy_text.emit(self.waiting_for_engine[0], "")
            self.waiting_for_engine = None

    def _run(self, job: PromptJob) -> None:
        """Helper thread: the input window and click strategy (engine.slice_segmentation, as
        `annotator evaluate` runs them), each model call a request to the executor."""
        from annotator.engine import click_strategy, slice_segmentation
        from annotator.engine.executor import PredictRequest, SliceRef
        from annotator.engine.input_window import candidate_windows
        from annotator.engine.slices import slice_rgb_u8

        def predict_in(window: Window) -> Callable[..., MaskPrediction]:
            ref = SliceRef(job.volume, job.axis, job.index, window)
            return lambda **kwargs: self.host.wait_prediction(PredictRequest(ref, **kwargs))

        def image_in(window: Window) -> np.ndarray:
            return slice_rgb_u8(job.volume, job.axis, job.index, window)[..., 0]

        executor = self.host.executor
        if executor is None:
            return  # the engine stopped; nothing to show
        points = job.prompts.points
        box = job.prompts.box.xyxy() if job.prompts.box is not None else None
        base = job.base
        try:
            raw = slice_2d(job.volume.array, job.axis, job.index)
            # clicks correcting the label's mask here stay in the window that mask was made in
            candidates = candidate_windows(job.volume, raw, box) if box is not None else [job.first_window]
            # Background embeddings this prompt does not need step aside, and none starts between
            # its predictions.
            with executor.prompting([SliceRef(job.volume, job.axis, job.index, w) for w in candidates]):
                if job.prompt_kind != "box" and box is None and base is None and len(points) == 1:
                    # A lone click on a point model: keep all candidates so Tab can cycle them.
                    pred = predict_in(job.default_window)(points_xy=job.prompts.points_xy(),
                                                          point_labels=job.prompts.point_labels(), multimask=True)
                    order = np.argsort(-pred.scores)
                    result = PreviewResult(job, pred.masks[order].astype(bool), pred.scores[order],
                                           job.default_window)
                else:
                    clicks = tuple(click_strategy.Click(p.x, p.y, p.positive) for p in points)
                    start = slice_segmentation.from_mask(base.mask, candidates[0]) if base is not None else None
                    outcome = slice_segmentation.segment_slice(predict_in, job.prompt_kind, raw.shape, candidates,
                                                               box_xyxy=box, clicks=clicks, image_in=image_in,
                                                               base=start)
                    result = PreviewResult(job, outcome.mask[None].astype(bool), np.array([1.0]), outcome.window)
        except PredictionSuperseded:
            return
        except Exception as exc:  # reported to the user through the failed signal
            log.warning("segmentation failed: %s", exc, exc_info=True)
            result = PreviewResult(job, error=f"{type(exc).__name__}: {exc}")
        if not self.closed:
            self._preview_ready.emit(result)

    def _on_preview_ready(self, result: PreviewResult) -> None:
        job = result.job
        if self.closed or self._latest.get((job.axis, job.index)) != job.generation:
            return  # a newer request for this slice exists, or Esc discarded it
        self.busy_text.emit(job.axis, "")
        if result.error is not None:
            self.failed.emit(f"Segmentation failed: {result.error}")
            return
        if self.doc.volume is not job.volume or self.doc.prompts(job.axis, job.index) != job.prompts:
            return  # the image or the prompts changed meanwhile; their own job is coming
        if result.masks is None or result.scores is None:
            return
        self.doc.set_preview(Preview(job.axis, job.index, result.masks, result.scores, window=result.window))
        self.prediction_ready.emit()
