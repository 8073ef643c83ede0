"""The packaged app (make package, then make package-test; never in CI): the bundled executable,
with no Python of ours around it, starts headless, opens the demo volume, segments one box through
the bundled LiteMedSAM and exits 0. Also the CLI inside the bundle and its helper-process route."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.package, pytest.mark.slow]

BUNDLE = Path(__file__).resolve().parents[2] / "dist" / "annotator"
EXE = BUNDLE / ("annotator.exe" if os.name == "nt" else "annotator")


@pytest.fixture(scope="module")
def exe() -> Path:
    if not EXE.is_file():
        pytest.fail(f"{EXE} is missing: run `make package` first")
    return EXE


def _env(tmp_path: Path) -> dict[str, str]:
    # a clean user: no cache, no settings, no Python path of the build machine
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(QT_QPA_PLATFORM="offscreen", HOME=str(tmp_path), ANNOTATOR_CACHE_DIR=str(tmp_path / "cache"),
               ANNOTATOR_CONFIG_DIR=str(tmp_path / "config"), ANNOTATOR_DATA_DIR=str(tmp_path / "data"))
    return env


def test_bundle_segments_the_demo_with_the_bundled_model(exe, tmp_path):
    proc = subprocess.run([str(exe), "--self-test"], capture_output=True, text=True, timeout=600, env=_env(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
    assert report["dice"] >= 0.8
    assert "lite-medsam (bundled)" in report["engine"]


def test_bundle_cli_and_module_route(exe, tmp_path):
    proc = subprocess.run([str(exe), "export", "--help"], capture_output=True, text=True, timeout=120,
                          env=_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "nnunet" in proc.stdout
    assert "dicom-seg" in proc.stdout
    proc = subprocess.run([str(exe), "-m", "os"], capture_output=True, text=True, timeout=60, env=_env(tmp_path))
    assert proc.returncode == 2
    assert "only annotator's own modules" in proc.stderr
