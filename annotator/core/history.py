"""Undo/redo of LabelMap edits; each entry keeps only the changed region (before and after)."""

from __future__ import annotations

from psygnal import Signal

from annotator.core.labels import LabelEdit, LabelMap


class History:
    """Linear undo stack over one LabelMap. Pushing after an undo drops the redo branch."""

    changed = Signal()

    def __init__(self, labels: LabelMap, max_bytes: int = 1 << 30) -> None:
        self.labels = labels
        self.max_bytes = max_bytes
        self._done: list[LabelEdit] = []
        self._undone: list[LabelEdit] = []

    def push(self, edit: LabelEdit | None) -> None:
        """Record an edit that has already been applied to the label map (None is ignored)."""
        if edit is None:
            return
        self._done.append(edit)
        self._undone.clear()
        self._trim()
        self.changed.emit()

    def undo(self) -> LabelEdit | None:
        if not self._done:
            return None
        edit = self._done.pop()
        self.labels.revert(edit)
        self._undone.append(edit)
        self.changed.emit()
        return edit

    def redo(self) -> LabelEdit | None:
        if not self._undone:
            return None
        edit = self._undone.pop()
        self.labels.reapply(edit)
        self._done.append(edit)
        self.changed.emit()
        return edit

    @property
    def can_undo(self) -> bool:
        return bool(self._done)

    @property
    def can_redo(self) -> bool:
        return bool(self._undone)

    def descriptions(self) -> list[str]:
        """Done edits, oldest first (for a visible history list)."""
        return [e.description for e in self._done]

    def redo_descriptions(self) -> list[str]:
        return [e.description for e in reversed(self._undone)]

    def clear(self) -> None:
        self._done.clear()
        self._undone.clear()
        self.changed.emit()

    def _trim(self) -> None:
        total = sum(e.before.nbytes + e.after.nbytes for e in self._done)
        while len(self._done) > 1 and total > self.max_bytes:
            old = self._done.pop(0)
            total -= old.before.nbytes + old.after.nbytes
