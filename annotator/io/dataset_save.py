"""Saving reviewed label maps back into a dataset without ever losing the originals.

In place: before a case's label file is replaced the first time, the file is copied unchanged to
`DATASET/annotator-originals/<its path in the dataset>`; later saves never touch that copy, so it
always holds what the dataset had before the review. A folder beside the label folders, not a
versioned file inside them, because nnU-Net and MONAI read every file in labelsTr/ as a case.

As a new dataset: the whole dataset is copied first (files hard-linked where the file system
allows, which costs no space; every write replaces a file by rename, so a linked original is never
modified), then saved into like in place, except no originals folder is needed.

Labels keep their values (never renumbered) and are written on the image's grid, atomically.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from annotator.core.atomic import PARTIAL_PREFIX, atomic_path
from annotator.core.errors import InputError
from annotator.core.volume import Volume
from annotator.io.dataset import Dataset, DatasetCase, open_dataset

ORIGINALS_DIR = "annotator-originals"


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def copy_dataset(dataset: Dataset, out_dir: str | os.PathLike[str]) -> Dataset:
    """Copy `dataset` to the new folder `out_dir` (which must not exist), atomically; its twin."""
    out = Path(out_dir)
    if out.exists():
        raise InputError(out, "already exists; choose a new folder for the reviewed dataset")
    outside = [p for c in dataset.cases for p in (*c.images, c.label) if p and not _inside(dataset.root, Path(p))]
    if outside:
        raise InputError(outside[0], f"lies outside the dataset folder {dataset.root}; a copy could not keep it")
    out.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=out.parent))
    try:
        staged = workdir / out.name
        shutil.copytree(dataset.root, staged, copy_function=_link_or_copy,
                        ignore=shutil.ignore_patterns(ORIGINALS_DIR, PARTIAL_PREFIX + "*"))
        os.replace(staged, out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    index = out / dataset.index_file.relative_to(dataset.root) if dataset.index_file else out
    return open_dataset(index)


def default_label_path(dataset: Dataset, case: DatasetCase) -> Path:
    """Where a case without a label file gets one, following the dataset's own layout."""
    if dataset.layout == "nnunet":
        ending = ".nii.gz"
        if case.image:
            name = Path(case.image).name
            ending = name[name.index("."):] if "." in name else ending
        return dataset.root / "labelsTr" / f"{case.case_id}{ending}"
    if dataset.layout == "folders":
        label_dir = "labels" if (dataset.root / "labels").is_dir() else "labelsTr"
        return dataset.root / label_dir / f"{case.case_id}.nii.gz"
    raise InputError(dataset.index_file or dataset.root,
                     f"case {case.case_id} has no label file; add one to the {dataset.layout} index first")


class DatasetSaver:
    """Writes reviewed label maps into `dataset` in place (originals kept), or into its copy."""

    def __init__(self, dataset: Dataset, output: str | os.PathLike[str] | None = None) -> None:
        self.source = dataset
        self.output = Path(output) if output is not None else None
        self._target: Dataset | None = None if self.output is not None else dataset

    @property
    def in_place(self) -> bool:
        return self.output is None

    @property
    def target(self) -> Dataset:
        """The dataset written into (the copy is made on first use, or found from an earlier run)."""
        if self._target is None:
            assert self.output is not None
            if self.output.exists():
                index = self.output / self.source.index_file.relative_to(self.source.root) \
                    if self.source.index_file else self.output
                try:
                    found = open_dataset(index)
                except InputError as exc:
                    raise InputError(self.output, f"exists and is not a copy of the dataset under review ({exc})") \
                        from exc
                if sorted(found.case_ids) != sorted(self.source.case_ids):
                    raise InputError(self.output, "exists and holds other cases than the dataset under review")
                self._target = found
            else:
                self._target = copy_dataset(self.source, self.output)
        return self._target

    def originals_folder(self) -> Path:
        return self.target.root / ORIGINALS_DIR

    def save_case(self, case_id: str, image: Volume, label_array: np.ndarray) -> Path:
        """Write one case's labels (on `image`'s grid, values unchanged); returns the file written."""
        from annotator.io import write_volume

        target = self.target
        case = target.case(case_id)
        path = Path(case.label) if case.label else default_label_path(target, case)
        array = np.asarray(label_array)
        if array.shape != image.shape_zyx:
            raise ValueError(f"label map {array.shape} does not match image {image.shape_zyx}")
        top = int(array.max(initial=0))
        dtype = np.uint8 if top <= 255 else np.uint16
        if self.in_place and path.exists():
            self._keep_original(target, path)
        write_volume(image.with_array(array.astype(dtype, copy=False)), path, overwrite=True)
        if not case.label:
            self._target = open_dataset(target.index_file or target.root)
        return path

    def _keep_original(self, target: Dataset, path: Path) -> None:
        if not _inside(target.root, path):
            raise InputError(path, f"lies outside the dataset folder {target.root}; save as a new dataset instead")
        kept = self.originals_folder() / target.relative(path)
        if kept.exists():
            return  # the first original stays; later saves only replace the working file
        with atomic_path(kept, overwrite=False) as tmp:
            shutil.copy2(path, tmp)

    def original_of(self, case_id: str) -> Path | None:
        """The kept original of a case's label file, if it was replaced in place."""
        case = self.target.case(case_id)
        if not case.label:
            return None
        kept = self.originals_folder() / self.target.relative(case.label)
        return kept if kept.exists() else None
