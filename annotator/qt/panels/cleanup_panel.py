"""Clean-up in the window: the registry's clean-up steps (fill holes, remove islands, keep the
largest piece, smooth, and any a plugin adds), on the active label or all labels, in 3-D or slice by slice. Preview shows what would change (voxels per
label here, added/cleared voxels drawn on the slices) before Apply makes it one undo step. The
same function as `annotator clean` (postprocess.cleanup.clean_label_map): one code path."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from annotator.core.document import AnnotationDocument
from annotator.postprocess.cleanup import CleanupOptions, LabelChange, clean_label_map
from annotator.qt.background import BackgroundRunner
from annotator.qt.errors import show_error, user_message

_UNIT_TEXT = {"mm3": "mm³", "mm2": "mm²"}


def _spin(maximum: float, value: float, suffix: str, step: float) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(0.0, maximum)
    spin.setDecimals(1)
    spin.setSingleStep(step)
    spin.setValue(value)
    spin.setSuffix(suffix)
    return spin


class CleanupPanel(QWidget):
    """`focused_axis()` names the array axis of the focused view (for slice-by-slice clean-up)."""

    applied = Signal()  # a clean-up was applied (the review session remembers the settings used)

    def __init__(self, doc: AnnotationDocument, background: BackgroundRunner, focused_axis: Callable[[], int],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.doc = doc
        self.background = background
        self.focused_axis = focused_axis
        from annotator.plugin_host.manager import get_registry
        from annotator.postprocess.operations import cleanup_operations

        # One row per clean-up step of the plugin registry, in the order they run.
        self.operations = cleanup_operations(get_registry().resolved("postprocessors"))
        self.checks: dict[str, QCheckBox] = {}
        self.values: dict[str, QDoubleSpinBox] = {}
        for op in self.operations:
            self.checks[op.id] = QCheckBox(op.title, self)
            self.checks[op.id].setToolTip(op.help)
            if op.unit is not None:
                self.values[op.id] = _spin(op.maximum, op.default, " " + _UNIT_TEXT.get(op.unit, op.unit), op.step)
        self.scope = QComboBox(self)
        self.scope.addItem("Active label", "active")
        self.scope.addItem("All labels", "all")
        self.mode = QComboBox(self)
        self.mode.addItem("3-D", "3d")
        self.mode.addItem("Slice by slice (focused view)", "2d")
        self.preview_button = QPushButton("Preview", self)
        self.apply_button = QPushButton("Apply", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.summary = QLabel("", self)
        self.summary.setWordWrap(True)
        form = QFormLayout()
        for op in self.operations:
            if op.id in self.values:
                row = QHBoxLayout()
                row.addWidget(self.checks[op.id])
                row.addWidget(self.values[op.id])
                form.addRow(row)
            else:
                form.addRow(self.checks[op.id])
        form.addRow("Labels", self.scope)
        form.addRow("Works in", self.mode)
        buttons = QHBoxLayout()
        for button in (self.preview_button, self.apply_button, self.cancel_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.summary)
        layout.addStretch(1)
        self._proposal: np.ndarray | None = None
        self._apply_when_ready = False
        self._generation = 0  # bumped by every label edit: a proposal for older labels is stale
        self.preview_button.clicked.connect(self.preview)
        self.apply_button.clicked.connect(self.apply)
        self.cancel_button.clicked.connect(self.cancel)
        doc.labels_changed.connect(self._on_doc_labels_changed)
        doc.volume_changed.connect(self._on_doc_labels_changed)

    def settings(self) -> dict[str, float | bool | str]:
        """The panel's choices as plain values (kept in a dataset review's session file)."""
        out: dict[str, float | bool | str] = {}
        for op in self.operations:
            out[f"cleanup_{op.id}"] = self.checks[op.id].isChecked()
            if op.id in self.values:
                out[f"cleanup_{op.id}_value"] = self.values[op.id].value()
        out.update({"cleanup_scope": str(self.scope.currentData()), "cleanup_mode": str(self.mode.currentData())})
        return out

    def apply_settings(self, values: dict) -> None:
        """Restore choices saved by settings(); unknown or mistyped values are ignored."""
        for op in self.operations:
            if isinstance(values.get(f"cleanup_{op.id}"), bool):
                self.checks[op.id].setChecked(values[f"cleanup_{op.id}"])
            number = values.get(f"cleanup_{op.id}_value")
            if op.id in self.values and isinstance(number, int | float) and not isinstance(number, bool):
                self.values[op.id].setValue(float(number))
        for key, combo in (("cleanup_scope", self.scope), ("cleanup_mode", self.mode)):
            index = combo.findData(values.get(key))
            if index >= 0:
                combo.setCurrentIndex(index)

    def options(self) -> CleanupOptions:
        steps = tuple((op.id, self.values[op.id].value() if op.id in self.values else 1.0)
                      for op in self.operations if self.checks[op.id].isChecked())
        return CleanupOptions(steps=tuple((k, v) for k, v in steps if v > 0),
                              per_slice_axis=self.focused_axis() if self.mode.currentData() == "2d" else None)

    def _label_ids(self) -> list[int] | None:
        return [self.doc.active_label] if self.scope.currentData() == "active" else None

    def preview(self) -> None:
        """Compute the clean-up off the GUI thread and show what it would change."""
        if not self.doc.has_volume:
            return
        options = self.options()
        if options.is_noop():
            self.summary.setText("Choose at least one operation.")
            return
        array, spacing = self.doc.labels.array.copy(), self.doc.current_volume().spacing_zyx_mm
        ids, generation = self._label_ids(), self._generation
        self.summary.setText("Computing…")
        self.background.submit(lambda: clean_label_map(array, spacing, options, ids, self.operations),
                               lambda result: self._on_computed(generation, result),
                               self._on_failed)

    def _on_failed(self, exc: BaseException) -> None:
        self.summary.setText("")
        self._apply_when_ready = False
        show_error(self, "Clean-up", user_message(exc))

    def _on_computed(self, generation: int, result: tuple[np.ndarray, list[LabelChange]]) -> None:
        if generation != self._generation:
            self.summary.setText("The labels changed while computing; press Preview again.")
            self._apply_when_ready = False
            return
        new, changes = result
        table = self.doc.labels.table
        lines = [f"{table[c.label_id].name if c.label_id in table else c.label_id}: +{c.added} / −{c.removed} voxels"
                 for c in changes if c.added or c.removed]
        if not lines:
            self.summary.setText("Nothing would change.")
            self._proposal = None
            self.doc.set_change_preview(None)
            self._apply_when_ready = False
            return
        self._proposal = new
        self.doc.set_change_preview(new)
        self.summary.setText("Would change (green added, red cleared):\n" + "\n".join(lines))
        if self._apply_when_ready:
            self._apply_when_ready = False
            self.apply()

    def apply(self) -> None:
        """Apply the previewed clean-up as one undo step (computing it first if needed)."""
        if self._proposal is None:
            self._apply_when_ready = True
            self.preview()
            return
        proposal, self._proposal = self._proposal, None
        edit = self.doc.apply_labels(proposal, "clean-up")
        self._generation += 1
        self.applied.emit()
        self.summary.setText("Applied (Ctrl+Z undoes it)." if edit is not None else "Nothing changed.")

    def cancel(self) -> None:
        self._proposal = None
        self._apply_when_ready = False
        self.doc.set_change_preview(None)
        self.summary.setText("")

    def _on_doc_labels_changed(self, *_args: object) -> None:
        self._generation += 1
        if self._proposal is not None or self.doc.change_preview is not None:
            self._proposal = None
            self.doc.set_change_preview(None)
            self.summary.setText("The labels changed; press Preview again.")
