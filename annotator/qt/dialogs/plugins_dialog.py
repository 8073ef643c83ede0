"""Help → Plugins: every plugin that loaded with what it adds, and every one that failed with why."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from annotator.plugin_host.api import API_VERSION
from annotator.plugin_host.manager import PluginRegistry


def plugin_rows(registry: PluginRegistry) -> list[tuple[str, str, str]]:
    """(plugin, status, what it adds or why it failed), loaded plugins first."""
    rows = []
    for name, manifest in registry.manifests.items():
        adds = ", ".join(f"{kind.rstrip('s').replace('_', ' ')} {c.id}" for kind, c in manifest.contributions())
        rows.append((name, "loaded", adds or "nothing"))
    for failure in registry.failures:
        rows.append((failure.plugin, "failed", failure.problem))
    return rows


class PluginsDialog(QDialog):
    def __init__(self, registry: PluginRegistry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("plugins-dialog")
        self.setWindowTitle(f"Plugins (plugin API {API_VERSION})")
        rows = plugin_rows(registry)
        self.table = QTableWidget(len(rows), 3, self)
        self.table.setHorizontalHeaderLabels(("Plugin", "Status", "Adds / problem"))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(r, c, item)
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(760, 320)

    def rows(self) -> list[tuple[str, str, str]]:
        return [tuple(self.table.item(r, c).text() for c in range(3))  # type: ignore[misc, union-attr]
                for r in range(self.table.rowCount())]
