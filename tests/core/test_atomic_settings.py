import pytest

from annotator.core.atomic import atomic_path, atomic_write_text
from annotator.settings import Settings, cache_dir


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "labels.nii.gz"
    atomic_write_text(target, "old")
    def crash_while_writing():
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        crash_while_writing()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.nii.gz"]


def test_atomic_write_refuses_overwrite(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_text(target, "1")
    with pytest.raises(FileExistsError):
        atomic_write_text(target, "2", overwrite=False)
    assert target.read_text() == "1"


def test_settings_round_trip_and_corrupt_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATOR_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("ANNOTATOR_CACHE_DIR", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    s = Settings(checkpoint="/x/sam.pth")
    s.add_recent("/data/ct")
    s.save()
    loaded = Settings.load()
    assert loaded.checkpoint == "/x/sam.pth"
    assert loaded.recent_files[0].endswith("ct")
    Settings.path().write_text("{not json")
    assert Settings.load() == Settings()
