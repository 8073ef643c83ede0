"""Run whole-volume work (loading, export) off the GUI thread and deliver the outcome back into it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal

log = logging.getLogger(__name__)


class BackgroundRunner(QObject):
    """One worker thread for file jobs. Outcomes cross into the GUI thread through a Qt signal
    connected to this object's bound method (queued, since the signal is emitted off-thread)."""

    _finished = Signal(object)  # (job id, callback, errback, result or exception, ok)
    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="annotator-io")
        self._pending = 0
        self._closed = False
        # Queued even when emitted on this thread (a job that ended before its callback was
        # attached): outcomes always arrive through the event loop, in order.
        self._finished.connect(self._on_finished, Qt.ConnectionType.QueuedConnection)

    @property
    def busy(self) -> bool:
        return self._pending > 0

    def submit(self, fn: Callable[[], Any], on_done: Callable[[Any], None],
               on_error: Callable[[BaseException], None]) -> Future:
        if self._closed:
            raise RuntimeError("background runner is shut down")
        self._pending += 1
        if self._pending == 1:
            self.busy_changed.emit(True)
        future = self._pool.submit(fn)
        future.add_done_callback(lambda f: self._deliver(f, on_done, on_error))
        return future

    def _deliver(self, future: Future, on_done: Callable[[Any], None],
                 on_error: Callable[[BaseException], None]) -> None:  # worker thread
        if self._closed:
            return
        exc = future.exception()
        self._finished.emit((on_done, on_error, exc if exc is not None else future.result(), exc is None))

    def _on_finished(self, payload: tuple) -> None:
        on_done, on_error, value, ok = payload
        self._pending -= 1
        if self._pending == 0:
            self.busy_changed.emit(False)
        (on_done if ok else on_error)(value)

    def shutdown(self, wait: bool = True, cancel: bool = True) -> None:
        """Stop; cancel=False lets queued jobs finish first (their results are then dropped)."""
        self._closed = True
        self._pool.shutdown(wait=wait, cancel_futures=cancel)
