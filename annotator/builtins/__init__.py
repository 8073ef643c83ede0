"""The built-in readers, exporters, engines, runtimes and clean-up steps, registered through the same entry point a
plugin uses. This manifest is the only list of them: CLI choices, --help, the window's menus and
the engine panel are generated from the registry it feeds (annotator.plugin_host.manager)."""

from annotator.plugin_host.api import (
    EngineContribution,
    ExporterContribution,
    LabelReaderContribution,
    PluginManifest,
    PostprocessorContribution,
    ReaderContribution,
    RuntimeContribution,
)

manifest = PluginManifest(
    name="builtins",
    readers=(
        ReaderContribution("volume", "DICOM series, NIfTI, NRRD, MHA", "annotator.io:load_volume",
                           suffixes=(".dcm", ".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")),
    ),
    label_readers=(
        LabelReaderContribution("label-map", "Label maps (NIfTI, NRRD, MHA, DICOM SEG)",
                                "annotator.io.labels:read_label_file",
                                suffixes=(".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")),
    ),
    exporters=(
        ExporterContribution("nifti", "NIfTI label map", "annotator.export.nifti:NiftiExporter"),
        ExporterContribution("coco", "COCO (2-D slices)", "annotator.export.coco:CocoExporter"),
        ExporterContribution("nnunet", "nnU-Net v2 raw dataset", "annotator.export.nnunet:NnUnetExporter"),
        ExporterContribution("dicom-seg", "DICOM SEG", "annotator.export.dicom_seg:DicomSegExporter"),
        ExporterContribution("datalist", "MONAI datalist", "annotator.export.datalist:DatalistExporter"),
        ExporterContribution("yolo", "YOLO segmentation", "annotator.export.yolo:YoloExporter"),
    ),
    engines=(
        EngineContribution("lite-medsam", "LiteMedSAM (bundled)", "annotator.engine.factory:load_lite_medsam"),
        EngineContribution("sam", "SAM / MedSAM checkpoint", "annotator.engine.factory:load_sam"),
        EngineContribution("classical", "Classical (no weights)", "annotator.engine.factory:load_classical"),
        EngineContribution("remote", "Server (annotator serve)", "annotator.engine.remote:load_remote"),
    ),
    runtimes=(
        RuntimeContribution("torch", "torch (reference)", "annotator.engine.runtime.select:build_torch",
                            requires=("torch",)),
        RuntimeContribution("onnxruntime", "ONNX Runtime", "annotator.engine.runtime.select:build_onnxruntime",
                            requires=("onnx", "onnxruntime")),
        RuntimeContribution("openvino", "OpenVINO", "annotator.engine.runtime.select:build_openvino",
                            requires=("onnx", "openvino")),
    ),
    postprocessors=(
        PostprocessorContribution("fill-holes", "Fill holes", "annotator.postprocess.operations:FILL_HOLES"),
        PostprocessorContribution("remove-islands", "Remove islands", "annotator.postprocess.operations:REMOVE_ISLANDS"),
        PostprocessorContribution("largest", "Keep the largest piece", "annotator.postprocess.operations:KEEP_LARGEST"),
        PostprocessorContribution("smooth", "Smooth", "annotator.postprocess.operations:SMOOTH"),
    ),
)
