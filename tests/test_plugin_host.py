from importlib.metadata import EntryPoint, entry_points

import pytest

from annotator.builtins import manifest as builtins_manifest
from annotator.plugin_host.api import EngineContribution, PluginManifest
from annotator.plugin_host.manager import ENTRY_POINT_GROUP, discover, import_python_name


def test_builtins_are_registered_through_the_entry_point():
    names = [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)]
    assert "builtins" in names
    registry = discover()
    assert "builtins" in registry.manifests
    assert "lite-medsam" in registry.contributions("engines")


@pytest.mark.parametrize(("kind", "contribution"), builtins_manifest.contributions(), ids=lambda c: getattr(c, "id", c))
def test_every_builtin_python_name_imports(kind, contribution):
    assert import_python_name(contribution.python_name) is not None


def test_broken_plugin_is_recorded_not_raised():
    eps = [
        EntryPoint("broken", "annotator_no_such_plugin:manifest", ENTRY_POINT_GROUP),
        EntryPoint("builtins", "annotator.builtins:manifest", ENTRY_POINT_GROUP),
    ]
    registry = discover(eps)
    assert "builtins" in registry.manifests
    assert [f.plugin for f in registry.failures] == ["broken"]


def test_wrong_api_version_is_refused():
    registry = discover([])
    registry.add(PluginManifest(name="future", api_version=99))
    assert "future" not in registry.manifests
    assert "plugin API 99" in registry.failures[0].problem


def test_python_name_must_be_module_colon_attribute():
    with pytest.raises(ValueError, match="python_name"):
        EngineContribution("x", "X", "no_colon_here")


def test_the_session_runs_with_two_broken_plugins_listed_as_failed_and_builtins_intact():
    from annotator.plugin_host.manager import get_registry

    registry = get_registry()
    failed = {f.plugin: f.problem for f in registry.failures}
    assert "needs a package that is not installed" in failed["broken-raises"]
    assert "plugin API 999" in failed["broken-future-api"]
    assert "builtins" in registry.manifests
    assert list(registry.contributions("exporters"))[:6] == [c.id for c in builtins_manifest.exporters]


def test_a_contribution_whose_code_fails_is_a_plugin_error_and_recorded():
    from annotator.plugin_host.api import ExporterContribution
    from annotator.plugin_host.manager import PluginError

    registry = discover([])
    registry.add(PluginManifest(name="half-broken", exporters=(
        ExporterContribution("nope", "Nope", "annotator_no_such_module:Exporter"),)))
    with pytest.raises(PluginError, match="half-broken"):
        registry.get("exporters", "nope")
    assert registry.failures[-1].plugin == "half-broken"
    with pytest.raises(KeyError, match="known: nope"):
        registry.get("exporters", "other")


def test_every_user_visible_list_is_the_registry(qapp):
    """CLI choices and help, the window's export menu, the Open labels filter, the engine and
    runtime lists all come from the registry: a plugin's contribution shows in each."""
    from annotator.cli import build_parser
    from annotator.engine.factory import engine_names
    from annotator.engine.runtime.select import runtime_names
    from annotator.plugin_host.api import (
        EngineContribution,
        ExporterContribution,
        LabelReaderContribution,
        RuntimeContribution,
    )
    from annotator.plugin_host.manager import get_registry

    extra = PluginManifest(name="listing-probe",
                           exporters=(ExporterContribution("probe-fmt", "Probe format", "x.y:Z"),),
                           engines=(EngineContribution("probe-engine", "Probe engine", "x.y:load"),),
                           runtimes=(RuntimeContribution("probe-rt", "Probe runtime", "x.y:build"),),
                           label_readers=(LabelReaderContribution("probe-lab", "Probe labels", "x.y:read",
                                                                  suffixes=(".probe",)),))
    registry = get_registry()
    registry.manifests["listing-probe"] = extra
    try:
        parser = build_parser()
        sub = next(a for a in parser._actions if a.dest == "command")
        export_fmt = next(a for a in sub.choices["export"]._actions if a.dest == "format")
        assert list(export_fmt.choices) == list(registry.titles("exporters"))
        assert "probe-fmt: Probe format" in export_fmt.help
        seg_engine = next(a for a in sub.choices["segment"]._actions if a.dest == "engine")
        assert list(seg_engine.choices) == list(engine_names())
        assert "probe-engine" in engine_names()
        assert "probe-rt" in runtime_names()

        from annotator.qt.file_flows import label_filter
        from annotator.qt.main_window import MainWindow
        from annotator.qt.panels.engine_panel import runtime_choices
        from annotator.settings import Settings

        assert "*.probe" in label_filter()
        assert ("probe-rt", "Probe runtime") in runtime_choices()
        win = MainWindow(Settings(), start_engine=False)
        try:
            menu = [a.objectName()[len("export_"):] for a in win.actions_by_name.values()
                    if a.objectName().startswith("export_") and a.data()]
            assert menu == list(registry.titles("exporters"))
            assert win.actions_by_name["export_probe-fmt"].text() == "Probe format…"
        finally:
            win.shutdown()
            win.deleteLater()
    finally:
        del registry.manifests["listing-probe"]


def test_no_list_of_formats_engines_or_runtimes_outside_the_builtins_manifest():
    """grep: the ids appear together (as a list) only in annotator/builtins."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "annotator"
    lists = {
        "formats": re.compile(r"""["']nifti["'],\s*["']coco["']"""),
        "engines": re.compile(r"""["']lite-medsam["'],\s*["']sam["']"""),
        "runtimes": re.compile(r"""["']torch["'],\s*["']onnxruntime["'],\s*["']openvino["']"""),
    }
    found = [(str(p.relative_to(root)), what) for p in root.rglob("*.py") if "builtins" not in p.parts
             for what, pattern in lists.items() if pattern.search(p.read_text())]
    assert found == []
