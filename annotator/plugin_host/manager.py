"""Discover plugins through the `annotator.plugins` entry-point group; one plugin's failure never stops the others."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from annotator.plugin_host.api import API_VERSION, Contribution, PluginManifest

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "annotator.plugins"


@dataclass
class PluginFailure:
    plugin: str
    problem: str


@dataclass
class PluginRegistry:
    """Manifests that loaded, failures to show in the Plugins dialog, and resolved contributions."""

    manifests: dict[str, PluginManifest] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)
    _resolved: dict[str, Any] = field(default_factory=dict)

    def add(self, manifest: PluginManifest) -> None:
        if manifest.api_version != API_VERSION:
            self.failures.append(PluginFailure(manifest.name, f"api_version {manifest.api_version} is not {API_VERSION}"))
            return
        self.manifests[manifest.name] = manifest

    def contributions(self, kind: str) -> dict[str, Contribution]:
        """All contributions of one kind ("engines", "exporters", ...) keyed by id; later plugins don't shadow builtins."""
        out: dict[str, Contribution] = {}
        for manifest in self.manifests.values():
            for c in getattr(manifest, kind):
                out.setdefault(c.id, c)
        return out

    def resolve(self, contribution: Contribution) -> Any:
        """Import the contribution's python_name (once) and return the object it names."""
        if contribution.python_name not in self._resolved:
            self._resolved[contribution.python_name] = import_python_name(contribution.python_name)
        return self._resolved[contribution.python_name]


def import_python_name(python_name: str) -> Any:
    module_name, _, attr_path = python_name.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    return obj


def discover(eps: list[EntryPoint] | None = None) -> PluginRegistry:
    """Load every manifest in the entry-point group; record (never raise) each plugin's failure."""
    registry = PluginRegistry()
    for ep in eps if eps is not None else list(entry_points(group=ENTRY_POINT_GROUP)):
        try:
            manifest = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the app
            log.warning("plugin %s failed to load: %s", ep.name, exc)
            registry.failures.append(PluginFailure(ep.name, f"{type(exc).__name__}: {exc}"))
            continue
        if not isinstance(manifest, PluginManifest):
            registry.failures.append(PluginFailure(ep.name, f"{ep.value} is not a PluginManifest"))
            continue
        registry.add(manifest)
    return registry
