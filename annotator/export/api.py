"""What every exporter shares: the spec, the result, the geometry guard and de-identification.

Exporters take a Volume and a LabelMap on its grid and write one dataset format. They never
recompute geometry, never write a label map that lies on another grid, never overwrite without
`spec.overwrite`, and keep the patient's name, ID and birth date out of every byte they write
unless `spec.keep_phi`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from annotator.core.atomic import atomic_write_text
from annotator.core.errors import AnnotatorError, GeometryMismatchError, InputError
from annotator.core.geometry import Window, default_window
from annotator.core.labels import LabelMap, LabelTable
from annotator.core.volume import Volume, grid_differences

SliceSelection = Literal["annotated", "all", "every"]

# DICOM attributes that identify the patient; the brief's three plus their close relatives
# that highdicom would otherwise copy from the source images into a SEG.
PHI_METADATA_KEYS = ("patient_name", "patient_id", "patient_birth_date")


class OutputExistsError(AnnotatorError):
    """An output file already exists and the user did not ask to overwrite it."""

    def __init__(self, path: str | os.PathLike[str], hint: str = "use --overwrite to replace it") -> None:
        self.path = os.fspath(path)
        super().__init__(f"{self.path}: already exists ({hint})")


@dataclass(frozen=True)
class ExportSpec:
    """How to export one case. Formats ignore the fields that do not concern them.

    case_id:        file-name stem of the case as the user named it; "" = a pseudonym derived
                    from the image content (the default: file names often carry patient names).
    overwrite:      replace files of the same name (a case exported again).
    append:         add cases to the dataset index already in the folder (dataset.json,
                    datalist.json, annotations.json, labels.json, data.yaml); a label value there
                    keeps its meaning, or the export is refused before anything is written.
    plane/axis:     for 2-D formats (COCO, YOLO): slices stacked along this array axis
                    (0 = z, 1 = y, 2 = x); `plane` ("axial"...) wins when given.
    slices:         "annotated" (slices with any label), "all", or "every" k-th slice
                    (`every_k`) plus every annotated slice; unannotated ones are empty negatives.
    window:         intensity window for 8-bit slice images; None = core.geometry.default_window.
    coco_encoding:  "rle" (exact, compact) or "polygon" (exact pixel-edge polygons; a
                    component with holes falls back to RLE because polygons cannot hold holes).
    """

    case_id: str = ""
    overwrite: bool = False
    append: bool = False
    keep_phi: bool = False
    plane: str | None = None
    axis: int = 0
    slices: SliceSelection = "annotated"
    every_k: int = 1
    window: Window | None = None
    coco_encoding: Literal["rle", "polygon"] = "rle"
    connectivity: int = 2  # 2-D: 1 = 4-neighbour, 2 = 8-neighbour components
    # Dataset-level decisions made once by Exporter.prepare before cases run (possibly in other
    # processes): our label id -> the id written (nnU-Net and YOLO need consecutive ids).
    label_id_map: tuple[tuple[int, int], ...] = ()
    # DICOM de-identification: a key file the user keeps (hex), else one kept per output folder
    # outside it; `pseudonym_key` is the resolved key (hex), set by prepare.
    pseudonym_key_file: str | None = None
    pseudonym_key: str = ""

    def __post_init__(self) -> None:
        if self.slices not in ("annotated", "all", "every"):
            raise ValueError(f"slices must be annotated, all or every, got {self.slices!r}")
        if self.every_k < 1:
            raise ValueError(f"every_k must be >= 1, got {self.every_k}")
        if self.coco_encoding not in ("rle", "polygon"):
            raise ValueError(f"coco_encoding must be rle or polygon, got {self.coco_encoding!r}")
        if self.axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {self.axis}")


@dataclass
class ExportResult:
    """What one export wrote (paths) and what a dataset-level merge step needs (records)."""

    case_id: str
    files: list[Path] = field(default_factory=list)
    records: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class Exporter(Protocol):
    """One dataset format.

    case_files:   the files one case owns, as (folder, glob pattern) pairs: checked for every
                  case before the first file of the export is written.
    index_files:  the dataset-level files finalize writes (refused, replaced or appended to).
    check_append: raise InputError if adding this table to the index in out_dir would change
                  what an existing label value means.
    prepare:      once per dataset, before any case: returns the spec carrying dataset-level
                  decisions (label renumbering) and the final case ids (nnU-Net numbers them).
    export_case:  one case; may run in a worker process or on a Dask worker.
    finalize:     once, after all cases: dataset-level files (annotations.json, dataset.json).
    """

    name: str

    def case_files(self, out_dir: Path, case_id: str, spec: ExportSpec) -> list[tuple[Path, str]]: ...

    def index_files(self, out_dir: Path) -> list[Path]: ...

    def check_append(self, out_dir: Path, table: LabelTable) -> None: ...

    def prepare(self, out_dir: Path, table: LabelTable, case_ids: Sequence[str],
                spec: ExportSpec) -> tuple[ExportSpec, list[str]]: ...

    def export_case(self, volume: Volume, labels: LabelMap | Volume, out_dir: Path,
                    spec: ExportSpec) -> ExportResult: ...

    def finalize(self, results: Sequence[ExportResult], out_dir: Path, spec: ExportSpec,
                 table: LabelTable) -> list[Path]: ...


# ---- geometry guard ----------------------------------------------------------------------------

def require_label_map_on_grid(volume: Volume, labels: LabelMap | Volume,
                              table: LabelTable | None = None) -> LabelMap:
    """The label map to export, after checking it lies exactly on the image grid.

    `labels` may be a LabelMap (checked by shape: it has no geometry of its own) or an integer
    label Volume read from a file (checked on shape, spacing, origin and direction). Raises
    GeometryMismatchError naming every difference; nothing is written by the caller then.
    """
    if isinstance(labels, Volume):
        diffs = grid_differences(volume, labels)
        if diffs:
            raise GeometryMismatchError(
                "label map is on a different grid than the image: " + "; ".join(diffs)
                + " (resample or re-read it onto the image grid first; refusing to export)")
        values = np.asarray(labels.array)
        if values.dtype.kind == "f":
            if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
                raise GeometryMismatchError("label map holds non-integer values; refusing to export")
        if values.size and (values.min() < 0 or values.max() > np.iinfo(np.uint16).max):
            raise GeometryMismatchError("label values must lie within 0..65535; refusing to export")
        array = values.astype(np.uint16)
        return LabelMap(array.shape, table if table is not None else LabelTable.for_values(np.unique(array)),
                        array=array)
    if tuple(labels.shape_zyx) != tuple(volume.shape_zyx):
        raise GeometryMismatchError(
            f"label map is on a different grid than the image: shape (z,y,x) {tuple(volume.shape_zyx)} "
            f"vs {tuple(labels.shape_zyx)}; refusing to export")
    if table is not None and table is not labels.table:
        return LabelMap(labels.shape_zyx, table, array=labels.array)
    return labels


def smallest_unsigned_dtype(max_value: int) -> np.dtype:
    """uint8 when every label fits, else uint16 (labels never exceed 65535)."""
    return np.dtype(np.uint8) if max_value <= np.iinfo(np.uint8).max else np.dtype(np.uint16)


def slice_window(volume: Volume, spec: ExportSpec) -> Window:
    return spec.window if spec.window is not None else default_window(volume)


def export_axis(volume: Volume, spec: ExportSpec) -> int:
    if spec.plane:
        from annotator.core.geometry import plane_array_axis

        return plane_array_axis(volume, spec.plane)  # type: ignore[arg-type]
    return spec.axis


def selected_slices(label_array: np.ndarray, axis: int, spec: ExportSpec) -> list[int]:
    """Slice indices along `axis` to export, by `spec.slices`."""
    other = tuple(a for a in range(3) if a != axis)
    annotated = np.flatnonzero(np.any(label_array != 0, axis=other))
    if spec.slices == "annotated":
        return [int(i) for i in annotated]
    n = label_array.shape[axis]
    if spec.slices == "all":
        return list(range(n))
    return sorted({int(i) for i in annotated} | set(range(0, n, spec.every_k)))


# ---- overwrite ----------------------------------------------------------------------------------

def refuse_existing(paths: Iterable[Path], spec: ExportSpec) -> None:
    """Raise OutputExistsError for the first path that exists, unless spec.overwrite."""
    refuse_existing_files(paths, overwrite=spec.overwrite)


def refuse_existing_files(paths: Iterable[Path], *, overwrite: bool) -> None:
    if overwrite:
        return
    for path in paths:
        if Path(path).exists():
            raise OutputExistsError(path)


def write_json(path: Path, data: Any, *, overwrite: bool) -> Path:
    if not overwrite and path.exists():
        raise OutputExistsError(path)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n", overwrite=True)
    return path


def read_index_json(path: Path) -> dict[str, Any]:
    """An existing dataset index file ({} when absent); InputError naming it when unreadable."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read the existing dataset file ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(path, "the existing dataset file is not a JSON object")
    return data


def check_label_meanings(path: Path, existing: dict[int, str], table: LabelTable) -> None:
    """InputError naming `path` if a value of `table` means another label than in `existing`."""
    clashes = [f"{lab.id} is {existing[lab.id]!r} there, {lab.name!r} here" for lab in table
               if lab.id in existing and existing[lab.id] != lab.name]
    if clashes:
        raise InputError(path, "appending would change what label values mean (" + "; ".join(clashes)
                         + "); export into a new folder or rename the labels to match")


def check_targets(exporter: Exporter, out_dir: Path, case_ids: Sequence[str], spec: ExportSpec,
                  table: LabelTable) -> None:
    """Refuse the whole export before its first write if it would replace or change a file the
    user did not ask for. A pseudonymous case ("" id) is checked when its image is loaded, still
    before its own first write."""
    out_dir = Path(out_dir)
    if not spec.overwrite:
        listings: dict[Path, list[str]] = {}  # each folder listed once, not once per case
        for case_id in case_ids:
            if not case_id:
                continue
            for folder, pattern in exporter.case_files(out_dir, case_id, spec):
                if folder not in listings:
                    listings[folder] = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
                clash = next(iter(fnmatch.filter(listings[folder], pattern)), None)
                if clash is not None:
                    raise OutputExistsError(folder / clash, f"case {case_id} is already in {out_dir}; "
                                                            "use --overwrite to replace it")
    existing = [p for p in exporter.index_files(out_dir) if p.exists()]
    if not existing:
        return
    if spec.append:
        exporter.check_append(out_dir, table)
    elif not spec.overwrite:
        raise OutputExistsError(existing[0], "use --append to add cases to this dataset, or --overwrite "
                                             "to replace its index")


# ---- de-identification --------------------------------------------------------------------------

def phi_values(volume: Volume) -> list[str]:
    """The identifying strings of the source (name, ID, birth date) as they may appear in text.

    A DICOM person name "DOE^JANE" is also returned as "DOE JANE", "JANE DOE" and "DOE_JANE" so a
    scrubber catches it in file names and free text.
    """
    out: set[str] = set()
    for key in PHI_METADATA_KEYS:
        raw = str(volume.metadata.get(key) or "").strip()
        if len(raw) < 2:  # one character is not identifying and would match everywhere
            continue
        out.add(raw)
        if key == "patient_name":
            parts = [p for p in re.split(r"[\^=]+", raw) if p.strip()]
            if parts:
                out.update({" ".join(parts), "_".join(parts), " ".join(reversed(parts)), "".join(parts)})
    return sorted(out, key=len, reverse=True)


def contains_phi(text: str, phi: Sequence[str]) -> bool:
    low = text.lower()
    return any(p.lower() in low for p in phi)


def safe_case_id(case_id: str, volume: Volume, spec: ExportSpec) -> str:
    """A file-system safe case id that carries no patient identifier (unless keep_phi).

    No id ("") gets a name derived from the image content alone, never from a file name (which
    so often is the patient's): the same scan always gets the same name, so exporting it again
    is refused rather than duplicated. A given id that still holds the patient's name, ID or
    birth date is replaced the same way.
    """
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", case_id).strip("._")
    if not clean or (not spec.keep_phi and contains_phi(case_id, phi_values(volume))):
        clean = content_case_id(volume)
    return clean


def content_case_id(volume: Volume) -> str:
    """`case_` + 10 hex digits of the image content's hash: stable, and identifying nobody."""
    return "case_" + hashlib.blake2b(volume.content_id.encode(), digest_size=5).hexdigest()


def scrub_text(text: str, phi: Sequence[str], replacement: str = "anonymous") -> str:
    """`text` with every identifying value replaced (case-insensitive)."""
    for value in phi:
        text = re.sub(re.escape(value), replacement, text, flags=re.IGNORECASE)
    return text


# ---- registry and one-case convenience ----------------------------------------------------------

def export_formats() -> dict[str, str]:
    """format id -> title of every exporter in the plugin registry (builtins first)."""
    from annotator.plugin_host.manager import get_registry

    return get_registry().titles("exporters")


class BaseExporter:
    """Defaults for exporters without dataset-level decisions."""

    name = "base"

    def case_files(self, out_dir: Path, case_id: str, spec: ExportSpec) -> list[tuple[Path, str]]:
        return []

    def index_files(self, out_dir: Path) -> list[Path]:
        return []

    def check_append(self, out_dir: Path, table: LabelTable) -> None:
        return None

    def prepare(self, out_dir: Path, table: LabelTable, case_ids: Sequence[str],
                spec: ExportSpec) -> tuple[ExportSpec, list[str]]:
        return spec, list(case_ids)

    def finalize(self, results: Sequence[ExportResult], out_dir: Path, spec: ExportSpec,
                 table: LabelTable) -> list[Path]:
        return []


def consecutive_id_map(table: LabelTable, start: int = 1) -> tuple[tuple[int, int], ...]:
    """Label ids renumbered start, start+1, ... in table order (for formats needing it)."""
    return tuple((lab.id, start + i) for i, lab in enumerate(table))


def remap_labels(array: np.ndarray, id_map: Sequence[tuple[int, int]] | dict[int, int]) -> np.ndarray:
    """`array` with label values renumbered by `id_map`; values not in the map become 0."""
    pairs = dict(id_map)
    if not pairs:
        return array
    lut = np.zeros(max(int(array.max(initial=0)), max(pairs)) + 1, dtype=np.uint16)
    for old, new in pairs.items():
        lut[old] = new
    return lut[array]


def get_exporter(name: str) -> Exporter:
    """The exporter for format `name` (an id of export_formats()), imported on demand."""
    from annotator.plugin_host.manager import get_registry

    formats = export_formats()
    if name not in formats:
        raise ValueError(f"unknown export format {name!r}; expected one of {', '.join(formats)}")
    exporter = get_registry().get("exporters", name)()
    if getattr(exporter, "name", name) != name:
        raise ValueError(f"exporter {name!r} calls itself {exporter.name!r}; a plugin's ids must match")
    return exporter


def export_volume(exporter: Exporter | str, volume: Volume, labels: LabelMap | Volume,
                  out_dir: str | os.PathLike[str], spec: ExportSpec) -> ExportResult:
    """Export one case and write the dataset-level files: the whole job for a single image."""
    if isinstance(exporter, str):
        exporter = get_exporter(exporter)
    label_map = require_label_map_on_grid(volume, labels)
    spec, (case_id,) = exporter.prepare(Path(out_dir), label_map.table, [spec.case_id], spec)
    spec = replace(spec, case_id=case_id or safe_case_id("", volume, spec))
    check_targets(exporter, Path(out_dir), [spec.case_id], spec, label_map.table)
    result = exporter.export_case(volume, label_map, Path(out_dir), spec)
    result.files.extend(exporter.finalize([result], Path(out_dir), spec, label_map.table))
    return result
