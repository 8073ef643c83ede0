"""P in the window: the active label's key slices (engine.propagate.Key, masks read from the label
map) propagated on a helper thread through the executor, progress and the slice being segmented
reported back, and the result written as one undoable edit, or nothing at all when cancelled."""

from __future__ import annotations

import itertools
import logging
import threading
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal

from annotator.core.geometry import Window
from annotator.core.volume import Volume
from annotator.engine.api import MaskPrediction
from annotator.engine.label_extent import LabelBefore, label_before
from annotator.engine.propagate import ExecutorSlices, Key, PropagationResult

if TYPE_CHECKING:
    from annotator.engine.executor import EngineExecutor, SliceRef
    from annotator.qt.engine_bridge import EngineBridge

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PropagationJob:
    generation: int
    volume: Volume
    axis: int
    keys: tuple[Key, ...]
    label_id: int
    before: LabelBefore = field(repr=False)  # the label before the run: its extent, masks and new keys


@dataclass(frozen=True)
class PropagationOutcome:
    """The result of a job; `error` is set when it failed, `cancelled` when the user stopped it."""

    job: PropagationJob
    result: PropagationResult | None = None
    error: str | None = None
    cancelled: bool = False


class _FollowingSlices(ExecutorSlices):
    """ExecutorSlices that also tells the GUI which slice is being segmented, so the views follow."""

    def __init__(self, controller: PropagationController, executor: EngineExecutor, view: SliceRef) -> None:
        super().__init__(executor, view)
        self.controller = controller

    def predict(self, index: int, window: Window, *, box_xyxy: np.ndarray) -> MaskPrediction:
        if not self.controller.closed:
            self.controller._slice.emit(self.view.axis, int(index))
        return super().predict(index, window, box_xyxy=box_xyxy)


class PropagationController(QObject):
    """One propagation at a time for the window; `finished` says "" on success, else why not."""

    progress = Signal(int, int)  # done, total
    finished = Signal(str)
    failed = Signal(str)
    _progress = Signal(int, int)        # from the helper thread
    _slice = Signal(int, int)           # axis, index being segmented, from the helper thread
    _done = Signal(object)              # PropagationOutcome, from the helper thread

    def __init__(self, host: EngineBridge, helper: Executor, generations: itertools.count) -> None:
        super().__init__(host)
        self.host = host
        self.doc = host.doc
        self.helper = helper
        self.generations = generations
        self.running = False
        self.closed = False
        self._cancel = threading.Event()
        self._progress.connect(self._on_progress, Qt.ConnectionType.QueuedConnection)
        self._slice.connect(self._on_slice, Qt.ConnectionType.QueuedConnection)
        self._done.connect(self._on_done, Qt.ConnectionType.QueuedConnection)

    def keys(self, axis: int, label_id: int) -> list[Key]:
        """Key per key slice of `label_id` along `axis`, masks read from the label map now; a slice
        brushed or erased (no window of its own) uses its nearest segmented key's window, else the
        default model window. Without keys, the label's mask on the current slice is the key."""
        doc = self.doc
        marks = doc.key_marks(label_id, axis)
        if not marks:
            index = doc.slice_index(axis)
            return [Key(index, doc.label_slice(axis, index) == label_id, self.host.model_window())]
        keys = []
        for index in sorted(marks):
            bounds = doc.model_window_at(label_id, axis, index)
            window = Window.from_bounds(*bounds) if bounds is not None else self.host.model_window()
            keys.append(Key(index, doc.label_slice(axis, index) == label_id, window))
        return keys

    def start(self, axis: int) -> None:
        """Propagate the active label along `axis` (accepting a preview on this slice first)."""
        host, doc = self.host, self.doc
        executor = host.executor
        if executor is None or not host.ready:
            raise RuntimeError("the segmentation engine is not ready")
        if self.running:
            return
        index = doc.slice_index(axis)
        if doc.preview is not None and doc.preview.axis == axis and doc.preview.index == index:
            doc.accept_preview()
        if not doc.active_label:
            raise ValueError("choose a label to propagate")
        keys = self.keys(axis, doc.active_label)
        if not any(k.mask.any() for k in keys):
            raise ValueError(f"label {doc.labels.table[doc.active_label].name!r} has no voxels on this slice: "
                             "segment it here first, then propagate")
        self._cancel = threading.Event()
        self.running = True
        executor.cancel_prefetch()
        before = label_before(doc.labels.array == doc.active_label, axis, [k.index for k in keys],
                              doc.keys_since_propagation(doc.active_label, axis))
        job = PropagationJob(next(self.generations), doc.current_volume(), axis, tuple(keys), doc.active_label,
                             before)
        self.progress.emit(0, 1)
        self.helper.submit(self._run, job, self._cancel)

    def cancel(self) -> None:
        self._cancel.set()

    def stop(self) -> None:
        self.closed = True
        self._cancel.set()

    def _run(self, job: PropagationJob, cancel: threading.Event) -> None:
        """Helper thread."""
        from annotator.engine.executor import SliceRef
        from annotator.engine.propagate import propagate_volume

        executor = self.host.executor
        if executor is None:
            if not self.closed:
                self._done.emit(PropagationOutcome(job, error="the engine stopped"))
            return
        first = job.keys[0]
        predictor = _FollowingSlices(self, executor, SliceRef(job.volume, job.axis, first.index, first.window))

        def progress(done: int, total: int) -> None:
            if not self.closed:
                self._progress.emit(done, total)

        try:
            result = propagate_volume(predictor, job.volume, job.axis, list(job.keys), progress=progress,
                                      cancel=cancel, **job.before._asdict())
            outcome = PropagationOutcome(job, result, cancelled=result.cancelled)
        except Exception as exc:  # reported to the user (or a cancel when stopping)
            if cancel.is_set() or self.closed:
                outcome = PropagationOutcome(job, cancelled=True)
            else:
                log.warning("propagation failed: %s", exc, exc_info=True)
                outcome = PropagationOutcome(job, error=f"{type(exc).__name__}: {exc}")
        finally:
            executor.cancel_prefetch()
        if not self.closed:
            self._done.emit(outcome)

    # ---- on the GUI thread ------------------------------------------------------------------
    def _on_progress(self, done: int, total: int) -> None:
        if not self.closed:
            self.progress.emit(done, total)

    def _on_slice(self, axis: int, index: int) -> None:
        if not self.closed and self.doc.has_volume:
            self.doc.set_slice(axis, index)  # the views follow so the user can watch

    def _on_done(self, outcome: PropagationOutcome) -> None:
        from annotator.engine.propagation_edit import propagation_edit

        if self.closed:
            return
        self.running = False
        job = outcome.job
        if outcome.cancelled or outcome.error is not None or outcome.result is None:
            reason = "cancelled" if outcome.cancelled else (outcome.error or "no result")
            self.finished.emit(reason)
            if not outcome.cancelled:
                self.failed.emit(f"Propagation failed: {reason}")
            return
        if self.doc.volume is not job.volume:
            self.finished.emit("the image changed")
            return
        result = outcome.result
        labels = self.doc.labels
        name = labels.table[job.label_id].name if job.label_id in labels.table else "label"
        self.doc.apply_propagation(propagation_edit(labels, result, job.axis, job.label_id,
                                                    description=f"propagate {name}"),
                                   job.label_id, job.axis, [k.index for k in job.keys])
        lo, hi = result.slice_range or (job.keys[0].index, job.keys[0].index)
        self.doc.status.emit(f"Propagated {name} over slices {lo + 1}–{hi + 1} "
                             f"(stopped: {', '.join(f'{k} {v}' for k, v in result.stops.items())})")
        self.finished.emit("")
