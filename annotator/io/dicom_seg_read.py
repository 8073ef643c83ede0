"""A DICOM SEG opened as labels onto the DICOM series it segments (highdicom reads it).

Frames are matched to the open series by the SOP Instance UIDs they reference, never by position
in the file, so a SEG that omits empty frames or lists them in another order lands on the right
slices. Segment names and colours become the label table; a SEG written by our exporter carries
each label's value in its Tracking ID ("label N"), so the values come back unchanged; others use
the segment numbers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from annotator.core.errors import InputError
from annotator.core.labels import LabelMap, LabelTable, default_colour
from annotator.core.volume import Volume

_OUR_TRACKING_ID = re.compile(r"^label (\d{1,5})$")


def is_dicom_seg(path: str | os.PathLike[str]) -> bool:
    """True for a DICOM file whose SOP class is Segmentation Storage (header read only)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # noqa: BLE001 - anything pydicom cannot parse is simply not a SEG
        return False
    return str(ds.get("SOPClassUID", "")) in ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")


def read_seg_onto(volume: Volume, path: str | os.PathLike[str]) -> LabelMap:
    import highdicom as hd

    path = Path(path)
    try:
        seg = hd.seg.segread(str(path))
    except Exception as exc:
        raise InputError(path, f"not a readable DICOM SEG ({type(exc).__name__}: {exc})") from exc
    uids = [str(u) for u in volume.metadata.get("sop_instance_uids") or []]
    if len(uids) != volume.shape_zyx[0]:
        raise InputError(path, "a DICOM SEG opens onto the DICOM series it segments; the open image is not a "
                               "DICOM series read slice by slice (or it was resampled)")
    referenced = {str(sop) for _, _, sop in seg.get_source_image_uids()}
    if not referenced & set(uids):
        raise InputError(path, "references none of the open series' images: open the series it was made on")
    table = LabelTable()
    number_to_id: dict[int, int] = {}
    for item in seg.SegmentSequence:
        number = int(item.SegmentNumber)
        match = _OUR_TRACKING_ID.match(str(item.get("TrackingID", "")))
        label_id = int(match.group(1)) if match and 0 < int(match.group(1)) <= 65535 else number
        if label_id in table:
            label_id = number  # two segments claim one value: fall back to the unique numbers
        colour = default_colour(label_id)
        lab = item.get("RecommendedDisplayCIELabValue")
        if lab is not None:
            r, g, b = (int(c) for c in hd.color.CIELabColor.from_dicom_value(lab).to_rgb())
            colour = (r, g, b)
        table.add(str(item.get("SegmentLabel", f"segment {number}")), colour, label_id=label_id)
        number_to_id[number] = label_id
    try:
        pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True,
                                                   relabel=False, assert_missing_frames_are_empty=True)
    except Exception as exc:
        raise InputError(path, f"cannot map its frames onto the open series ({type(exc).__name__}: {exc})") from exc
    if pixels.shape != volume.shape_zyx:
        raise InputError(path, f"frames of {pixels.shape[1:]} pixels do not match the series' {volume.shape_zyx[1:]}")
    lut = np.zeros(max(number_to_id, default=0) + 1, dtype=np.uint16)
    for number, label_id in number_to_id.items():
        lut[number] = label_id
    array = lut[np.asarray(pixels, dtype=np.int64).clip(0, lut.size - 1)]
    return LabelMap(volume.shape_zyx, table=table, array=array)
