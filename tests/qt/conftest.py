"""Qt test fixtures: isolated settings dirs, a window on a small phantom, and a guard that fails
any test leaving a thread, executor or timer running (as napari's _dangling_* fixtures)."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QThreadPool, QTimer

from annotator.core.phantom import make_phantom

SMALL_SHAPE = (24, 64, 64)
SMALL_SPACING = (5.0, 3.2, 3.2)


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/qt/" not in str(item.fspath).replace("\\", "/"):
            continue
        # The offscreen platform plugin warns that it cannot propagate size hints; that is not ours.
        item.add_marker(pytest.mark.qt_log_ignore("propagateSizeHints"))
        if "qtbot" in getattr(item, "fixturenames", ()) and item.get_closest_marker("gui") is None:
            raise pytest.UsageError(f"{item.nodeid} drives real widgets (qtbot) but has no `gui` marker")



@pytest.fixture(autouse=True)
def _no_dangling_work(monkeypatch, qapp):
    """Fail the test if it leaves threads, Qt thread-pool jobs or active QTimers behind."""
    before = set(threading.enumerate())
    timers: list[QTimer] = []
    original_start = QTimer.start

    def tracking_start(self, *args):
        timers.append(self)
        return original_start(self, *args)

    monkeypatch.setattr(QTimer, "start", tracking_start)
    yield
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra:
            break
        qapp.processEvents()
        time.sleep(0.02)
    extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    active = []
    for timer in timers:
        try:
            if timer.isActive():
                active.append(timer)
                timer.stop()
        except RuntimeError:  # the C++ timer was deleted with its parent: not running
            pass
    pool_jobs = QThreadPool.globalInstance().activeThreadCount()
    problems = []
    if extra:
        problems.append(f"threads still running: {[t.name for t in extra]}")
    if active:
        problems.append(f"{len(active)} QTimer(s) still active: {[t.objectName() or t.parent() for t in active]}")
    if pool_jobs:
        problems.append(f"{pool_jobs} QThreadPool job(s) still running")
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture(scope="session")
def small_phantom():
    return make_phantom(SMALL_SHAPE, SMALL_SPACING)


@pytest.fixture
def window(qtbot, small_phantom):
    """A MainWindow (no engine) showing the small phantom, opened synchronously."""
    from annotator.qt.main_window import MainWindow
    from annotator.settings import Settings

    win = MainWindow(Settings(), start_engine=False)
    qtbot.addWidget(win)
    win.resize(1200, 700)
    win.show()
    qtbot.waitExposed(win)
    win.doc.set_volume(small_phantom.volume)
    yield win
    win.shutdown()
