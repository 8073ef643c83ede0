"""Clean-up in the window: fill holes, remove islands, keep the largest piece, smooth, on the
active label or all labels, in 3-D or slice by slice. Preview shows what would change (voxels per
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
        self.fill_holes = QCheckBox("Fill holes", self)
        self.remove_islands = QCheckBox("Remove islands below", self)
        self.min_size = _spin(1e6, 50.0, " mm³", 10.0)
        self.largest = QCheckBox("Keep the largest piece only", self)
        self.smooth = QCheckBox("Smooth, sigma", self)
        self.sigma = _spin(20.0, 1.0, " mm", 0.5)
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
        form.addRow(self.fill_holes)
        row = QHBoxLayout()
        row.addWidget(self.remove_islands)
        row.addWidget(self.min_size)
        form.addRow(row)
        form.addRow(self.largest)
        row = QHBoxLayout()
        row.addWidget(self.smooth)
        row.addWidget(self.sigma)
        form.addRow(row)
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
        return {"cleanup_fill_holes": self.fill_holes.isChecked(),
                "cleanup_remove_islands": self.remove_islands.isChecked(),
                "cleanup_min_size_mm3": self.min_size.value(), "cleanup_largest": self.largest.isChecked(),
                "cleanup_smooth": self.smooth.isChecked(), "cleanup_sigma_mm": self.sigma.value(),
                "cleanup_scope": str(self.scope.currentData()), "cleanup_mode": str(self.mode.currentData())}

    def apply_settings(self, values: dict) -> None:
        """Restore choices saved by settings(); unknown or mistyped values are ignored."""
        boxes = {"cleanup_fill_holes": self.fill_holes, "cleanup_remove_islands": self.remove_islands,
                 "cleanup_largest": self.largest, "cleanup_smooth": self.smooth}
        for key, box in boxes.items():
            if isinstance(values.get(key), bool):
                box.setChecked(values[key])
        for key, spin in (("cleanup_min_size_mm3", self.min_size), ("cleanup_sigma_mm", self.sigma)):
            if isinstance(values.get(key), int | float) and not isinstance(values.get(key), bool):
                spin.setValue(float(values[key]))
        for key, combo in (("cleanup_scope", self.scope), ("cleanup_mode", self.mode)):
            index = combo.findData(values.get(key))
            if index >= 0:
                combo.setCurrentIndex(index)

    def options(self) -> CleanupOptions:
        return CleanupOptions(fill_holes=self.fill_holes.isChecked(),
                              min_size_mm3=self.min_size.value() if self.remove_islands.isChecked() else 0.0,
                              largest=self.largest.isChecked(),
                              smooth_mm=self.sigma.value() if self.smooth.isChecked() else 0.0,
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
        self.background.submit(lambda: clean_label_map(array, spacing, options, ids),
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
