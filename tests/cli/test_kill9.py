"""kill -9 in the middle of writing: every file that existed is intact, and nothing a dataset reader
would take for data is left behind (flat globs, nnU-Net's own listing, our folder walk)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")

TESTS = Path(__file__).resolve().parents[1]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


def _nnunet_listing(folder: Path, suffix: str) -> list[str]:
    """nnU-Net v2's own `subfiles(folder, suffix=..., join=False)`: every file in the folder with that suffix."""
    from batchgenerators.utilities.file_and_folder_operations import subfiles

    return subfiles(str(folder), suffix=suffix, join=False) if folder.is_dir() else []


def _kill_after(args: list[str], seconds: float, env: dict) -> int:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(seconds)
    proc.send_signal(signal.SIGKILL)
    return proc.wait()


def test_export_killed_at_any_moment_leaves_the_dataset_readable(tmp_path):
    import nibabel as nib
    from support.cli_export import write_pairs_csv

    from annotator.core.volume import Volume
    from annotator.io import write_volume

    rows = []
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    for n in range(8):  # big enough that writing one case takes a good fraction of a second
        volume = Volume(rng.integers(-1000, 1000, size=(48, 192, 192)).astype(np.int16), spacing_zyx_mm=(2, 1, 1),
                        origin_lps_mm=(0, 0, 0), direction_lps=np.eye(3), modality="CT")
        labels = np.zeros(volume.shape_zyx, np.uint8)
        labels[10:30, 50:120, 40:90] = 1 + n % 2
        image_path, label_path = tmp_path / "in" / f"ct{n}.nii.gz", tmp_path / "in" / f"ct{n}_labels.nii.gz"
        write_volume(volume, image_path)
        write_volume(volume.with_array(labels), label_path)
        rows.append((image_path, label_path, f"c{n:02d}"))
    pairs = write_pairs_csv(tmp_path / "in" / "pairs.csv", rows)
    out = tmp_path / "Dataset900_Kill"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    base = [sys.executable, "-m", "annotator", "export", "--pairs", str(pairs), "--format", "nnunet",
            "-o", str(out), "--workers", "1", "--no-progress"]
    start = time.perf_counter()
    assert subprocess.run(base, env=env, capture_output=True).returncode == 0  # the dataset we must not damage
    took = time.perf_counter() - start  # an append of the same cases takes about as long
    before = _snapshot(out)
    killed = 0
    for fraction in (0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85):
        delay = took * fraction
        if _kill_after([*base, "--append"], delay, env) == -signal.SIGKILL:
            killed += 1
        now = _snapshot(out)
        for name, data in before.items():
            if name == "dataset.json":  # replaced atomically by an append that finished: complete JSON
                json.loads(now[name])
            else:
                assert now[name] == data, f"{name} changed"
        for sub, suffix in (("imagesTr", ".nii.gz"), ("labelsTr", ".nii.gz")):
            listed = _nnunet_listing(out / sub, suffix)
            assert listed == sorted(p.name for p in (out / sub).glob("*" + suffix))
            for name in listed:  # whatever nnU-Net would train on is a complete file
                assert np.asarray(nib.load(str(out / sub / name)).dataobj).size > 0, name
        json.loads((out / "dataset.json").read_text())
    assert killed >= 3  # the kills did land while it was working


def test_autosave_killed_while_writing_keeps_the_previous_copy(tmp_path):
    """A window killed during an autosave: the copy saved before is still complete and loadable."""
    from annotator.core.autosave import AutosaveSlot, load_autosave

    content_id = "ab" * 16
    shape = (48, 256, 256)
    script = f"""
import sys, numpy as np
from annotator.core.autosave import AutosaveSlot
slot = AutosaveSlot.claim(sys.argv[1], {content_id!r})
rng = np.random.default_rng(0)
n = 0
while True:
    n += 1
    labels = rng.integers(0, 40, size={shape}, dtype=np.uint16)  # incompressible: slow to write
    labels[0, 0, 0] = n
    slot.save(n, None, labels, [{{"id": 1, "name": "x"}}])
    print(n, flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "1"  # one complete autosave exists
        time.sleep(0.3)  # now it is in the middle of writing the next ones
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    slot = AutosaveSlot.claim(tmp_path, content_id)  # the dead window's lock is free again
    info = slot.find()
    assert info is not None
    labels, table = load_autosave(info)
    assert labels.shape == shape
    assert labels[0, 0, 0] >= 1
    assert table == [{"id": 1, "name": "x"}]
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == [f"{content_id}.npz"]
    slot.release()
