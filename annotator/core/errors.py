"""Errors a user can act on: each names the file (or thing) and the problem in one line."""

from __future__ import annotations

import os


class AnnotatorError(Exception):
    """Base of every error whose message is meant for the user, not a traceback."""


class InputError(AnnotatorError):
    """A file or folder the user gave us cannot be used; the message says which and why."""

    def __init__(self, path: str | os.PathLike[str] | None, problem: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class GeometryMismatchError(AnnotatorError):
    """Two grids that must be identical (image and label map) are not."""
