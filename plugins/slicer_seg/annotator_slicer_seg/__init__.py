"""3D Slicer segmentation files for annotator: the manifest (strings only; nothing is imported
until the user exports or opens such a file)."""

from annotator.plugin_host.api import ExporterContribution, LabelReaderContribution, PluginManifest

manifest = PluginManifest(
    name="slicer-seg",
    exporters=(
        ExporterContribution("slicer-seg", "3D Slicer segmentation (.seg.nrrd)",
                             "annotator_slicer_seg.exporter:SlicerSegExporter"),
    ),
    label_readers=(
        LabelReaderContribution("slicer-seg", "3D Slicer segmentation (.seg.nrrd)",
                                "annotator_slicer_seg.reader:read_slicer_seg", suffixes=(".seg.nrrd",)),
    ),
)
