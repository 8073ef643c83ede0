"""Fixtures every test gets: private settings, cache and data folders, so no test reads or writes
the user's own (embedding cache, compiled models, stored runtime choice, autosaves)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path, monkeypatch):
    for var, sub in (("ANNOTATOR_CACHE_DIR", "cache"), ("ANNOTATOR_CONFIG_DIR", "config"),
                     ("ANNOTATOR_DATA_DIR", "data")):
        monkeypatch.setenv(var, str(tmp_path / sub))
