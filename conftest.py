"""Fixtures every test gets (tests/ and plugins/): private settings, cache and data folders, so no
test reads or writes the user's own (embedding cache, compiled models, stored runtime choice,
autosaves); and two broken plugins registered beside the installed ones for the whole session."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path, monkeypatch):
    for var, sub in (("ANNOTATOR_CACHE_DIR", "cache"), ("ANNOTATOR_CONFIG_DIR", "config"),
                     ("ANNOTATOR_DATA_DIR", "data")):
        monkeypatch.setenv(var, str(tmp_path / sub))


@pytest.fixture(autouse=True, scope="session")
def _with_broken_plugins():
    """Every test runs as if two broken plugins were installed (tests/support/broken_plugins.py)."""
    from support.broken_plugins import BROKEN_ENTRY_POINTS

    from annotator.plugin_host.manager import ENTRY_POINT_GROUP, using_registry

    with using_registry([*entry_points(group=ENTRY_POINT_GROUP), *BROKEN_ENTRY_POINTS]):
        yield
