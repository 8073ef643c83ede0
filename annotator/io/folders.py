"""Walking a folder the way every reader does: recursive, sorted, hidden entries skipped."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path


def files_under(folder: Path, keep: Callable[[str], bool] = lambda name: True) -> Iterator[Path]:
    """Every file below `folder` whose name passes `keep`, in sorted order, skipping hidden files
    and folders (their names start with a dot: editor, OS and our own temporary files)."""
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith(".") and keep(name):
                yield Path(root) / name
