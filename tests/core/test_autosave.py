"""Autosave files: round trip, atomic writes, damaged files refused with a message, keyed by content id."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.core import autosave
from annotator.core.autosave import discard_autosave, find_autosave, load_autosave, save_autosave
from annotator.core.errors import InputError
from annotator.core.labels import LabelTable

CID = "0123456789abcdef0123456789abcdef"


def _labels(shape=(6, 10, 12)) -> np.ndarray:
    arr = np.zeros(shape, dtype=np.uint16)
    arr[1:4, 2:7, 3:9] = 1
    arr[5, 0, 0] = 300
    return arr


def _table() -> list[dict]:
    table = LabelTable()
    table.add("liver")
    table.add("tumour", (1, 2, 3), label_id=300)
    return table.to_json()


def test_round_trip(tmp_path):
    arr = _labels()
    path = save_autosave(tmp_path, CID, "/data/ct.nii.gz", arr, _table())
    assert path.exists()
    assert path.suffix == ".npz"
    info = find_autosave(tmp_path, CID)
    assert info is not None
    assert info.shape_zyx == arr.shape
    assert info.source_path == "/data/ct.nii.gz"
    assert info.saved_at > 0
    loaded, table = load_autosave(info)
    assert loaded.dtype == np.uint16
    np.testing.assert_array_equal(loaded, arr)
    assert table == _table()
    assert LabelTable.from_json(table)[300].name == "tumour"
    # a later save replaces the earlier one
    arr2 = arr.copy()
    arr2[0] = 7
    save_autosave(tmp_path, CID, "/data/ct.nii.gz", arr2, _table())
    np.testing.assert_array_equal(load_autosave(find_autosave(tmp_path, CID))[0], arr2)


def test_other_content_id_is_not_found_and_discard_removes(tmp_path):
    save_autosave(tmp_path, CID, None, _labels(), _table())
    assert find_autosave(tmp_path, "ffff" + CID[4:]) is None
    assert find_autosave(tmp_path / "missing", CID) is None
    assert discard_autosave(tmp_path, CID)
    assert find_autosave(tmp_path, CID) is None
    assert list(tmp_path.iterdir()) == []
    assert not discard_autosave(tmp_path, CID)


def test_unsafe_content_id_refused(tmp_path):
    with pytest.raises(ValueError, match="content id"):
        save_autosave(tmp_path, "../escape", None, _labels(), _table())


def test_wrong_dtype_refused(tmp_path):
    with pytest.raises(ValueError, match="uint16"):
        save_autosave(tmp_path, CID, None, _labels().astype(np.int32), _table())


def test_failed_write_leaves_previous_autosave_intact(tmp_path, monkeypatch):
    arr = _labels()
    save_autosave(tmp_path, CID, None, arr, _table())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def failing_savez(fh, **arrays):
        fh.write(b"PK\x03\x04 half a zip")  # part of a file, then the disk fills up
        raise OSError("No space left on device")

    monkeypatch.setattr(autosave.np, "savez_compressed", failing_savez)
    with pytest.raises(OSError, match="No space"):
        save_autosave(tmp_path, CID, None, np.ones_like(arr), _table())
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before  # no temp file left, old files untouched
    np.testing.assert_array_equal(load_autosave(find_autosave(tmp_path, CID))[0], arr)


def test_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    def failing_savez(fh, **arrays):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(autosave.np, "savez_compressed", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        save_autosave(tmp_path, CID, None, _labels(), _table())
    assert list(tmp_path.iterdir()) == []
    assert find_autosave(tmp_path, CID) is None


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_file_refused_with_clear_error(tmp_path, damage):
    path = save_autosave(tmp_path, CID, None, _labels(), _table())
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00not a zip" * 50, "empty": b""}[damage])
    info = find_autosave(tmp_path, CID)
    with pytest.raises(InputError, match="damaged") as err:
        load_autosave(info)
    assert str(path) in str(err.value)


def test_shape_mismatch_and_pickled_objects_refused(tmp_path):
    path = save_autosave(tmp_path, CID, None, _labels(), _table())
    info = find_autosave(tmp_path, CID)
    np.savez_compressed(path, labels=np.zeros((2, 2, 2), np.uint16),
                        table_json=np.frombuffer(b"[]", dtype=np.uint8))
    with pytest.raises(InputError, match="shape"):
        load_autosave(info)
    np.savez_compressed(path, labels=np.array([{"x": 1}], dtype=object), table_json=np.zeros(0, np.uint8))
    with pytest.raises(InputError, match="damaged"):  # object arrays need pickle, which is refused
        load_autosave(info)
    np.savez_compressed(path, labels=_labels().astype(np.int16),
                        table_json=np.frombuffer(b"[]", dtype=np.uint8))
    with pytest.raises(InputError, match="int16"):
        load_autosave(info)


def test_unreadable_sidecar_means_not_found(tmp_path):
    save_autosave(tmp_path, CID, None, _labels(), _table())
    (tmp_path / f"{CID}.json").write_text("{not json")
    assert find_autosave(tmp_path, CID) is None


def test_slots_are_exclusive_across_processes_and_freed_when_one_dies(tmp_path):
    """A lock the OS drops on death: a second process on the same image gets another slot, and the
    first slot is free again once its process is killed (a crash)."""
    import subprocess
    import sys

    from annotator.core.autosave import AutosaveSlot

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys,time; from annotator.core.autosave import AutosaveSlot; "
         f"s = AutosaveSlot.claim(sys.argv[1], {CID!r}); print(s.name, flush=True); time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == CID
        mine = AutosaveSlot.claim(tmp_path, CID)
        assert mine.name == f"{CID}-1"
        mine.release()
    finally:
        holder.kill()
        holder.wait()
    again = AutosaveSlot.claim(tmp_path, CID)
    assert again.name == CID
    again.release()


def test_an_older_snapshot_finishing_late_never_replaces_a_newer_one(tmp_path):
    from annotator.core.autosave import AutosaveSlot

    slot = AutosaveSlot.claim(tmp_path, CID)
    newer, older = _labels(), _labels()
    newer[0, 0, 0] = 7
    assert slot.save(5, None, newer, _table())  # the final save on close
    assert not slot.save(3, None, older, _table())  # the background save of an earlier state
    np.testing.assert_array_equal(load_autosave(slot.find())[0], newer)
    slot.release()
