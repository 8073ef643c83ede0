"""bench/finer_pixels.py: the finer copy keeps the anatomy where it was, and its noise is what it says."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "finer_pixels.py"


def _module():
    spec = importlib.util.spec_from_file_location("finer_pixels", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _case(folder: Path) -> None:
    image = np.full((6, 20, 24), -100, dtype=np.int16)    # (z, y, x)
    image[:, 5:15, 6:18] = 60
    labels = (image == 60).astype(np.uint8)
    for array, name in ((image, "image.nii.gz"), (labels, "labels.nii.gz")):
        volume = sitk.GetImageFromArray(array)
        volume.SetSpacing((2.0, 2.0, 3.0))
        volume.SetOrigin((10.0, -5.0, 7.0))
        sitk.WriteImage(volume, str(folder / name))
    (folder / "labels.json").write_text(json.dumps({"1": "box"}))


def _run(module, monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["finer_pixels.py", *args])
    return module.main()


def test_the_copy_keeps_extent_slices_and_labels(tmp_path, monkeypatch):
    _case(tmp_path)
    out = tmp_path / "fine"
    assert _run(_module(), monkeypatch, str(tmp_path), str(out), "--factor", "2") == 0
    image = sitk.ReadImage(str(out / "image.nii.gz"))
    labels = sitk.ReadImage(str(out / "labels.nii.gz"))
    assert image.GetSize() == (48, 40, 6)
    assert image.GetSpacing() == pytest.approx((1.0, 1.0, 3.0))
    # the first voxel's outer edge stays where it was: origin - spacing / 2 is unchanged
    assert np.array(image.GetOrigin()) - np.array([0.5, 0.5, 1.5]) == pytest.approx(np.array([9.0, -6.0, 5.5]))
    array = sitk.GetArrayFromImage(labels)
    assert array.sum() == 6 * 20 * 24                      # the 10 x 12 box, 4 fine pixels each
    assert set(np.unique(array)) == {0, 1}


def test_noise_has_the_asked_sd_is_correlated_in_plane_and_independent_between_slices(tmp_path, monkeypatch):
    _case(tmp_path)
    module = _module()
    clean, noisy = tmp_path / "clean", tmp_path / "noisy"
    assert _run(module, monkeypatch, str(tmp_path), str(clean), "--factor", "4") == 0
    assert _run(module, monkeypatch, str(tmp_path), str(noisy), "--factor", "4", "--noise-sd", "20") == 0
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(clean / "image.nii.gz"))).astype(float)
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(noisy / "image.nii.gz"))).astype(float)
    noise = b - a
    assert noise.std() == pytest.approx(20.0, rel=0.05)
    neighbours_in_plane = np.corrcoef(noise[:, :, :-1].ravel(), noise[:, :, 1:].ravel())[0, 1]
    neighbours_across = np.corrcoef(noise[:-1].ravel(), noise[1:].ravel())[0, 1]
    assert neighbours_in_plane > 0.5
    assert abs(neighbours_across) < 0.1
    again = tmp_path / "again"
    assert _run(module, monkeypatch, str(tmp_path), str(again), "--factor", "4", "--noise-sd", "20") == 0
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(again / "image.nii.gz"))), b.astype(np.int16))
