"""`annotator --self-test` (what the packaged build's test runs): the installed app opens the demo,
segments a box with the bundled model and exits 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow]


def test_self_test_segments_the_demo_liver(tmp_path):
    pytest.importorskip("torch")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-m", "annotator", "--self-test"], capture_output=True, text=True,
                          timeout=400, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(lines[-1])
    assert report["dice"] >= 0.8
    assert "lite-medsam" in report["engine"]
