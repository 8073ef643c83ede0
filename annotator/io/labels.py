"""Read a label-map file onto an image's grid: lossless axis permutation/flip/offset only, never resampling."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from annotator.core.errors import InputError
from annotator.core.labels import MAX_LABEL, LabelMap, LabelTable, default_colour
from annotator.core.volume import Volume

log = logging.getLogger(__name__)

_MATRIX_TOL = 1e-3   # direction*spacing ratios must be exactly 0 / +-1 up to float32 header noise
_OFFSET_TOL = 1e-2   # voxel-centre offsets must be whole voxels to within 1/100 voxel


def _grid_text(volume: Volume) -> str:
    spacing = ", ".join(f"{s:g}" for s in volume.spacing_zyx_mm)
    origin = ", ".join(f"{o:.3f}" for o in volume.origin_lps_mm)
    return f"shape(z,y,x)={volume.shape_zyx} spacing(z,y,x)=({spacing}) mm origin LPS=({origin})"


def index_mapping(image: Volume, labels: Volume) -> tuple[list[int], list[int], list[int]] | None:
    """How label index axes (x, y, z) land on image index axes, or None if not a whole-voxel map.

    Returns (image_axis_of, sign_of, offset_of) per label axis: image_index[b] = sign * label_index[a]
    + offset, b = image_axis_of[a].
    """
    transform = np.linalg.solve(image.affine_lps(), labels.affine_lps())
    matrix, translation = transform[:3, :3], transform[:3, 3]
    image_axis_of, sign_of, offset_of = [], [], []
    for a in range(3):
        column = matrix[:, a]
        b = int(np.argmax(np.abs(column)))
        expected = np.zeros(3)
        expected[b] = np.sign(column[b])
        if not np.allclose(column, expected, atol=_MATRIX_TOL):
            return None
        offset = float(translation[b])
        if abs(offset - round(offset)) > _OFFSET_TOL:
            return None
        image_axis_of.append(b)
        sign_of.append(int(expected[b]))
        offset_of.append(int(round(offset)))
    if sorted(image_axis_of) != [0, 1, 2]:
        return None
    return image_axis_of, sign_of, offset_of


def reorient_onto(image: Volume, labels: Volume, path: str | os.PathLike[str]) -> np.ndarray:
    """The label voxels as a (z, y, x) array on the image grid (zeros where the label grid is absent)."""
    mapping = index_mapping(image, labels)
    if mapping is None:
        raise InputError(path, "label grid is not the image grid up to axis order/flips "
                               f"(labels: {_grid_text(labels)}; image: {_grid_text(image)}); "
                               "resampling labels is refused because it would change them")
    image_axis_of, sign_of, offset_of = mapping
    label_xyz = labels.array.T  # (x, y, z) view
    axes = [0, 0, 0]
    for a, b in enumerate(image_axis_of):
        axes[b] = a
    moved = np.transpose(label_xyz, axes)  # now axis b holds label axis a
    image_shape_xyz = image.shape_zyx[::-1]
    slices = []
    for a, b in enumerate(image_axis_of):
        n = label_xyz.shape[a]
        if sign_of[a] < 0:
            moved = np.flip(moved, axis=b)
            start = offset_of[a] - (n - 1)
        else:
            start = offset_of[a]
        if start < 0 or start + n > image_shape_xyz[b]:
            raise InputError(path, "label grid extends beyond the image grid "
                                   f"(labels: {_grid_text(labels)}; image: {_grid_text(image)})")
        slices.append((b, slice(start, start + n)))
    if all(s.start == 0 and s.stop == image_shape_xyz[b] for b, s in slices):
        out_xyz = moved
    else:
        out_xyz = np.zeros(image_shape_xyz, dtype=moved.dtype)
        region = [slice(None)] * 3
        for b, s in slices:
            region[b] = s
        out_xyz[tuple(region)] = moved
    return np.ascontiguousarray(out_xyz.T)


def _integer_labels(array: np.ndarray, path: str | os.PathLike[str]) -> np.ndarray:
    """uint16 label values, refusing fractions, negatives and values above 65535."""
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise InputError(path, "label map contains NaN or infinite values")
        if not np.array_equal(array, np.round(array)):
            raise InputError(path, "label map holds non-integer values (a probability map or an "
                                   "interpolated mask?); label values must be whole numbers")
    elif array.dtype.kind not in "iub":
        raise InputError(path, f"label map has unsupported voxel type {array.dtype}")
    if array.size:
        lo, hi = array.min(), array.max()
        if lo < 0:
            raise InputError(path, f"label map holds negative values (min {lo})")
        if hi > MAX_LABEL:
            raise InputError(path, f"label map holds values above {MAX_LABEL} (max {hi})")
    return array.astype(np.uint16, copy=False)


def _sidecar_table(path: Path) -> LabelTable | None:
    """Label names from '<name>.json' beside the file, or 'labels.json' in its folder."""
    stem = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".nhdr"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    for candidate in (path.with_name(f"{stem}.json"), path.with_name("labels.json")):
        if not candidate.is_file():
            continue
        try:
            data = json.loads(candidate.read_text(encoding="utf-8"))
            if isinstance(data, dict) and "labels" in data:
                data = data["labels"]
            return LabelTable.from_json(data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("%s: label names not used (%s)", candidate, exc)
    return None


def slicer_segment_table(path: Path) -> LabelTable | None:
    """Segment names, colours and label values of a 3D Slicer segmentation (.seg.nrrd header:
    SegmentN_Name, SegmentN_Color as r g b in 0..1, SegmentN_LabelValue, SegmentN_Layer)."""
    from annotator.io.itk_image import nrrd_fields

    fields = nrrd_fields(path)
    indices = sorted(int(m.group(1)) for k in fields if (m := re.match(r"^segment(\d+)_name$", k)))
    if not indices:
        return None
    layers = {fields.get(f"segment{i}_layer", "0").strip() for i in indices}
    if len(layers) > 1:
        raise InputError(path, f"holds overlapping segments in {len(layers)} layers; a label map keeps one label "
                               "per voxel (in Slicer: export the segments to a labelmap volume, or save without "
                               "overlaps)")
    table = LabelTable()
    for i in indices:
        try:
            value = int(fields.get(f"segment{i}_labelvalue", str(i + 1)))
            rgb = [float(c) for c in fields.get(f"segment{i}_color", "").split()] or None
        except ValueError as exc:
            raise InputError(path, f"segment {i}: unreadable label value or colour ({exc})") from exc
        if not 0 < value <= MAX_LABEL:
            raise InputError(path, f"segment {i}: label value {value} outside 1..{MAX_LABEL}")
        colour = tuple(int(round(255 * min(max(c, 0.0), 1.0))) for c in rgb[:3]) if rgb and len(rgb) >= 3 else None
        name = fields.get(f"segment{i}_name", f"segment {i}")
        if value in table:
            raise InputError(path, f"segments {table[value].name!r} and {name!r} share label value {value}")
        table.add(name, colour, label_id=value)  # type: ignore[arg-type]
    return table


def label_file_suffixes() -> list[str]:
    """Every label file suffix a registered label reader takes (for file dialogs)."""
    from annotator.plugin_host.manager import get_registry

    return get_registry().suffixes("label_readers")


def read_labels_onto(volume: Volume, path: str | os.PathLike[str]) -> LabelMap:
    """Load a label file onto `volume`'s grid through the label reader of the plugin registry
    whose suffix matches the file name longest (".seg.nrrd" before ".nrrd"); the builtin one is
    read_label_file."""
    from annotator.plugin_host.manager import get_registry

    chosen = get_registry().by_suffix("label_readers", Path(path).name)
    if chosen is None:
        return read_label_file(volume, path)  # no suffix claimed: let the builtin reader decide
    labels = get_registry().get("label_readers", chosen)(volume, path)
    if not isinstance(labels, LabelMap) or labels.shape_zyx != volume.shape_zyx:
        raise InputError(path, f"label reader {chosen!r} returned no label map on the image's grid")
    return labels


def read_label_file(volume: Volume, path: str | os.PathLike[str]) -> LabelMap:
    """Load a label map (NIfTI/NRRD/MHA) onto `volume`'s grid without changing any label value.

    The label file may store the same grid with axes permuted or flipped, or a whole-voxel
    sub-box of it; anything else raises InputError naming both grids. A DICOM SEG is read onto the
    series it references (io.dicom_seg_read); a 3D Slicer .seg.nrrd brings its segment names and
    colours. Otherwise names come from a JSON
    sidecar ('<name>.json' or 'labels.json') when present.
    """
    from annotator.io.dicom_seg_read import is_dicom_seg, read_seg_onto
    from annotator.io.registry import load_volume

    path = Path(path)
    if path.is_file() and not path.name.lower().endswith((".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")) \
            and is_dicom_seg(path):
        return read_seg_onto(volume, path)
    slicer_table = slicer_segment_table(path) if path.name.lower().endswith(".nrrd") else None
    source = load_volume(path)
    n_volumes = int(source.metadata.get("n_volumes", 1))
    if n_volumes > 1:
        raise InputError(path, f"label map must be 3-D, the file holds {n_volumes} volumes")
    values = _integer_labels(source.array, path)
    source = source.with_array(values)
    array = reorient_onto(volume, source, path)
    table = slicer_table or _sidecar_table(path)
    present = [int(v) for v in np.unique(array) if v != 0]
    if table is None:
        table = LabelTable.for_values(present)
    else:
        for value in present:
            if value not in table:
                table.add(f"label {value}", default_colour(value), label_id=value)
    return LabelMap(volume.shape_zyx, table=table, array=array)
