"""Typed user settings and the platformdirs locations of config, cache and autosave; no Qt."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import platformdirs

from annotator.core.atomic import atomic_write_text

log = logging.getLogger(__name__)
APP_NAME = "annotator"


def config_dir() -> Path:
    return Path(os.environ.get("ANNOTATOR_CONFIG_DIR") or platformdirs.user_config_dir(APP_NAME))


def cache_dir() -> Path:
    return Path(os.environ.get("ANNOTATOR_CACHE_DIR") or platformdirs.user_cache_dir(APP_NAME))


def embedding_cache_dir() -> Path:
    return cache_dir() / "embeddings"


def compiled_model_dir() -> Path:
    return cache_dir() / "compiled-models"


def data_dir() -> Path:
    return Path(os.environ.get("ANNOTATOR_DATA_DIR") or platformdirs.user_data_dir(APP_NAME))


def autosave_dir() -> Path:
    return data_dir() / "autosave"


@dataclass
class Settings:
    """Everything the user can choose that outlives a session. Unknown keys in the file are kept out."""

    engine: str = "auto"  # "auto" (lite-medsam if torch works, else classical) or an engine of the plugin registry
    checkpoint: str | None = None  # a SAM/MedSAM/LiteMedSAM checkpoint the user pointed to
    runtime: str = "auto"  # "auto" or a runtime of the plugin registry (builtins: torch, ONNX Runtime, OpenVINO)
    server_url: str | None = None  # an `annotator serve` to run the model on (its token is never stored here)
    memory_cache_bytes: int = 2 << 30
    disk_cache_bytes: int = 20 << 30
    prefetch_radius: int = 3
    recent_files: list[str] = field(default_factory=list)
    last_directory: str | None = None
    autosave_seconds: int = 60

    @classmethod
    def path(cls) -> Path:
        return config_dir() / "settings.json"

    @classmethod
    def load(cls) -> Settings:
        path = cls.path()
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable settings (%s); using defaults", path, exc)
            return cls()
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            log.warning("%s: invalid settings (%s); using defaults", path, exc)
            return cls()

    def save(self) -> None:
        atomic_write_text(self.path(), json.dumps(asdict(self), indent=2))

    def add_recent(self, path: str, keep: int = 10) -> None:
        path = os.path.abspath(path)
        self.recent_files = [path] + [p for p in self.recent_files if p != path][: keep - 1]
