"""The built-in readers, exporters and engines, registered through the same entry point a plugin uses."""

from annotator.plugin_host.api import EngineContribution, PluginManifest

manifest = PluginManifest(
    name="builtins",
    engines=(
        EngineContribution("lite-medsam", "LiteMedSAM (bundled)", "annotator.engine.lite_medsam.engine:LiteMedSamEngine"),
    ),
)
