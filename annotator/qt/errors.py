"""One way to run a user action: log the traceback, show a clear message, never crash the window."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from PySide6.QtWidgets import QMessageBox, QWidget

from annotator.core.errors import AnnotatorError

log = logging.getLogger(__name__)


def user_message(exc: BaseException) -> str:
    """One line for the user: our own errors already name the file and the problem."""
    if isinstance(exc, AnnotatorError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def show_error(parent: QWidget | None, title: str, message: str) -> QMessageBox:
    """A non-blocking, window-modal message box (open(), not exec(): the event loop keeps running)."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("error-dialog")
    box.open()
    if parent is not None and hasattr(parent, "last_error"):
        parent.last_error = message
    return box


@contextlib.contextmanager
def try_with_error_dialog(parent: QWidget | None, title: str) -> Iterator[None]:
    """Run a user action; any exception becomes a logged traceback plus a message in the window."""
    try:
        yield
    except Exception as exc:  # the GUI's single catch-all for user actions
        if isinstance(exc, AnnotatorError):
            log.warning("%s: %s", title, exc)
        else:
            log.exception("%s failed", title)
        show_error(parent, title, user_message(exc))
