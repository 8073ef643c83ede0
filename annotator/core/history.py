"""Undo/redo of LabelMap edits; each entry keeps only the changed region (before and after), and
the key slices it set (core.keys), which undo and redo with it."""

from __future__ import annotations

from psygnal import Signal

from annotator.core.keys import KeyMark, KeySlices
from annotator.core.labels import LabelEdit, LabelMap


class History:
    """Linear undo stack over one LabelMap. Pushing after an undo drops the redo branch."""

    changed = Signal()

    def __init__(self, labels: LabelMap, max_bytes: int = 1 << 30) -> None:
        self.labels = labels
        self.max_bytes = max_bytes
        self.keys = KeySlices()
        self._done: list[LabelEdit] = []
        self._undone: list[LabelEdit] = []
        # per done/undone edit (by position): what its key marks replaced, for undo
        self._done_keys: list[dict[tuple[int, int, int], KeyMark | None]] = []

    def push(self, edit: LabelEdit | None) -> None:
        """Record an edit that has already been applied to the label map (None is ignored)."""
        if edit is None:
            return
        self._done.append(edit)
        self._done_keys.append(self.keys.apply(edit.key_marks))
        self._undone.clear()
        self._trim()
        self.changed.emit()

    def undo(self) -> LabelEdit | None:
        if not self._done:
            return None
        edit = self._done.pop()
        self.labels.revert(edit)
        self.keys.restore(self._done_keys.pop())
        self._undone.append(edit)
        self.changed.emit()
        return edit

    def redo(self) -> LabelEdit | None:
        if not self._undone:
            return None
        edit = self._undone.pop()
        self.labels.reapply(edit)
        self._done.append(edit)
        self._done_keys.append(self.keys.apply(edit.key_marks))
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
        """Forget the undo stack; the key marks stay (they describe the label map as it is)."""
        self._done.clear()
        self._done_keys.clear()
        self._undone.clear()
        self.changed.emit()

    def _trim(self) -> None:
        total = sum(e.before.nbytes + e.after.nbytes for e in self._done)
        while len(self._done) > 1 and total > self.max_bytes:
            old = self._done.pop(0)
            self._done_keys.pop(0)  # its marks stay set: only the ability to undo them is gone
            total -= old.before.nbytes + old.after.nbytes
