"""Discover plugins through the `annotator.plugins` entry-point group; one plugin's failure never stops the others."""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from annotator.core.errors import AnnotatorError
from annotator.plugin_host.api import API_VERSION, Contribution, PluginManifest

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "annotator.plugins"


class PluginError(AnnotatorError):
    """A plugin's contribution could not be used (its code failed to import)."""


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
            self.failures.append(PluginFailure(manifest.name, f"written for plugin API {manifest.api_version}; "
                                                              f"this annotator speaks API {API_VERSION}"))
            return
        if manifest.name in self.manifests:
            self.failures.append(PluginFailure(manifest.name, "a plugin of this name is already loaded"))
            return
        self.manifests[manifest.name] = manifest

    def contributions(self, kind: str) -> dict[str, Contribution]:
        """All contributions of one kind ("engines", "exporters", ...) keyed by id; later plugins don't shadow builtins."""
        out: dict[str, Contribution] = {}
        for manifest in self.manifests.values():
            for c in getattr(manifest, kind):
                out.setdefault(c.id, c)
        return out

    def titles(self, kind: str) -> dict[str, str]:
        """id -> title of every contribution of one kind, builtins first (for menus, choices, help)."""
        return {cid: c.title for cid, c in self.contributions(kind).items()}

    def by_suffix(self, kind: str, filename: str, *, skip: frozenset[str] = frozenset()) -> str | None:
        """The id of the `kind` contribution whose suffix matches `filename` longest (".seg.nrrd"
        before ".nrrd"), ignoring ids in `skip`; None when no suffix matches."""
        name = filename.lower()
        best: tuple[int, str] | None = None
        for cid, c in self.contributions(kind).items():
            for suffix in getattr(c, "suffixes", ()):
                if cid not in skip and name.endswith(suffix.lower()) and (best is None or len(suffix) > best[0]):
                    best = (len(suffix), cid)
        return None if best is None else best[1]

    def suffixes(self, kind: str) -> list[str]:
        """Every suffix the `kind` contributions take, once each, builtins first."""
        out: list[str] = []
        for c in self.contributions(kind).values():
            out += [s for s in getattr(c, "suffixes", ()) if s not in out]
        return out

    def get(self, kind: str, contribution_id: str) -> Any:
        """The resolved object of contribution `contribution_id`; KeyError naming the known ids."""
        found = self.contributions(kind)
        if contribution_id not in found:
            raise KeyError(f"no {kind[:-1].replace('_', ' ')} {contribution_id!r}; known: {', '.join(found)}")
        return self.resolve(found[contribution_id])

    def resolved(self, kind: str) -> list[Any]:
        """The resolved objects of every contribution of one kind, builtins first; one that fails to
        import is left out (and listed as failed, as resolve does)."""
        out = []
        for contribution in self.contributions(kind).values():
            try:
                out.append(self.resolve(contribution))
            except PluginError:
                continue
        return out

    def owner(self, contribution: Contribution) -> str:
        for name, manifest in self.manifests.items():
            if any(c is contribution for _, c in manifest.contributions()):
                return name
        return "?"

    def resolve(self, contribution: Contribution) -> Any:
        """Import the contribution's python_name (once) and return the object it names. A plugin
        whose code fails to import is recorded as failed and reported as a PluginError."""
        if contribution.python_name not in self._resolved:
            try:
                self._resolved[contribution.python_name] = import_python_name(contribution.python_name)
            except Exception as exc:
                plugin = self.owner(contribution)
                problem = f"{contribution.id}: {contribution.python_name} failed to import ({type(exc).__name__}: {exc})"
                log.warning("plugin %s: %s", plugin, problem)
                self.failures.append(PluginFailure(plugin, problem))
                raise PluginError(f"plugin {plugin!r}: {problem}") from exc
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


# ---- the process-wide registry: every list a user sees is generated from it -------------------

_current: PluginRegistry | None = None
_lock = threading.Lock()


def _with_builtins(registry: PluginRegistry) -> PluginRegistry:
    """The builtins come through their entry point like any plugin; a source tree that was never
    installed has no entry points, so they are added from the same manifest object then."""
    if "builtins" not in registry.manifests:
        from annotator.builtins import manifest

        registry.add(manifest)
    # builtins first: a plugin may add ids, never replace a builtin one
    ordered = {"builtins": registry.manifests.pop("builtins")}
    ordered.update(registry.manifests)
    registry.manifests = ordered
    return registry


def get_registry() -> PluginRegistry:
    """The registry of this process, discovered once (entry points, then the builtins)."""
    global _current
    with _lock:
        if _current is None:
            _current = _with_builtins(discover())
        return _current


@contextlib.contextmanager
def using_registry(eps: list[EntryPoint]) -> Iterator[PluginRegistry]:
    """Within the block, the registry is discovered from `eps` (plus the builtins): what a user
    with exactly those plugins installed gets. For tests and `annotator plugins --check`."""
    global _current
    with _lock:
        previous, _current = _current, _with_builtins(discover(eps))
        registry = _current
    try:
        yield registry
    finally:
        with _lock:
            _current = previous
