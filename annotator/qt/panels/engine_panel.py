"""Engine panel: which model runs (and that it is the bundled LiteMedSAM), checkpoint, runtime,
device, last embedding time, cache use, prefetch progress; choose another checkpoint or force a runtime."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from annotator.settings import Settings

if TYPE_CHECKING:
    from annotator.qt.engine_bridge import EngineBridge


def runtime_choices() -> list[tuple[str, str]]:
    """(setting value, label): "auto" is the fastest runtime that passed its accuracy check here;
    the others are the plugin registry's runtimes."""
    from annotator.engine.runtime.select import runtime_names

    return [("auto", "auto (fastest accurate)"), *runtime_names().items()]


class EnginePanel(QWidget):
    def __init__(self, bridge: EngineBridge, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.settings = settings
        self.fields: dict[str, QLabel] = {}
        form = QFormLayout()
        for key, title in (("model", "Model"), ("checkpoint", "Checkpoint"), ("runtime", "Runtime"),
                           ("device", "Device"), ("embed", "Last embedding"), ("cache", "Cache"),
                           ("prefetch", "Prefetch")):
            label = QLabel("—", self)
            label.setWordWrap(True)
            self.fields[key] = label
            form.addRow(title, label)
        self.runtime_combo = QComboBox(self)
        self.runtime_combo.setToolTip("Force a runtime for the image encoder and prompt path; the choice is "
                                      "remembered. A forced runtime is checked and compiled on first use.")
        from annotator.engine.runtime.select import installed_runtimes

        installed = set(installed_runtimes())
        model = self.runtime_combo.model()
        for value, title in runtime_choices():
            usable = value == "auto" or value in installed
            self.runtime_combo.addItem(title if usable else f"{title} (not installed)", value)
            if not usable and isinstance(model, QStandardItemModel):
                item = model.item(self.runtime_combo.count() - 1)
                if item is not None:
                    item.setEnabled(False)
        current = getattr(settings, "runtime", "auto") or "auto"
        self.runtime_combo.setCurrentIndex(max(0, self.runtime_combo.findData(current)))
        form.addRow("Run on", self.runtime_combo)
        self.server_edit = QLineEdit(settings.server_url or "", self)
        self.server_edit.setPlaceholderText("this computer — or a server, e.g. http://gpu-box:8765")
        self.server_edit.setToolTip("An `annotator serve` to run the model on. Its token comes from "
                                    "ANNOTATOR_SERVER_TOKEN or the token file, never from this box.")
        self.server_button = QPushButton("Use server", self)
        self.local_button = QPushButton("This computer", self)
        server_row = QHBoxLayout()
        server_row.addWidget(self.server_edit, 1)
        server_row.addWidget(self.server_button)
        server_row.addWidget(self.local_button)
        form.addRow("Server", server_row)
        self.choose_button = QPushButton("Choose checkpoint…", self)
        self.bundled_button = QPushButton("Use bundled model", self)
        buttons = QHBoxLayout()
        buttons.addWidget(self.choose_button)
        buttons.addWidget(self.bundled_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addStretch(1)
        self.choose_button.clicked.connect(self._on_choose_clicked)
        self.server_button.clicked.connect(self._on_server_clicked)
        self.server_edit.returnPressed.connect(self._on_server_clicked)
        self.local_button.clicked.connect(lambda: self.use_server(None))
        self.bundled_button.clicked.connect(self._on_bundled_clicked)
        self.runtime_combo.activated.connect(self._on_runtime_activated)
        bridge.status_changed.connect(self._sync_from_model)
        bridge.embedding_ready.connect(self._on_bridge_embedding_ready)
        self._sync_from_model()

    def _on_bridge_embedding_ready(self, axis: int, index: int) -> None:
        self._sync_from_model()

    def _sync_from_model(self) -> None:
        bridge = self.bridge
        f = self.fields
        if not bridge.ready:
            f["model"].setText({"loading": "loading…", "failed": f"failed: {bridge.load_error}"}.get(
                bridge.state, "none"))
            for key in ("checkpoint", "runtime", "device", "embed", "cache", "prefetch"):
                f[key].setText("—")
            return
        engine = bridge.engine
        bundled = engine.model_id == "lite-medsam"
        f["model"].setText(f"{engine.model_id}" + (" — bundled LiteMedSAM" if bundled else ""))
        checkpoint = getattr(engine, "checkpoint", None)
        f["checkpoint"].setText(str(checkpoint) if checkpoint else ("bundled weights" if bundled else "none"))
        f["runtime"].setText(str(engine.runtime))
        f["device"].setText(str(engine.device))
        f["embed"].setText("—" if bridge.last_embed_s is None else f"{bridge.last_embed_s * 1000:.0f} ms")
        cache = bridge.cache
        stats = getattr(cache, "stats", None)
        text = f"{len(cache)} slices, {cache.memory_used_bytes / 2**20:.0f} MiB"
        if stats is not None:
            text += f"; hits {stats.memory_hits + stats.disk_hits}, misses {stats.misses}"
        f["cache"].setText(text)
        f["prefetch"].setText(f"{bridge.prefetch_done}/{bridge.prefetch_total}" if bridge.prefetch_total else "idle")

    def _on_choose_clicked(self) -> None:
        start = str(Path(self.settings.checkpoint).parent) if self.settings.checkpoint else ""
        path, _ = QFileDialog.getOpenFileName(self, "Choose a model checkpoint (SAM, MedSAM, LiteMedSAM or a plugin engine's)", start,
                                              "Checkpoints (*.pth *.pt *.safetensors);;All files (*)")
        if path:
            self.use_checkpoint(path)

    def use_checkpoint(self, path: str | None) -> None:
        """Remember the choice in settings and reload the engine with it (None = bundled)."""
        self.settings.checkpoint = path
        self._remember()
        self.bridge.options.pop("checkpoint", None)
        self.bridge.reload(engine_name="auto", checkpoint=path)

    def _remember(self) -> None:
        try:
            self.settings.save()
        except OSError:
            pass  # the choice still applies to this session

    def _on_server_clicked(self) -> None:
        self.use_server(self.server_edit.text().strip() or None)

    def use_server(self, url: str | None) -> None:
        """Run the model on the server at `url` (None: on this computer); remembered in settings."""
        self.settings.server_url = url
        self._remember()
        self.server_edit.setText(url or "")
        self.bridge.reload(server=url or "")

    def _on_bundled_clicked(self) -> None:
        self.use_checkpoint(None)

    def _on_runtime_activated(self, index: int) -> None:
        self.use_runtime(self.runtime_combo.itemData(index))

    def use_runtime(self, runtime: str) -> None:
        """Remember the runtime in settings and reload the engine on it ("auto": the stored choice)."""
        if runtime == (getattr(self.settings, "runtime", "auto") or "auto") and self.bridge.ready:
            return
        self.settings.runtime = runtime
        self._remember()
        self.runtime_combo.setCurrentIndex(max(0, self.runtime_combo.findData(runtime)))
        self.bridge.reload(runtime=runtime)
