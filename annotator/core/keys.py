"""Key slices: the slices the user decided for a label along one axis (accepted a mask, brushed or
erased there). Propagation runs between them and never rewrites them; an emptied key says "the
structure is absent here". Keys travel with the undo history, so undoing a correction also undoes
its key."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeyMark:
    """Slice `index` along array `axis` is a key of `label_id`. `window` is the model input window
    (low, high) its mask was made in, or None for a brushed or erased slice. `held_before`, for a
    key made since the label's last propagation along `axis`: whether its slice held the label
    before the key was made (so a re-propagation knows the structure's extent as that propagation
    left it: a key past its end reopens the run there; engine.label_extent.structure_extent);
    None once a propagation has run over the key."""

    label_id: int
    axis: int
    index: int
    window: tuple[float, float] | None = None
    held_before: bool | None = None

    @property
    def slot(self) -> tuple[int, int, int]:
        return (self.label_id, self.axis, self.index)


class KeySlices:
    """The current key marks, changed only through `apply` / `restore` (History does both)."""

    def __init__(self) -> None:
        self._marks: dict[tuple[int, int, int], KeyMark] = {}

    def apply(self, marks: tuple[KeyMark, ...]) -> dict[tuple[int, int, int], KeyMark | None]:
        """Set `marks`; returns what their slots held before (for `restore`)."""
        previous = {m.slot: self._marks.get(m.slot) for m in marks}
        for mark in marks:
            self._marks[mark.slot] = mark
        return previous

    def restore(self, previous: dict[tuple[int, int, int], KeyMark | None]) -> None:
        for slot, mark in previous.items():
            if mark is None:
                self._marks.pop(slot, None)
            else:
                self._marks[slot] = mark

    def made_since_propagation(self, label_id: int, axis: int) -> dict[int, bool]:
        """The keys made since the label's last propagation along `axis`: whether each slice
        held the label before (KeyMark.held_before)."""
        return {i: m.held_before for i, m in self.of(label_id, axis).items() if m.held_before is not None}

    def of(self, label_id: int, axis: int) -> dict[int, KeyMark]:
        """The keys of one label along one axis, by slice index."""
        return {m.index: m for m in self._marks.values() if m.label_id == label_id and m.axis == axis}

    def forget_label(self, label_id: int) -> None:
        for slot in [s for s in self._marks if s[0] == label_id]:
            del self._marks[slot]

    def clear(self) -> None:
        self._marks.clear()

    def __len__(self) -> int:
        return len(self._marks)
