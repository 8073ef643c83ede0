"""SAM 2 / SAM 2.1 / MedSAM2 for annotator: the manifest (strings only; sam2 and torch are imported
when the user picks the engine)."""

from annotator.plugin_host.api import EngineContribution, PluginManifest

manifest = PluginManifest(
    name="sam2",
    engines=(EngineContribution("sam2", "SAM 2 / MedSAM2 checkpoint", "annotator_sam2.engine:load"),),
)
