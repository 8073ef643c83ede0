"""Saving reviewed labels back: originals kept byte for byte, values never renumbered, the copy
mode leaves the source untouched, and nnU-Net's own checker still passes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from support.review_dataset import write_dataset

from annotator.core.errors import InputError
from annotator.core.volume import Volume
from annotator.io import load_volume
from annotator.io.dataset import open_dataset
from annotator.io.dataset_save import ORIGINALS_DIR, DatasetSaver


def _md5(path) -> str:
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def _dataset(tmp_path):
    image = Volume(np.arange(8 * 9 * 10, dtype=np.int16).reshape(8, 9, 10), spacing_zyx_mm=(3.0, 1.0, 1.0))
    labels = np.zeros(image.shape_zyx, np.uint8)
    labels[2:6, 2:6, 2:6] = 1
    labels[1:3, 6:8, 6:8] = 2
    names = {1: "liver", 2: "spleen"}
    root = write_dataset(tmp_path / "ds", "nnunet", image, {"a": labels, "b": labels.copy()}, names)
    return image, labels, open_dataset(root)


def test_in_place_keeps_the_first_original(tmp_path):
    image, labels, dataset = _dataset(tmp_path)
    label_file = dataset.case("a").label
    before = _md5(label_file)
    saver = DatasetSaver(dataset)
    edited = labels.copy()
    edited[0, 0, 0] = 2
    saver.save_case("a", image, edited)
    kept = dataset.root / ORIGINALS_DIR / "labelsTr" / "a.nii.gz"
    assert saver.original_of("a") == kept
    assert _md5(kept) == before
    assert np.array_equal(load_volume(label_file).array, edited)
    edited[0, 0, 1] = 1
    saver.save_case("a", image, edited)  # a second save: the first original stays
    assert _md5(kept) == before
    assert saver.original_of("b") is None
    assert load_volume(label_file).array.dtype == np.uint8


def test_values_are_never_renumbered_and_big_values_widen(tmp_path):
    image, labels, dataset = _dataset(tmp_path)
    edited = labels.astype(np.uint16)
    edited[0, 0, 0] = 300
    path = DatasetSaver(dataset).save_case("b", image, edited)
    back = load_volume(path).array
    assert back.dtype == np.uint16
    assert sorted(np.unique(back)) == [0, 1, 2, 300]


def test_copy_mode_leaves_the_source_untouched(tmp_path):
    image, labels, dataset = _dataset(tmp_path)
    source_sums = {p: _md5(p) for p in dataset.root.rglob("*") if p.is_file()}
    saver = DatasetSaver(dataset, tmp_path / "reviewed")
    edited = labels.copy()
    edited[labels == 2] = 0
    written = saver.save_case("a", image, edited)
    assert written.is_relative_to(tmp_path / "reviewed")
    assert {p: _md5(p) for p in dataset.root.rglob("*") if p.is_file()} == source_sums
    assert not (tmp_path / "reviewed" / ORIGINALS_DIR).exists()
    assert sorted(open_dataset(tmp_path / "reviewed").case_ids) == ["a", "b"]
    # reopening the same output continues in it
    again = DatasetSaver(dataset, tmp_path / "reviewed")
    assert again.target.root == (tmp_path / "reviewed")


def test_nnunet_integrity_after_saving(tmp_path):
    pytest.importorskip("nnunetv2")
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    image, labels, dataset = _dataset(tmp_path)
    edited = labels.copy()
    edited[edited == 2] = 0
    edited[5, 0, 0] = 2
    DatasetSaver(dataset).save_case("a", image, edited)
    verify_dataset_integrity(str(dataset.root), num_processes=1)


def test_wrong_shape_and_copy_into_existing(tmp_path):
    image, labels, dataset = _dataset(tmp_path)
    with pytest.raises(ValueError, match="does not match"):
        DatasetSaver(dataset).save_case("a", image, labels[:-1])
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(InputError, match="not a copy of the dataset"):
        _ = DatasetSaver(dataset, other).target
