"""The built-in readers, exporters and engines, registered through the same entry point a plugin uses."""

from annotator.plugin_host.api import (
    EngineContribution,
    ExporterContribution,
    PluginManifest,
    PostprocessorContribution,
    ReaderContribution,
)

manifest = PluginManifest(
    name="builtins",
    readers=(
        ReaderContribution("volume", "DICOM series, NIfTI, NRRD, MHA", "annotator.io:load_volume",
                           suffixes=(".dcm", ".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")),
    ),
    exporters=(
        ExporterContribution("nifti", "NIfTI label map", "annotator.export.nifti:NiftiExporter"),
        ExporterContribution("coco", "COCO instance segmentation", "annotator.export.coco:CocoExporter"),
        ExporterContribution("nnunet", "nnU-Net v2 raw dataset", "annotator.export.nnunet:NnUnetExporter"),
        ExporterContribution("dicom-seg", "DICOM SEG", "annotator.export.dicom_seg:DicomSegExporter"),
        ExporterContribution("datalist", "MONAI datalist", "annotator.export.datalist:DatalistExporter"),
        ExporterContribution("yolo", "YOLO segmentation", "annotator.export.yolo:YoloExporter"),
    ),
    engines=(
        EngineContribution("lite-medsam", "LiteMedSAM (bundled)", "annotator.engine.lite_medsam.engine:LiteMedSamEngine"),
        EngineContribution("sam", "SAM / MedSAM checkpoint", "annotator.engine.sam_engine:SamEngine"),
        EngineContribution("classical", "Classical (no weights)", "annotator.engine.classical:ClassicalEngine"),
    ),
    postprocessors=(
        PostprocessorContribution("cleanup", "Fill holes, islands, largest, smooth", "annotator.postprocess.cleanup:clean_label_map"),
    ),
)
