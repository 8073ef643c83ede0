"""Open a 3D Slicer segmentation as labels. One layer: the core's label reading (values as stored,
names and colours from the header). Several layers (Slicer keeps overlapping segments in separate
layers): each layer is read, and segments that do not actually overlap are merged into one map;
voxels claimed by two segments are refused with a message naming both."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from annotator.core.errors import InputError
from annotator.core.labels import LabelMap, LabelTable
from annotator.core.volume import Volume
from annotator.io import load_volume
from annotator.io.itk_image import nrrd_fields
from annotator.io.labels import read_label_file, reorient_onto


def _segments(fields: dict[str, str]) -> list[dict[str, str]]:
    out = []
    i = 0
    while f"segment{i}_name" in fields:
        out.append({k.split("_", 1)[1]: v for k, v in fields.items() if k.startswith(f"segment{i}_")})
        i += 1
    return out


def read_slicer_seg(volume: Volume, path: str | os.PathLike[str]) -> LabelMap:
    path = Path(path)
    segments = _segments(nrrd_fields(path))
    layers = {int(s.get("layer", "0") or 0) for s in segments}
    if len(layers) <= 1:
        return read_label_file(volume, path)
    table = LabelTable()
    merged = np.zeros(volume.shape_zyx, np.uint16)
    owner: dict[int, str] = {}
    for layer in sorted(layers):
        source = load_volume(path, volume_index=layer)
        values = reorient_onto(volume, source.with_array(np.asarray(source.array).astype(np.uint16)), path)
        for seg in (s for s in segments if int(s.get("layer", "0") or 0) == layer):
            value = int(seg.get("labelvalue", "1"))
            mask = values == value
            label_id = value if value not in table else table.next_free_id()
            clash = merged[mask]
            if clash.any():
                other = owner[int(clash[clash > 0][0])]
                raise InputError(path, f"segments {other!r} and {seg['name']!r} overlap in "
                                       f"{int(np.count_nonzero(clash))} voxels; a label map holds one label per voxel")
            rgb = [float(c) for c in seg.get("color", "").split()] or [0.5, 0.5, 0.5]
            table.add(seg["name"], tuple(int(round(255 * c)) for c in rgb[:3]), label_id=label_id)  # type: ignore[arg-type]
            merged[mask] = label_id
            owner[label_id] = seg["name"]
    return LabelMap(volume.shape_zyx, table, array=merged)
