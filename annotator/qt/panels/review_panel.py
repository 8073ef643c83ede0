"""The case list of a dataset under review: findings, label volumes and review status per case,
sortable and filtered by finding or status; a double click (or Enter) opens a case."""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from annotator.core.labels import LabelTable
from annotator.core.review_session import STATUSES
from annotator.io.dataset_check import KINDS, Finding
from annotator.qt.review_controller import ReviewController

COLUMNS = ("Case", "Status", "Findings", "Labels")
SHORT = {"islands": "islands", "holes": "holes", "missing-label": "missing"}
STATUS_COLOURS = {"not seen": QColor(150, 150, 150), "reviewed": QColor(80, 180, 90),
                  "modified": QColor(70, 140, 230), "flagged": QColor(230, 140, 40)}


class ReviewPanel(QWidget):
    def __init__(self, review: ReviewController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.review = review
        self.title = QLabel("No dataset open.", self)
        self.title.setWordWrap(True)
        self.filter = QComboBox(self)
        self.filter.setObjectName("review-filter")
        # item data "mode:value": all, any, kind:<finding kind>, status:<review status>
        self.filter.addItem("All cases", "all:")
        self.filter.addItem("Cases with findings", "any:")
        for kind, text in KINDS.items():
            self.filter.addItem(f"Finding: {text}", f"kind:{kind}")
        for status in STATUSES:
            self.filter.addItem(f"Status: {status}", f"status:{status}")
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setObjectName("review-cases")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSortingEnabled(True)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSortIndicator(0, Qt.SortOrder.AscendingOrder)  # Qt's default is descending
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        for col in (0, 1, 3):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.setMinimumWidth(380)
        header.sortIndicatorChanged.connect(self._on_order_changed)
        self.findings = QLabel("", self)
        self.findings.setWordWrap(True)
        self.findings.setTextFormat(Qt.TextFormat.PlainText)  # text from files must never be markup
        self.comment = QLineEdit(self)
        self.comment.setPlaceholderText("comment (why this case is flagged)")
        self.prev_button = QPushButton("◀ Previous", self)
        self.next_button = QPushButton("Next ▶", self)
        self.reviewed_button = QPushButton("Reviewed", self)
        self.flag_button = QPushButton("Flag", self)
        nav = QHBoxLayout()
        for button in (self.prev_button, self.next_button, self.reviewed_button, self.flag_button):
            nav.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.title)
        layout.addWidget(self.filter)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.findings)
        layout.addWidget(self.comment)
        layout.addLayout(nav)

        self.filter.currentIndexChanged.connect(self._on_order_changed)
        self.table.cellDoubleClicked.connect(self._on_cell_activated)
        self.table.cellActivated.connect(self._on_cell_activated)
        self.prev_button.clicked.connect(lambda: review.step(-1))
        self.next_button.clicked.connect(lambda: review.step(1))
        self.reviewed_button.clicked.connect(self._on_reviewed)
        self.flag_button.clicked.connect(self._on_flag)
        review.opened.connect(self.refresh)
        review.reports_changed.connect(self.refresh)
        review.statuses_changed.connect(self.refresh)
        review.case_opened.connect(self._on_case_opened)

    # ---- model -> view -----------------------------------------------------------------------
    def _matches(self, case_id: str) -> bool:
        mode, _, value = str(self.filter.currentData() or "all:").partition(":")
        report = self.review.reports.get(case_id)
        if mode == "any":
            return report is not None and bool(report.findings)
        if mode == "kind":
            return report is not None and value in report.kinds()
        if mode == "status":
            return self.review.session.state(case_id).status == value
        return True

    def refresh(self) -> None:
        dataset = self.review.dataset
        if dataset is None:
            return
        checked = len(self.review.reports)
        self.title.setText(f"{dataset.root.name} — {dataset.layout}, {len(dataset.cases)} cases"
                           + ("" if checked == len(dataset.cases) else f" (checking {checked}/{len(dataset.cases)})"))
        table = dataset.table
        with QSignalBlocker(self.table):
            self.table.setSortingEnabled(False)
            rows = [c for c in dataset.case_ids if self._matches(c)]
            self.table.setRowCount(len(rows))
            for row, case_id in enumerate(rows):
                report = self.review.reports.get(case_id)
                state = self.review.session.state(case_id)
                if report is None:
                    findings, full = "checking…", ""
                else:
                    findings = "; ".join(self._short(f, table) for f in report.findings) or "ok"
                    full = "\n".join(f.text for f in report.findings) or "no findings"
                volumes = "\n".join(f"{self._name(table, k)}: {v:.1f} ml"
                                    for k, v in (report.label_volumes_ml.items() if report else []))
                status = state.status + (f" — {state.comment}" if state.comment else "")
                count = QTableWidgetItem()
                count.setData(Qt.ItemDataRole.DisplayRole, len(report.label_values) if report else 0)
                items = [QTableWidgetItem(case_id), QTableWidgetItem(status), QTableWidgetItem(findings), count]
                items[0].setData(Qt.ItemDataRole.UserRole, case_id)
                items[1].setForeground(STATUS_COLOURS[state.status])
                items[1].setToolTip(status)
                items[2].setToolTip(full)
                items[3].setToolTip(volumes)
                if report is not None and report.problems:
                    items[2].setForeground(QColor(230, 80, 80))
                if case_id == self.review.current:
                    font = items[0].font()
                    font.setBold(True)
                    items[0].setFont(font)
                for col, item in enumerate(items):
                    self.table.setItem(row, col, item)
            self.table.setSortingEnabled(True)
        self.review.order = self.visible_cases()
        self._select_current()
        self._show_current_findings()

    @staticmethod
    def _name(table: LabelTable | None, label_id: int) -> str:
        return table[label_id].name if table is not None and label_id in table else f"label {label_id}"

    def _short(self, finding: Finding, table: LabelTable | None) -> str:
        if finding.kind in SHORT and finding.label_id is not None:
            return f"{SHORT[finding.kind]}: {self._name(table, finding.label_id)}"
        return finding.text if len(finding.text) <= 40 else finding.text[:39] + "…"

    def visible_cases(self) -> list[str]:
        """Case ids in the order the table shows them (after sorting and filtering)."""
        out = []
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None:
                out.append(str(item.data(Qt.ItemDataRole.UserRole)))
        return out

    def rows(self) -> dict[str, tuple[str, str]]:
        """case id -> (status text, findings text) as shown, for tests and the screenshot check."""
        out = {}
        for row in range(self.table.rowCount()):
            items = [self.table.item(row, col) for col in range(3)]
            if all(item is not None for item in items):
                case, status, findings = items
                out[str(case.data(Qt.ItemDataRole.UserRole))] = (status.text(), findings.text())  # type: ignore[union-attr]
        return out

    def _select_current(self) -> None:
        with QSignalBlocker(self.table):
            for row in range(self.table.rowCount()):
                item = self.table.item(row, 0)
                if item is not None and item.data(Qt.ItemDataRole.UserRole) == self.review.current:
                    self.table.selectRow(row)
                    self.table.scrollToItem(item)
                    return
            self.table.clearSelection()

    def _show_current_findings(self) -> None:
        case_id = self.review.current
        report = self.review.reports.get(case_id) if case_id else None
        if case_id is None:
            self.findings.setText("")
            return
        lines = [f"Case {case_id}: {self.review.session.state(case_id).status}"]
        lines += [("⚠ " if f.is_problem else "• ") + f.text for f in (report.findings if report else [])]
        if report is not None and report.label_volumes_ml:
            table = self.review.dataset.table if self.review.dataset else None
            lines.append("Volumes: " + ", ".join(f"{self._name(table, k)} {v:.1f} ml"
                                                 for k, v in report.label_volumes_ml.items()))
        self.findings.setText("\n".join(lines))

    def _on_case_opened(self, case_id: str) -> None:
        self.comment.setText(self.review.session.state(case_id).comment)
        self.refresh()

    # ---- view -> controller ------------------------------------------------------------------
    def _on_order_changed(self, *_args: object) -> None:
        self.refresh()

    def _on_cell_activated(self, row: int, _column: int) -> None:
        item = self.table.item(row, 0)
        if item is not None:
            self.review.go_to(str(item.data(Qt.ItemDataRole.UserRole)))

    def _on_reviewed(self) -> None:
        self.review.set_status("reviewed", self.comment.text())

    def _on_flag(self) -> None:
        self.review.set_status("flagged", self.comment.text())
