"""DICOM series discovery (headers only) and loading into core.Volume, geometry from IPP/IOP and
functional groups.

Handles classic single-frame series, enhanced multi-frame objects, Siemens mosaics, repeated
positions (time points), compressed transfer syntaxes (pydicom + pylibjpeg) and single 2-D
images. Slice stacks that are not a regular grid (gantry tilt, uneven gaps) are never stacked as
if they were: they are refused with a clear message, or resampled in patient space when the
caller asks for it (`regularize=True`). A missing slice is always refused.

The package, by job: `values` (header values as Python), `raw` (bytes: the fast header reader and
the pixel fast path), `frames` (per-plane records), `scan` (finding series), `stack` (frames to a
grid), `pixels` (decoding and rescale), `resample` (irregular stacks), `load` (the two entry points).
"""

from annotator.io.dicom.frames import Frame, frames_of_dataset
from annotator.io.dicom.load import discover_dicom, load_dicom
from annotator.io.dicom.scan import clear_cache, read_header

__all__ = ["Frame", "clear_cache", "discover_dicom", "frames_of_dataset", "load_dicom", "read_header"]
