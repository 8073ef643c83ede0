"""`annotator segment` and `annotator precompute` end to end on real files: prompts in voxel and
world coordinates, 3-D boxes, clear errors, and the disk cache shared between the two commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from annotator.cli import main
from annotator.core.volume import Volume


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    try:
        import torch  # noqa: F401
    except ImportError:  # the classical-engine tests still run without torch
        yield
        return
    from support.sam_models import one_torch_thread

    with one_torch_thread():
        yield



@pytest.fixture
def ct(tmp_path):
    """A CT-like volume (HU) with a bright cube, on an oblique-free but offset, anisotropic grid."""
    from annotator.io import write_volume

    rng = np.random.default_rng(0)
    array = rng.normal(-50, 10, size=(6, 40, 48)).astype(np.int16)
    array[1:5, 10:22, 12:30] = 200  # z 1..4, y 10..21, x 12..29
    volume = Volume(array, spacing_zyx_mm=(3.0, 0.8, 0.7), origin_lps_mm=(-20.0, 15.0, 40.0), modality="CT")
    path = tmp_path / "ct.nii.gz"
    write_volume(volume, path)
    return path


def _load(path):
    from annotator.io import load_volume

    return load_volume(path)


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


def _write(tmp_path, data, name="prompts.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_segment_voxel_points_and_world_box_with_classical_engine(ct, tmp_path, capsys):
    volume = _load(ct)
    # the same click given in voxel [x, y, z] and in world RAS coordinates
    world_ras = volume.index_zyx_to_world_ras(np.array([2.0, 15.0, 20.0]))
    prompts = _write(tmp_path, {"coordinates": "voxel", "objects": [
        {"label": 3, "name": "cube", "points": [{"position": [20, 15, 2]}]},
        {"label": 4, "coordinates": "world-ras", "points": [{"position": world_ras.tolist()}]},
    ]})
    out = tmp_path / "labels.nii.gz"
    assert main(["segment", str(ct), "--prompts", str(prompts), "-o", str(out), "--engine", "classical"]) == 0
    labels = _load(out).array
    assert labels.shape == volume.shape_zyx
    truth = np.zeros(volume.shape_zyx, dtype=bool)
    truth[2, 10:22, 12:30] = True
    # object 4 is the same click, painted later, so it covers object 3 completely
    assert _dice(labels == 4, truth) > 0.97
    assert not (labels == 3).any()
    assert json.loads((tmp_path / "labels.json").read_text())["labels"] == {"3": "cube", "4": "label 4"}
    out_text = capsys.readouterr().out
    voxels = int((labels == 4).sum())
    assert f"label 3 (cube): 1 axial slice(s), {voxels} voxels" in out_text
    assert f"label 4 (label 4): 1 axial slice(s), {voxels} voxels" in out_text


def test_segment_3d_box_fills_every_slice_between_its_corners(ct, tmp_path):
    prompts = _write(tmp_path, {"objects": [{"label": 1, "box": {"min": [10, 8, 1], "max": [31, 23, 4]}}]})
    out = tmp_path / "boxes.nii.gz"
    assert main(["segment", str(ct), "--prompts", str(prompts), "-o", str(out), "--engine", "classical",
                 "--window", "40,400"]) == 0
    labels = _load(out).array
    assert not labels[[0, 5]].any()
    for z in range(1, 5):
        truth = np.zeros(labels.shape[1:], dtype=bool)
        truth[10:22, 12:30] = True
        assert _dice(labels[z] == 1, truth) > 0.97


@pytest.mark.parametrize(("data", "message"), [
    ("{not json", "not valid JSON (line 1"),
    ({"objects": []}, "non-empty 'objects'"),
    ({"objects": [{"label": 1, "points": [{"position": [20, 15, 2]}, {"position": [20, 15, 3]}]}]},
     "object 1: all points (and the box) must lie on one axial slice, got slices [2, 3]"),
    ({"objects": [{"label": 1, "points": [{"position": [200, 15, 2]}]}]}, "object 1: point 1 [200, 15, 2]"),
    ({"objects": [{"label": 0, "points": [{"position": [20, 15, 2]}]}]}, "'label' must be an integer"),
    ({"objects": [{"label": 1, "name": "x", "points": [{"position": [1, 1, 1], "positive": False}]}]},
     "object 1 (x): needs at least one positive point or a box"),
])
def test_bad_prompts_exit_2_with_the_file_and_problem(ct, tmp_path, capsys, data, message):
    path = tmp_path / "bad.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    code = main(["segment", str(ct), "--prompts", str(path), "-o", str(tmp_path / "o.nii.gz"), "--engine", "classical"])
    err = capsys.readouterr().err
    assert code == 2
    assert str(path) in err
    assert message in err
    assert "Traceback" not in err


def test_existing_output_is_not_overwritten_without_the_flag(ct, tmp_path, capsys):
    prompts = _write(tmp_path, {"objects": [{"label": 1, "points": [{"position": [20, 15, 2]}]}]})
    out = tmp_path / "labels.nii.gz"
    out.write_bytes(b"user data")
    assert main(["segment", str(ct), "--prompts", str(prompts), "-o", str(out), "--engine", "classical"]) == 2
    assert out.read_bytes() == b"user data"
    assert "already exists" in capsys.readouterr().err
    assert main(["segment", str(ct), "--prompts", str(prompts), "-o", str(out), "--engine", "classical",
                 "--overwrite"]) == 0


def test_bad_checkpoint_is_a_one_line_error(ct, tmp_path, capsys):
    pytest.importorskip("torch")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    prompts = _write(tmp_path, {"objects": [{"label": 1, "points": [{"position": [20, 15, 2]}]}]})
    code = main(["segment", str(ct), "--prompts", str(prompts), "-o", str(tmp_path / "o.nii.gz"),
                 "--engine", "sam", "--checkpoint", str(bad)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{bad}: not a readable PyTorch checkpoint" in err


def test_precompute_then_segment_with_sam_reuses_the_disk_cache(ct, tmp_path, capsys):
    pytest.importorskip("torch")
    from support.sam_models import save_tiny_checkpoint

    checkpoint = save_tiny_checkpoint(tmp_path / "tiny_sam.pth", seed=4)
    sam = ["--engine", "sam", "--checkpoint", str(checkpoint), "--device", "cpu"]
    assert main(["precompute", str(ct), "--no-progress", "--window", "40,400", *sam]) == 0
    out = capsys.readouterr().out
    assert "6 slices of 1 volume(s), planes axial, sam-vit_custom_32x2 on " in out  # the model and its runtime are named
    assert "6 embedded, 0 already cached" in out
    assert re.search(r" on (torch|onnxruntime|openvino)-\w+ \(cpu\): ", out)
    assert len(list((tmp_path / "cache" / "embeddings").rglob("*.safetensors"))) == 6
    assert main(["precompute", str(ct), "--no-progress", "--window", "40,400", *sam]) == 0
    assert "0 embedded, 6 already cached" in capsys.readouterr().out
    prompts = _write(tmp_path, {"objects": [
        {"label": 1, "points": [{"position": [20, 15, 2]}, {"position": [40, 35, 2], "positive": False}]},
        {"label": 2, "box": {"min": [10, 8, 3], "max": [31, 23, 4]}},
    ]})
    out = tmp_path / "sam.nii.gz"
    assert main(["segment", str(ct), "--prompts", str(prompts), "-o", str(out), "--window", "40,400", *sam]) == 0
    assert "(0 new embeddings)" in capsys.readouterr().out
    labels = _load(out).array
    assert set(np.unique(labels)) <= {0, 1, 2}
    assert not labels[[0, 1, 5]].any()  # label 1 only on slice 2, label 2 only on slices 3..4
    assert not (labels[2] == 2).any()
    assert not (labels[3:5] == 1).any()
    # the same on another window is a miss: new embeddings are computed
    assert main(["segment", str(ct), "--prompts", str(prompts), "-o", str(tmp_path / "b.nii.gz"),
                 "--window=-600,1500", *sam]) == 0
    assert "(3 new embeddings)" in capsys.readouterr().out


@pytest.mark.realdata
def test_segment_real_ct_from_world_ras_clicks(tmp_path):
    case = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "labelled" / "ct_totalseg_abdomen_3mm"
    if not case.exists():
        pytest.skip("shared test data not available")
    from scipy import ndimage

    from annotator.core.geometry import plane_array_axis, slice_2d

    volume = _load(case / "image.nii.gz")
    reference = _load(case / "labels.nii.gz").array
    axis = plane_array_axis(volume, "axial")
    objects, truths = [], {}
    for value in (5, 1):  # liver, spleen: the click goes to the deepest point of the largest slice
        mask3d = reference == value
        index = int(np.argmax(mask3d.sum(axis=tuple(a for a in range(3) if a != axis))))
        depth = ndimage.distance_transform_edt(slice_2d(mask3d, axis, index))
        row, col = np.unravel_index(np.argmax(depth), depth.shape)
        index_zyx = [0.0, 0.0, 0.0]
        index_zyx[axis] = index
        rest = [a for a in range(3) if a != axis]
        index_zyx[rest[0]], index_zyx[rest[1]] = float(row), float(col)
        world = volume.index_zyx_to_world_ras(np.array(index_zyx))
        objects.append({"label": int(value), "points": [{"position": world.tolist()}]})
        truths[value] = (index, slice_2d(mask3d, axis, index))
    prompts = _write(tmp_path, {"coordinates": "world-ras", "objects": objects})
    out = tmp_path / "real.nii.gz"
    assert main(["segment", str(case / "image.nii.gz"), "--prompts", str(prompts), "-o", str(out),
                 "--engine", "classical", "--window", "abdomen"]) == 0
    labels = _load(out).array
    for value, (index, truth) in truths.items():
        assert _dice(slice_2d(labels, axis, index) == value, truth) > 0.75
