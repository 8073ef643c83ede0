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
class LabelReaderContribution(Contribution):
    """python_name: `read(volume, path) -> LabelMap` for label files with these suffixes
    (*File → Open labels*, `--labels`, dataset review)."""

    suffixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExporterContribution(Contribution):
    """python_name: an Exporter class (annotator.export.api.BaseExporter) whose `name` is this id."""


@dataclass(frozen=True)
class RuntimeContribution(Contribution):
    """python_name: `build(spec, precision, cache, device) -> ModelRunner` (annotator.engine.runtime);
    `requires`: the modules that must be importable for it to count as installed."""

    requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class EngineContribution(Contribution):
    """python_name: `load(checkpoint, device, runtime, **options) -> PromptEngine`."""


@dataclass(frozen=True)
class PostprocessorContribution(Contribution):
    """python_name: a clean-up step (annotator.postprocess.operations.CleanupOperation) whose `id`
    is this id: `annotator clean` gains its flag, the clean-up panel its check box."""


@dataclass(frozen=True)
class WidgetContribution(Contribution):
    """Qt widgets and tools: resolved only by annotator.qt."""


@dataclass(frozen=True)
class PluginManifest:
    name: str
    api_version: int = API_VERSION
    readers: tuple[ReaderContribution, ...] = field(default_factory=tuple)
    label_readers: tuple[LabelReaderContribution, ...] = field(default_factory=tuple)
    exporters: tuple[ExporterContribution, ...] = field(default_factory=tuple)
    engines: tuple[EngineContribution, ...] = field(default_factory=tuple)
    runtimes: tuple[RuntimeContribution, ...] = field(default_factory=tuple)
    postprocessors: tuple[PostprocessorContribution, ...] = field(default_factory=tuple)
    widgets: tuple[WidgetContribution, ...] = field(default_factory=tuple)

    def contributions(self) -> list[tuple[str, Contribution]]:
        kinds = ("readers", "label_readers", "exporters", "engines", "runtimes", "postprocessors", "widgets")
        return [(kind, c) for kind in kinds for c in getattr(self, kind)]
