"""Dataset review in the window: walks the cases of one dataset through the document, checks them
in the background, prefetches the next case, saves edited labels back and keeps the session file.

No widgets here: the review panel (qt.panels.review_panel) observes this controller, as the views
observe the document. Loading and checking run on two background threads of their own, so a long
check of every case never delays switching to the next one.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from annotator.core.document import AnnotationDocument
from annotator.core.errors import AnnotatorError
from annotator.core.labels import LabelMap
from annotator.core.review_session import ReviewSession, load_session, session_path
from annotator.core.volume import Volume
from annotator.io.dataset import Dataset
from annotator.io.dataset_check import CaseReport, dataset_findings
from annotator.io.dataset_save import DatasetSaver
from annotator.qt.background import BackgroundRunner
from annotator.qt.errors import user_message
from annotator.qt.jobs import check_case_job, load_case_job, save_case_job

log = logging.getLogger(__name__)

Loaded = tuple[Volume, LabelMap, str]


def _open_job(path: str, output: str | None) -> tuple[Dataset, DatasetSaver, ReviewSession]:
    from annotator.io.dataset import open_dataset

    source = open_dataset(path)
    if not source.cases:
        raise ValueError(f"{path}: the dataset has no cases")
    saver = DatasetSaver(source, output)
    dataset = saver.target  # in copy mode: the copy, made now (hard links) so the session lives in it
    file = session_path(dataset.root)
    session = load_session(file, dataset.case_ids) if file.exists() else ReviewSession()
    return dataset, saver, session


class ReviewController(QObject):
    opened = Signal()  # a dataset is open (cases, session)
    reports_changed = Signal()  # findings of one or more cases arrived
    statuses_changed = Signal()
    case_opened = Signal(str)
    case_saved = Signal(str, str)  # case id, file written
    message = Signal(str)
    failed = Signal(str, str)  # title, message

    def __init__(self, doc: AnnotationDocument, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.doc = doc
        self.loader = BackgroundRunner(self)  # opening cases, prefetching the next
        self.checker = BackgroundRunner(self)  # findings, saving back
        self.dataset: Dataset | None = None
        self.saver: DatasetSaver | None = None
        self.session = ReviewSession()
        self.order: list[str] = []  # the case list as the panel shows it (sorted, filtered)
        self.current: str | None = None
        self.reports: dict[str, CaseReport] = {}
        self._local: dict[str, CaseReport] = {}  # findings of each case alone
        self._loaded_labels: np.ndarray | None = None
        self._volume: Volume | None = None  # the open case's image, as handed to the document
        self._prefetched: dict[str, Loaded] = {}
        self._prefetching: str | None = None
        self._wanted: str | None = None  # the case the user asked for while it was loading
        self.pending_saves = 0
        # Hooks of the window: leaving a case (its crash-recovery copy is settled) and edits being
        # saved back (they count as exported: the save job holds its own copy of them).
        self.on_leaving: Callable[[], None] = lambda: None
        self.on_committed: Callable[[], None] = lambda: None
        doc.volume_changed.connect(self._on_doc_volume_changed)

    # ---- opening -----------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self.dataset is not None

    def open(self, path: str | os.PathLike[str], output: str | os.PathLike[str] | None = None) -> None:
        """Open a dataset (folder or index file); with `output`, edits go into a copy there."""
        self.loader.submit(lambda: _open_job(os.fspath(path), None if output is None else os.fspath(output)),
                           self._on_opened, lambda exc: self.failed.emit("Open dataset", user_message(exc)))

    def _on_opened(self, result: tuple[Dataset, DatasetSaver, ReviewSession]) -> None:
        self.dataset, self.saver, self.session = result
        self.order = self.dataset.case_ids
        self.reports.clear()
        self._local.clear()
        self._prefetched.clear()
        self.current = None
        mode = "in place, originals kept in annotator-originals/" if self.saver.in_place else \
            f"into the copy {self.dataset.root}"
        self.message.emit(f"Dataset {self.dataset.root.name}: {len(self.dataset.cases)} cases ({self.dataset.layout}); "
                          f"saving {mode}")
        self.opened.emit()
        for case in self.dataset.cases:
            self._check(case.case_id)
        start = self.session.current if self.session.current in self.order else self.order[0]
        self.go_to(start)

    # ---- findings ----------------------------------------------------------------------------
    def _check(self, case_id: str) -> None:
        assert self.dataset is not None
        case, table = self.dataset.case(case_id), self.dataset.table
        self.checker.submit(lambda: check_case_job(case, table), self._on_checked,
                            lambda exc: log.warning("check of %s failed: %s", case_id, exc))

    def _on_checked(self, report: CaseReport) -> None:
        self._local[report.case_id] = report
        if self.dataset is not None and len(self._local) == len(self.dataset.cases):
            # findings that need every case's labels go on copies, so a re-check starts clean
            reports = [copy.deepcopy(r) for r in self._local.values()]
            dataset_findings(reports, self.dataset.table)
            self.reports = {r.case_id: r for r in reports}
        else:
            self.reports[report.case_id] = report  # while checking: each case alone, no copies
        self.reports_changed.emit()

    @property
    def checks_done(self) -> bool:
        return self.dataset is not None and len(self._local) == len(self.dataset.cases)

    # ---- moving between cases ----------------------------------------------------------------
    def go_to(self, case_id: str) -> None:
        if self.dataset is None or case_id == self.current and self._wanted is None:
            return
        self.commit_current()
        self._wanted = case_id
        ready = self._prefetched.pop(case_id, None)
        if ready is not None:
            self._show(case_id, ready)
            return
        if self._prefetching == case_id:
            return  # arrives through _on_prefetched
        self.message.emit(f"Loading case {case_id}…")
        case, table = self.dataset.case(case_id), self.dataset.table
        self.loader.submit(lambda: load_case_job(case, table), lambda loaded: self._on_loaded(case_id, loaded),
                           lambda exc: self._on_load_failed(case_id, exc))

    def step(self, delta: int) -> None:
        """Next (+1) or previous (-1) case in the panel's order."""
        if not self.order:
            return
        here = self.order.index(self.current) if self.current in self.order else -1
        target = min(max(here + delta, 0), len(self.order) - 1)
        if self.order[target] != self.current:
            self.go_to(self.order[target])

    def _on_loaded(self, case_id: str, loaded: Loaded) -> None:
        if self._wanted == case_id:
            self._show(case_id, loaded)
        else:
            self._prefetched[case_id] = loaded

    def _on_load_failed(self, case_id: str, exc: BaseException) -> None:
        if self._wanted == case_id:
            self._wanted = None
            self.failed.emit("Open case", f"case {case_id}: {user_message(exc)}")

    def _on_doc_volume_changed(self) -> None:
        if self.doc.volume is not self._volume:  # another image was opened: no case is open now
            self.current = None
            self._volume = None
            self._loaded_labels = None
            self.statuses_changed.emit()

    def _show(self, case_id: str, loaded: Loaded) -> None:
        volume, labels, note = loaded
        self._wanted = None
        self.on_leaving()
        self._volume = volume
        self.doc.set_volume(volume, labels)
        self._loaded_labels = labels.array.copy()
        self.current = case_id
        self.session.mark_seen(case_id)
        self.session.current = case_id
        self.save_session()
        self.case_opened.emit(case_id)
        self.statuses_changed.emit()
        if note:
            self.message.emit(f"Case {case_id}: {note}")
        self._prefetch_next()

    def _prefetch_next(self) -> None:
        if self.dataset is None or self.current not in self.order:
            return
        here = self.order.index(self.current)
        following = self.order[here + 1] if here + 1 < len(self.order) else None
        self._prefetched = {k: v for k, v in self._prefetched.items() if k == following}
        if following is None or following in self._prefetched or self._prefetching == following:
            return
        self._prefetching = following
        case, table = self.dataset.case(following), self.dataset.table

        def done(loaded: Loaded) -> None:
            self._prefetching = None
            self._on_loaded(following, loaded)

        def failed(exc: BaseException) -> None:
            self._prefetching = None
            self._on_load_failed(following, exc)

        self.loader.submit(lambda: load_case_job(case, table), done, failed)

    # ---- statuses and saving -----------------------------------------------------------------
    def is_modified(self) -> bool:
        """The open case's labels differ from what was loaded (undoing back to it is no change)."""
        return (self.current is not None and self._loaded_labels is not None and self.doc.volume is self._volume
                and not np.array_equal(self.doc.labels.array, self._loaded_labels))

    def commit_current(self, *, wait: bool = False) -> bool:
        """Save the open case's labels back if they changed; True when a save was started."""
        if not self.is_modified() or self.saver is None or self.current is None:
            return False
        case_id, saver = self.current, self.saver
        volume, array = self.doc.current_volume(), self.doc.labels.array.copy()
        self._loaded_labels = array.copy()
        self.pending_saves += 1
        if not wait:
            self.on_committed()
        state = self.session.state(case_id)
        if state.status != "flagged":  # now, not on completion: a window closing drops late callbacks
            self.session.set_status(case_id, "modified", state.comment)
        self.save_session()
        self.statuses_changed.emit()
        if wait:  # closing the window: write now, on this thread
            try:
                path = save_case_job(saver, case_id, volume, array)
            except (OSError, ValueError, AnnotatorError) as exc:  # the autosave copy keeps the edits
                self._on_save_failed(case_id, exc)
                return True
            self.on_committed()
            self._on_saved(case_id, path)
            return True
        self.checker.submit(lambda: save_case_job(saver, case_id, volume, array),
                            lambda path: self._on_saved(case_id, path), lambda exc: self._on_save_failed(case_id, exc))
        return True

    def _on_saved(self, case_id: str, path: str) -> None:
        self.pending_saves -= 1
        self.case_saved.emit(case_id, path)
        self.message.emit(f"Case {case_id} saved to {Path(path).name}")
        if self.dataset is not None:
            if self.dataset.case(case_id).label is None:  # a new label file: the dataset gained it
                from annotator.io.dataset import open_dataset

                self.dataset = open_dataset(self.dataset.index_file or self.dataset.root)
            self._check(case_id)

    def _on_save_failed(self, case_id: str, exc: BaseException) -> None:
        self.pending_saves -= 1
        self._loaded_labels = None  # unknown on disk: a later commit must try again
        log.warning("saving case %s failed: %s", case_id, exc)
        self.failed.emit("Save case", f"case {case_id} was not saved: {user_message(exc)}")

    def set_status(self, status: str, comment: str | None = None, case_id: str | None = None) -> None:
        case_id = case_id or self.current
        if case_id is None:
            return
        self.session.set_status(case_id, status, comment)
        self.save_session()
        self.statuses_changed.emit()

    def save_session(self) -> None:
        if self.dataset is None:
            return
        try:
            self.session.save(session_path(self.dataset.root))
        except OSError as exc:
            self.failed.emit("Review session", f"{session_path(self.dataset.root)}: not saved ({exc})")

    def shutdown(self) -> None:
        self.loader.shutdown(wait=True)
        self.checker.shutdown(wait=True, cancel=False)
