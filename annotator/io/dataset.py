"""Segmentation datasets as lists of cases: nnU-Net v2, MONAI datalists / Decathlon, a CSV of
image,labels pairs (the file `export --pairs` takes) and folders of pairs matched by name.

One reader for `validate`, `export --review` and the window's dataset review, so they always agree
on what a dataset holds. The label table comes from the dataset's own file.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annotator.core.errors import InputError
from annotator.core.labels import LabelTable

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
_CHANNEL = re.compile(r"^(.*)_(\d{4})$")


@dataclass(frozen=True)
class DatasetCase:
    """One case: its image files (several channels for nnU-Net) and its label file, absolute paths."""

    case_id: str
    images: tuple[str, ...]
    label: str | None

    @property
    def image(self) -> str | None:
        """The first channel: the one shown and segmented."""
        return self.images[0] if self.images else None


@dataclass
class Dataset:
    root: Path
    layout: str  # nnunet | decathlon | monai-datalist | csv | folders
    cases: list[DatasetCase]
    table: LabelTable | None  # None when the dataset names no labels
    index_file: Path | None = None  # the file that defines the dataset (dataset.json, datalist, CSV)
    notes: list[str] = field(default_factory=list)  # dataset-level problems (e.g. nnU-Net label numbering)

    def case(self, case_id: str) -> DatasetCase:
        for case in self.cases:
            if case.case_id == case_id:
                return case
        raise KeyError(case_id)

    @property
    def case_ids(self) -> list[str]:
        return [c.case_id for c in self.cases]

    def relative(self, path: str | os.PathLike[str]) -> str:
        """`path` relative to the dataset root (posix), for display and the session file."""
        return Path(os.path.relpath(Path(path).resolve(), self.root.resolve())).as_posix()


def strip_image_suffix(name: str) -> str | None:
    low = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if low.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _files(folder: Path) -> dict[str, Path]:
    out = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            stem = strip_image_suffix(path.name)
            if stem is not None and not path.name.startswith(".") and path.is_file():
                out[stem] = path
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read JSON ({exc})") from exc


def _table_from_names(names: dict[int, str], source: Path) -> LabelTable | None:
    table = LabelTable()
    for value, name in sorted(names.items()):
        if value < 0 or value > 65535:
            raise InputError(source, f"label value {value} is outside 0..65535")
        if value != 0:
            table.add(name, label_id=value)
    return table if len(table) else None


def open_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Read a dataset from its folder, or from its index file (dataset.json, a datalist .json, .csv)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "does not exist")
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return _csv_pairs(path)
        if path.suffix.lower() == ".json":
            return _json_dataset(path)
        raise InputError(path, "not a dataset index: expected dataset.json, a datalist .json or a .csv of pairs")
    for name in ("dataset.json", "datalist.json"):
        if (path / name).is_file():
            return _json_dataset(path / name)
    for image_dir, label_dir in (("images", "labels"), ("imagesTr", "labelsTr")):
        if (path / image_dir).is_dir() and (path / label_dir).is_dir():
            return _folder_pairs(path, image_dir, label_dir)
    csvs = sorted(p for p in path.glob("*.csv") if not p.name.startswith("."))
    if len(csvs) == 1:
        return _csv_pairs(csvs[0])
    raise InputError(path, "not a dataset: expected dataset.json (nnU-Net / Decathlon), datalist.json (MONAI), "
                           "images/ + labels/ folders or one .csv of image,labels pairs")


def _json_dataset(index: Path) -> Dataset:
    data = _read_json(index)
    if not isinstance(data, dict):
        raise InputError(index, "must hold a JSON object")
    root = index.parent
    raw_labels = data.get("labels", {})
    if not isinstance(raw_labels, dict):
        raise InputError(index, "'labels' must be an object")
    if isinstance(data.get("training"), list):
        # Decathlon and MONAI datalists: {"training": [{"image": ..., "label": ...}], "labels": {"1": "liver"}}
        names = {int(k): str(v) for k, v in raw_labels.items() if str(k).isdigit()}
        layout = "decathlon" if index.name == "dataset.json" else "monai-datalist"
        return Dataset(root, layout, _entries(index, data["training"]), _table_from_names(names, index), index)
    # nnU-Net v2: {"labels": {"background": 0, "liver": 1}, "file_ending": ".nii.gz", "channel_names": {...}}
    names = {}
    for name, value in raw_labels.items():
        if isinstance(value, bool) or not isinstance(value, int | float | list):
            raise InputError(index, f"label {name!r}: value must be a number, got {value!r}")
        if isinstance(value, list):  # region-based training: a region lists several values
            continue
        names[int(value)] = str(name)
    ending = str(data.get("file_ending", ".nii.gz"))
    images = _files(root / "imagesTr")
    labels = _files(root / "labelsTr")
    by_case: dict[str, list[Path]] = {}
    for stem, image in images.items():
        if not image.name.endswith(ending):
            continue
        m = _CHANNEL.match(stem)
        by_case.setdefault(m.group(1) if m else stem, []).append(image)
    ids = sorted(set(by_case) | {s for s, p in labels.items() if p.name.endswith(ending)})
    cases = [DatasetCase(c, tuple(str(p) for p in sorted(by_case.get(c, []))),
                         str(labels[c]) if c in labels else None) for c in ids]
    notes = []
    values = sorted(names)
    if values and values != list(range(len(values))):
        notes.append(f"dataset.json labels must be consecutive 0..N for nnU-Net, got {values}")
    return Dataset(root, "nnunet", cases, _table_from_names(names, index), index, notes)


def _entries(index: Path, entries: list[Any]) -> list[DatasetCase]:
    cases = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InputError(index, f"training entry {i} must be an object")
        image = entry.get("image")
        images = image if isinstance(image, list) else [image] if image else []
        label = entry.get("label")
        if not all(isinstance(p, str) for p in images) or (label is not None and not isinstance(label, str)):
            raise InputError(index, f"training entry {i}: image and label must be paths")
        paths = tuple(str((index.parent / p).resolve()) for p in images)
        label_path = str((index.parent / label).resolve()) if label else None
        first = paths[0] if paths else label_path or f"case{i}"
        case_id = strip_image_suffix(Path(first).name) or Path(first).name
        if case_id in seen:
            case_id = f"{case_id}_{i}"
        seen.add(case_id)
        cases.append(DatasetCase(case_id, paths, label_path))
    return cases


def _csv_pairs(index: Path) -> Dataset:
    try:
        with open(index, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(index, f"cannot read ({exc})") from exc
    if not rows or not {"image", "labels"} <= set(rows[0]):
        raise InputError(index, "needs a header with columns image,labels[,case_id] and at least one row")
    cases, seen = [], set()
    for n, row in enumerate(rows, start=2):
        if not row.get("image") or not row.get("labels"):
            raise InputError(index, f"line {n}: image and labels are both required")
        image = str((index.parent / row["image"]).resolve())
        label = str((index.parent / row["labels"]).resolve())
        case_id = row.get("case_id") or strip_image_suffix(Path(image).name) or Path(image).name
        if case_id in seen:
            raise InputError(index, f"line {n}: case id {case_id!r} appears twice; add a case_id column")
        seen.add(case_id)
        cases.append(DatasetCase(case_id, (image,), label))
    table = _sidecar_names(index.parent / "labels.json")
    return Dataset(index.parent, "csv", cases, table, index)


def _folder_pairs(root: Path, image_dir: str, label_dir: str) -> Dataset:
    images, labels = _files(root / image_dir), _files(root / label_dir)
    ids = sorted(set(images) | set(labels))
    cases = [DatasetCase(c, (str(images[c]),) if c in images else (), str(labels[c]) if c in labels else None)
             for c in ids]
    return Dataset(root, "folders", cases, _sidecar_names(root / "labels.json"), None)


def _sidecar_names(path: Path) -> LabelTable | None:
    if not path.exists():
        return None
    raw = _read_json(path)
    raw = raw.get("labels", raw) if isinstance(raw, dict) else raw
    try:
        table = LabelTable.from_json(raw)
    except (TypeError, ValueError, KeyError) as exc:
        raise InputError(path, f"not a label table ({exc})") from exc
    return table if len(table) else None
