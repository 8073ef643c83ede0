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
