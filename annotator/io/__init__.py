"""Ring 2: readers and writers turning files into core.Volume / LabelMap (SimpleITK, pydicom inside functions)."""

from annotator.io.labels import read_labels_onto
from annotator.io.registry import discover_series, load_volume, write_volume
from annotator.io.series import SeriesInfo

__all__ = ["SeriesInfo", "discover_series", "load_volume", "read_labels_onto", "write_volume"]
