"""Two broken plugins every test session runs with (see the root conftest.py): one whose manifest
module raises on import, one written for another plugin API. The whole suite passing with them
registered is the proof that a broken plugin never takes the app down or hides the builtins."""

from __future__ import annotations

from importlib.metadata import EntryPoint

from annotator.plugin_host.api import PluginManifest
from annotator.plugin_host.manager import ENTRY_POINT_GROUP

future_manifest = PluginManifest(name="broken-future-api", api_version=999)

BROKEN_ENTRY_POINTS = [
    EntryPoint("broken-raises", "support.broken_plugin_raises:manifest", ENTRY_POINT_GROUP),
    EntryPoint("broken-future-api", "support.broken_plugins:future_manifest", ENTRY_POINT_GROUP),
]
