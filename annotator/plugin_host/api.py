"""What plugin authors import: the manifest and contribution records (strings only, so discovery runs no plugin code)."""

from __future__ import annotations

from dataclasses import dataclass, field

API_VERSION = 1


@dataclass(frozen=True)
class Contribution:
    """One thing a plugin offers. `python_name` is "package.module:attribute", imported on first use."""

    id: str
    title: str
    python_name: str

    def __post_init__(self) -> None:
        module, sep, attr = self.python_name.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"{self.id}: python_name must look like 'package.module:attribute', got {self.python_name!r}")


@dataclass(frozen=True)
class ReaderContribution(Contribution):
    suffixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExporterContribution(Contribution):
    pass


@dataclass(frozen=True)
class EngineContribution(Contribution):
    pass


@dataclass(frozen=True)
class PostprocessorContribution(Contribution):
    pass


@dataclass(frozen=True)
class WidgetContribution(Contribution):
    """Qt widgets and tools: resolved only by annotator.qt."""


@dataclass(frozen=True)
class PluginManifest:
    name: str
    api_version: int = API_VERSION
    readers: tuple[ReaderContribution, ...] = field(default_factory=tuple)
    exporters: tuple[ExporterContribution, ...] = field(default_factory=tuple)
    engines: tuple[EngineContribution, ...] = field(default_factory=tuple)
    postprocessors: tuple[PostprocessorContribution, ...] = field(default_factory=tuple)
    widgets: tuple[WidgetContribution, ...] = field(default_factory=tuple)

    def contributions(self) -> list[tuple[str, Contribution]]:
        kinds = ("readers", "exporters", "engines", "postprocessors", "widgets")
        return [(kind, c) for kind in kinds for c in getattr(self, kind)]
