"""The 30-line example plugin of plugins/README.md, taken from the page itself: installed (its entry
point registered), it adds an export format that the CLI runs; without it, the format is unknown."""

from __future__ import annotations

import csv
import re
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest

from annotator.cli import main
from annotator.core.volume import Volume
from annotator.io import write_volume
from annotator.plugin_host.manager import ENTRY_POINT_GROUP, using_registry

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def example_plugin(tmp_path, monkeypatch):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len(code.strip().splitlines()) <= 35, "the README promises a plugin of about 30 lines"
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "annotator_volumes_csv.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path / "plugin"))
    yield [EntryPoint("builtins", "annotator.builtins:manifest", ENTRY_POINT_GROUP),
           EntryPoint("volumes-csv", "annotator_volumes_csv:manifest", ENTRY_POINT_GROUP)]
    sys.modules.pop("annotator_volumes_csv", None)


def test_readme_example_plugin_exports_label_volumes(tmp_path, example_plugin, capsys):
    volume = Volume(np.zeros((4, 5, 6), np.int16), (2.0, 1.0, 0.5))
    labels = np.zeros(volume.shape_zyx, np.uint8)
    labels[0:2, 0:2, 0:3] = 3  # 12 voxels of 1 mm³
    write_volume(volume, tmp_path / "ct.nii.gz")
    write_volume(volume.with_array(labels), tmp_path / "labels.nii.gz")
    (tmp_path / "labels.json").write_text('{"labels": {"3": "lesion"}}')
    args = ["export", "--image", str(tmp_path / "ct.nii.gz"), "--labels", str(tmp_path / "labels.nii.gz"),
            "--format", "volumes-csv", "-o", str(tmp_path / "out"), "--case-id", "c1"]
    with using_registry(example_plugin):
        assert main(args) == 0, capsys.readouterr().err
    rows = list(csv.reader(open(tmp_path / "out" / "c1_volumes.csv")))
    assert rows == [["label", "name", "voxels", "ml"], ["3", "lesion", "12", "0.012"]]
    with using_registry(example_plugin[:1]), pytest.raises(SystemExit) as exit_info:  # uninstalled: gone
        main([*args[:-4], "-o", str(tmp_path / "out2")])
    assert exit_info.value.code == 2
    assert "invalid choice: 'volumes-csv'" in capsys.readouterr().err
