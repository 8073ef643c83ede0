"""Opening images, folders and label maps, exporting, and errors shown in the window (never a crash)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from annotator.io import write_volume

pytestmark = pytest.mark.gui

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture
def empty_window(qtbot):
    from annotator.qt.main_window import MainWindow
    from annotator.settings import Settings

    win = MainWindow(Settings(), start_engine=False)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.shutdown()


def test_open_file_loads_off_the_gui_thread(empty_window, small_phantom, tmp_path, qtbot):
    path = tmp_path / "ct.nii.gz"
    write_volume(small_phantom.volume, path)
    empty_window.open_path(str(path))
    assert not empty_window.doc.has_volume  # still loading: open_path returned at once
    qtbot.waitUntil(lambda: empty_window.doc.has_volume, timeout=10000)
    vol = empty_window.doc.volume
    assert vol.shape_zyx == small_phantom.volume.shape_zyx
    assert np.allclose(vol.affine_lps(), small_phantom.volume.affine_lps(), atol=1e-3)
    assert empty_window.settings.recent_files[0].endswith("ct.nii.gz")


def test_bad_file_shows_a_message_not_a_crash(empty_window, tmp_path, qtbot):
    bad = tmp_path / "empty.nii.gz"
    bad.write_bytes(b"")
    empty_window.open_path(str(bad))
    qtbot.waitUntil(lambda: empty_window.last_error is not None, timeout=10000)
    assert "empty.nii.gz" in empty_window.last_error
    assert not empty_window.doc.has_volume


def test_open_labels_row_flipped_lands_on_the_right_voxels(window, small_phantom, tmp_path, qtbot):
    vol = small_phantom.volume
    img_path = tmp_path / "ct.nii.gz"
    write_volume(vol, img_path)
    img = nib.load(img_path)
    data = np.zeros(img.shape, dtype=np.uint8)  # nibabel order (x, y, z)
    data[5, 7, 3] = 2
    data[40, 50, 20] = 4
    # Store the rows (y) flipped, with the affine adjusted so the world positions are unchanged.
    flip = np.eye(4)
    flip[1, 1] = -1
    flip[1, 3] = img.shape[1] - 1
    nib.save(nib.Nifti1Image(data[:, ::-1, :], img.affine @ flip), tmp_path / "labels.nii.gz")
    window.open_labels(str(tmp_path / "labels.nii.gz"))
    qtbot.waitUntil(lambda: window.doc.labels.array.any(), timeout=10000)
    arr = window.doc.labels.array
    assert arr[3, 7, 5] == 2
    assert arr[20, 50, 40] == 4
    assert int(np.count_nonzero(arr)) == 2
    window.actions_by_name["undo"].trigger()
    assert not window.doc.labels.array.any()


def test_labels_on_another_grid_are_refused_with_a_message(window, tmp_path, qtbot):
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), np.eye(4)), tmp_path / "other.nii.gz")
    window.open_labels(str(tmp_path / "other.nii.gz"))
    qtbot.waitUntil(lambda: window.last_error is not None, timeout=10000)
    assert "other.nii.gz" in window.last_error
    assert not window.doc.labels.array.any()


def test_export_labels_writes_nifti_on_the_source_grid(window, small_phantom, tmp_path, qtbot):
    doc = window.doc
    liver = small_phantom.truth.array == 1
    key = int(np.argmax(liver.sum(axis=(1, 2))))
    doc.paint_slice_mask(0, key, liver[key], doc.active_label, "paint")
    assert doc.labels.array.any()
    out = tmp_path / "out" / "labels.nii.gz"
    out.parent.mkdir()
    window.export_labels(str(out))
    qtbot.waitUntil(lambda: (tmp_path / "out" / "labels.json").exists(), timeout=10000)
    qtbot.waitUntil(lambda: not window.background.busy, timeout=10000)
    img = nib.load(out)
    assert np.allclose(img.affine, small_phantom.volume.affine_ras(), atol=1e-3)
    back = np.asarray(img.dataobj).transpose(2, 1, 0)
    assert np.array_equal(back == doc.active_label, doc.labels.array == doc.active_label)


@pytest.mark.realdata
def test_folder_with_two_series_shows_the_browser_and_loads_the_choice(empty_window, qtbot):
    folder = DATA / "dicom" / "mr_ge_mr750_two_series_mixed" / "dcm"
    if not folder.is_dir():
        pytest.skip("shared data not available")
    empty_window.open_path(str(folder))
    qtbot.waitUntil(lambda: getattr(empty_window, "series_dialog", None) is not None, timeout=20000)
    dialog = empty_window.series_dialog
    assert dialog.table.rowCount() == 2
    second = dialog.series[1]
    dialog.select_uid(second.uid)
    dialog.accept()
    qtbot.waitUntil(lambda: empty_window.doc.has_volume, timeout=20000)
    assert empty_window.doc.volume.metadata.get("series_instance_uid") == second.series_instance_uid
    assert empty_window.doc.volume.shape_zyx == second.shape_zyx
    dialog.wait_for_thumbnails()


def test_export_dataset_coco_through_the_export_module(window, small_phantom, tmp_path, qtbot):
    import json

    doc = window.doc
    liver = small_phantom.truth.array == 1
    key = int(np.argmax(liver.sum(axis=(1, 2))))
    doc.paint_slice_mask(0, key, liver[key], doc.active_label, "paint")
    window.export_dataset("coco", str(tmp_path))
    qtbot.waitUntil(lambda: not window.background.busy, timeout=20000)
    assert window.last_error is None
    annotations = list(tmp_path.rglob("*.json"))
    assert annotations
    data = json.loads(annotations[0].read_text())
    assert len(data["annotations"]) >= 1
    assert data["images"][0]["height"] == 64
    # A second export into the same folder is refused (never overwrite), with a message.
    window.export_dataset("coco", str(tmp_path))
    qtbot.waitUntil(lambda: window.last_error is not None, timeout=20000)


def test_drop_a_file_on_the_window_opens_it(empty_window, small_phantom, tmp_path, qtbot):
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    path = tmp_path / "dropped.nii.gz"
    write_volume(small_phantom.volume, path)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    empty_window.dropEvent(event)
    qtbot.waitUntil(lambda: empty_window.doc.has_volume, timeout=10000)
    assert empty_window.doc.volume.metadata["source_path"].endswith("dropped.nii.gz")
    # ... and it is now the first recent file, offered in File → Open recent.
    assert [a.data() for a in empty_window.recent_menu.actions()][0].endswith("dropped.nii.gz")


def test_text_from_a_file_shows_as_its_characters_never_as_markup(window, small_phantom):
    """A crafted SeriesDescription or path must not fake the info panel (rich text off for it)."""
    from PySide6.QtGui import QTextDocument

    crafted = '<b style="color:red">ANONYMISED</b><img src="x">'
    volume = small_phantom.volume
    fake = volume.with_array(volume.array)
    fake.metadata.update(series_description=crafted, source_path="/data/<i>scan</i>.nii.gz",
                         warnings=["<a href='x'>click</a>"])
    window.doc.set_volume(fake)
    rendered = QTextDocument()
    rendered.setHtml(window.info.text())
    text = rendered.toPlainText()
    assert crafted in text  # shown literally
    assert "/data/<i>scan</i>.nii.gz" in text
    assert "<a href='x'>click</a>" in text
    assert "<img" not in window.info.text()
