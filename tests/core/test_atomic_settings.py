from pathlib import Path

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


def test_partial_file_is_invisible_to_dataset_listings(tmp_path):
    """A write that dies half-way leaves nothing a flat glob or nnU-Net's listing would take."""
    target = tmp_path / "labelsTr" / "case_001.nii.gz"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        # while the write runs (and if the process dies now), the folder's data files are only
        # the finished ones; the partial file keeps its final name inside a hidden folder
        assert tmp.name == "case_001.nii.gz"
        assert list(target.parent.glob("*.nii.gz")) == []
        assert [p for p in target.parent.iterdir() if p.is_file()] == []
        assert all(p.name.startswith(".") for p in target.parent.iterdir())
    assert [p.name for p in target.parent.iterdir()] == ["case_001.nii.gz"]


def test_written_files_follow_the_users_umask(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "shared.json", "{}")
        os.umask(0o002)
        atomic_write_text(tmp_path / "group.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "group.json").stat().st_mode) == 0o664


def test_stale_partials_of_a_crashed_writer_are_cleaned(tmp_path):
    import os
    import time

    from annotator.core import atomic

    stale = tmp_path / f"{atomic.PARTIAL_PREFIX}dead"
    stale.mkdir()
    (stale / "case.nii.gz").write_bytes(b"half")
    old = time.time() - atomic.STALE_AFTER_S - 10
    os.utime(stale, (old, old))
    live = tmp_path / f"{atomic.PARTIAL_PREFIX}live"  # another writer, still running
    live.mkdir()
    atomic._swept.discard(os.fspath(tmp_path.resolve()))
    atomic_write_text(tmp_path / "labels.json", "{}")
    assert not stale.exists()
    assert live.exists()


def test_file_and_folder_are_synced_after_the_rename(tmp_path, monkeypatch):
    import os

    from annotator.core import atomic

    events = []
    real_replace = os.replace
    monkeypatch.setattr(atomic, "_fsync_path",
                        lambda path, directory=False: events.append(("fsync-dir" if directory else "fsync", path)))
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (events.append(("rename", Path(b))), real_replace(a, b)))
    target = tmp_path / "a.json"
    atomic_write_text(target, "1")
    assert [e[0] for e in events] == ["fsync", "rename", "fsync-dir"]
    assert events[1][1] == target
    assert events[2][1] == tmp_path


def test_no_overwrite_also_refuses_a_file_that_appears_during_the_write(tmp_path):
    target = tmp_path / "a.json"

    def write_while_another_process_finishes_first():
        with atomic_path(target, overwrite=False) as tmp:
            tmp.write_text("mine")
            target.write_text("theirs")

    with pytest.raises(FileExistsError):
        write_while_another_process_finishes_first()
    assert target.read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
