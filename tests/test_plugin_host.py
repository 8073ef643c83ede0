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


def test_a_plugins_clean_up_step_joins_annotator_clean_and_the_clean_up_panel(qapp, tmp_path):
    """Clean-up steps are registry contributions too: a plugin's step gets its `annotator clean`
    option and the panel's check box, and runs after the builtins, with no change to the core."""
    import numpy as np

    from annotator.cli import build_parser, main
    from annotator.core.volume import Volume
    from annotator.io import load_volume, write_volume
    from annotator.plugin_host.api import PostprocessorContribution
    from annotator.plugin_host.manager import get_registry

    registry = get_registry()
    assert list(registry.titles("postprocessors")) == ["fill-holes", "remove-islands", "largest", "smooth"]
    registry.manifests["grow-probe"] = PluginManifest(name="grow-probe", postprocessors=(
        PostprocessorContribution("grow", "Grow by", "support.cleanup_step:GROW"),))
    try:
        sub = next(a for a in build_parser()._actions if a.dest == "command")
        flags = [s for a in sub.choices["clean"]._actions for s in a.option_strings]
        assert {"--fill-holes", "--min-size", "--largest", "--smooth", "--grow"} <= set(flags)
        labels = np.zeros((5, 12, 12), np.uint8)
        labels[1:4, 4:7, 4:7] = 3
        labels[2, 5, 5] = 0  # an enclosed hole: filled (a builtin step), then everything grown by 1 mm
        write_volume(Volume(labels, (1.0, 1.0, 1.0)), tmp_path / "in.nii.gz")
        assert main(["clean", str(tmp_path / "in.nii.gz"), "--fill-holes", "--grow", "1mm",
                     "-o", str(tmp_path / "out"), "--workers", "1", "--no-progress"]) == 0
        out = load_volume(tmp_path / "out" / "in.nii.gz").array
        from support.cleanup_step import GROW

        from annotator.postprocess.cleanup import fill_holes

        expected = np.where(GROW.run(fill_holes(labels == 3), 1.0, (1.0, 1.0, 1.0), None, None), 3, 0)
        assert out[2, 5, 5] == 3
        assert int((out == 3).sum()) > int((labels == 3).sum()) + 1  # grown, not only filled
        assert np.array_equal(out, expected)

        from annotator.core.document import AnnotationDocument
        from annotator.qt.background import BackgroundRunner
        from annotator.qt.panels.cleanup_panel import CleanupPanel

        panel = CleanupPanel(AnnotationDocument(), BackgroundRunner(), lambda: 0)
        try:
            assert [op.id for op in panel.operations] == ["fill-holes", "remove-islands", "largest", "smooth", "grow"]
            assert panel.checks["grow"].text() == "Grow by"
            panel.checks["grow"].setChecked(True)
            panel.values["grow"].setValue(2.5)
            assert panel.options().values() == {"grow": 2.5}
            assert panel.settings()["cleanup_grow_value"] == 2.5
        finally:
            panel.deleteLater()
    finally:
        del registry.manifests["grow-probe"]
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert "--grow" not in [s for a in sub.choices["clean"]._actions for s in a.option_strings]
