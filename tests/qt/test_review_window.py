"""Dataset review in the window: open a dataset with planted defects, see exactly those findings,
fix them through the clean-up panel and a paint (or a SAM box on the real CT), save, and reopen
with the statuses restored; originals kept byte for byte and nnU-Net's checker passing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from support.review_dataset import SHARED_CT, planted_cases, shared_ct_case, write_dataset

from annotator.core.geometry import slice_2d
from annotator.core.volume import Volume
from annotator.io import load_volume
from annotator.io.dataset_save import ORIGINALS_DIR

pytestmark = [pytest.mark.gui]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _synthetic() -> tuple[Volume, np.ndarray, dict[int, str]]:
    rng = np.random.default_rng(0)
    image = Volume(rng.normal(0, 20, (16, 40, 44)).astype(np.int16), (3.0, 1.5, 1.5))
    labels = np.zeros(image.shape_zyx, np.uint8)
    labels[2:13, 5:25, 5:28] = 1
    labels[4:9, 28:36, 30:40] = 2
    return image, labels, {1: "liver", 2: "spleen"}


def _open_window(qtbot, engine=None):
    from annotator.qt.main_window import MainWindow
    from annotator.settings import Settings

    win = MainWindow(Settings(prefetch_radius=0), start_engine=engine is not None, engine=engine)
    qtbot.addWidget(win)
    win.resize(1500, 850)
    win.show()
    qtbot.waitExposed(win)
    return win


def _open_dataset(win, qtbot, path, expect_case: str) -> None:
    win.open_dataset(str(path))
    qtbot.waitUntil(lambda: win.review.current == expect_case and win.review.checks_done, timeout=60000)
    qtbot.waitUntil(lambda: len(win.review.reports) == len(win.review.dataset.cases), timeout=60000)


def _kinds(win) -> dict[str, list[tuple[str, int | None]]]:
    return {c: sorted((f.kind, f.label_id) for f in r.findings) for c, r in win.review.reports.items()}


def _clean(win, qtbot, *, islands_below: float = 0.0, holes: bool = False, scope: str = "all") -> str:
    panel = win.cleanup_panel
    panel.checks["remove-islands"].setChecked(islands_below > 0)
    panel.values["remove-islands"].setValue(islands_below)
    panel.checks["fill-holes"].setChecked(holes)
    panel.scope.setCurrentIndex(panel.scope.findData(scope))
    qtbot.mouseClick(panel.preview_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: win.doc.change_preview is not None, timeout=20000)
    summary = panel.summary.text()
    n_history = len(win.doc.history.descriptions())
    qtbot.mouseClick(panel.apply_button, Qt.MouseButton.LeftButton)
    assert win.doc.change_preview is None
    assert len(win.doc.history.descriptions()) == n_history + 1  # one undo step
    return summary


def _next_case(win, qtbot, expect: str) -> None:
    leaving = win.review.current
    modified = win.review.is_modified()
    if modified:
        with qtbot.waitSignal(win.review.case_saved, timeout=30000) as saved:
            win.actions_by_name["next_case"].trigger()
        assert saved.args[0] == leaving
    else:
        win.actions_by_name["next_case"].trigger()
    qtbot.waitUntil(lambda: win.review.current == expect, timeout=30000)


@pytest.mark.parametrize("layout", ["nnunet", "datalist", "csv"])
def test_review_walk_fix_save_reopen(qtbot, tmp_path, layout):
    image, labels, names = _synthetic()
    planted = planted_cases(labels, names)
    index = write_dataset(tmp_path / "ds", layout, image, {c: a for c, (a, _) in planted.items()}, names)
    root = index if index.is_dir() else index.parent
    label_files = sorted(root.glob("labels*/*.nii.gz"))
    originals = {p.name: _md5(p) for p in label_files}

    win = _open_window(qtbot)
    _open_dataset(win, qtbot, index, "case_001")
    assert win.review_dock.isVisible()
    assert _kinds(win) == {"case_001": [("islands", 1)], "case_002": [("holes", 1)],
                           "case_003": [("missing-label", 2)]}
    rows = win.review_panel.rows()
    assert rows["case_001"][1] == "islands: liver"
    assert rows["case_002"][1] == "holes: liver"
    assert rows["case_003"][1] == "missing: spleen"
    # filter by finding: only the case with holes
    panel = win.review_panel
    panel.filter.setCurrentIndex(panel.filter.findData("kind:holes"))
    assert list(panel.rows()) == ["case_002"]
    panel.filter.setCurrentIndex(0)

    summary = _clean(win, qtbot, islands_below=500.0)  # the island: 27 voxels of 6.75 mm³
    assert "liver: +0 / −27 voxels" in summary
    _next_case(win, qtbot, "case_002")
    _clean(win, qtbot, holes=True)
    _next_case(win, qtbot, "case_003")
    # the missing label painted on three slices (the brush's document call), then filled between
    doc = win.doc
    spleen = labels == 2
    doc.set_active_label(2)
    for z in (4, 8):
        doc.paint_slice_mask(0, z, spleen[z], 2, "brush")
    axial = next(v for v in win.views if v.plane == "axial")
    axial.setFocus()
    win.actions_by_name["fill_between"].trigger()
    assert doc.history.descriptions()[-1] == "fill between slices: spleen"
    assert np.array_equal(doc.labels.array == 2, spleen)  # a box between two equal boxes is that box
    with qtbot.waitSignal(win.review.case_saved, timeout=30000):
        win.actions_by_name["save_case"].trigger()
    qtbot.waitUntil(lambda: all(not r.findings for r in win.review.reports.values())
                    and win.review.checks_done and win.review.pending_saves == 0, timeout=30000)
    win.review.set_status("flagged", "spleen drawn by hand, check the tip")
    assert {c: s.status for c, s in win.review.session.cases.items()} == {
        "case_001": "modified", "case_002": "modified", "case_003": "flagged"}
    win.close()

    # originals kept byte for byte (in place), the saved labels fixed
    kept = root / ORIGINALS_DIR
    assert {p.name: _md5(p) for p in sorted(kept.rglob("*.nii.gz"))} == originals
    for case_id, (_, _) in planted.items():
        saved = load_volume(next(p for p in label_files if p.name == f"{case_id}.nii.gz")).array
        assert np.array_equal(saved, labels), case_id
    if layout == "nnunet":
        from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

        verify_dataset_integrity(str(root), num_processes=1)
    if layout == "datalist":  # MONAI's own loader reads the saved dataset: same grid, fixed labels
        from monai.data import load_decathlon_datalist
        from monai.transforms import LoadImage

        items = load_decathlon_datalist(str(root / "datalist.json"), data_list_key="training", base_dir=str(root))
        loader = LoadImage(image_only=True)
        for item in items:
            label = loader(item["label"])
            np.testing.assert_array_equal(np.asarray(label).transpose(2, 1, 0), labels)
            np.testing.assert_allclose(np.asarray(label.affine), np.asarray(loader(item["image"]).affine), atol=1e-4)

    # reopening restores the statuses, the comment, the case the reviewer was on and the clean-up
    # settings last applied (fill holes, all labels)
    win2 = _open_window(qtbot)
    assert not win2.cleanup_panel.checks["fill-holes"].isChecked()
    _open_dataset(win2, qtbot, index, "case_003")
    assert win2.cleanup_panel.checks["fill-holes"].isChecked()
    assert win2.cleanup_panel.scope.currentData() == "all"
    rows = win2.review_panel.rows()
    assert rows["case_003"][0] == "flagged — spleen drawn by hand, check the tip"
    assert rows["case_001"][0] == rows["case_002"][0] == "modified"
    assert win2.review_panel.comment.text() == "spleen drawn by hand, check the tip"
    win2.close()


def test_opening_another_image_during_review_never_saves_it_into_a_case(qtbot, tmp_path, small_phantom):
    image, labels, names = _synthetic()
    planted = planted_cases(labels, names)
    root = write_dataset(tmp_path / "ds", "nnunet", image, {c: a for c, (a, _) in planted.items()}, names)
    before = {p: _md5(p) for p in (root / "labelsTr").glob("*.nii.gz")}
    win = _open_window(qtbot)
    _open_dataset(win, qtbot, root, "case_001")
    win.doc.set_volume(small_phantom.volume)  # File → Open of an unrelated image
    win.doc.paint_slice_mask(0, 3, np.ones(small_phantom.volume.shape_zyx[1:], bool), 1, "brush")
    assert win.review.current is None
    assert not win.review.is_modified()
    win.actions_by_name["next_case"].trigger()  # back into the dataset: nothing of the phantom is saved
    qtbot.waitUntil(lambda: win.review.current is not None, timeout=30000)
    assert win.review.pending_saves == 0
    win.close()
    assert {p: _md5(p) for p in (root / "labelsTr").glob("*.nii.gz")} == before


def test_copy_mode_and_crafted_session(qtbot, tmp_path):
    image, labels, names = _synthetic()
    planted = planted_cases(labels, names)
    root = write_dataset(tmp_path / "ds", "nnunet", image, {c: a for c, (a, _) in planted.items()}, names)
    before = {p: _md5(p) for p in root.rglob("*") if p.is_file()}
    win = _open_window(qtbot)
    win.open_dataset(str(root), str(tmp_path / "reviewed"))
    qtbot.waitUntil(lambda: win.review.current == "case_001" and win.review.checks_done, timeout=60000)
    _clean(win, qtbot, islands_below=500.0)
    with qtbot.waitSignal(win.review.case_saved, timeout=30000) as saved:
        win.actions_by_name["save_case"].trigger()
    assert Path(saved.args[1]).is_relative_to(tmp_path / "reviewed")
    win.close()
    assert {p: _md5(p) for p in root.rglob("*") if p.is_file()} == before  # the source untouched
    assert (tmp_path / "reviewed" / "annotator-review.json").exists()

    (root / "annotator-review.json").write_text('{"format": "annotator-review", "version": 1, '
                                                '"cases": {"../../etc": {"status": "reviewed"}}}')
    win2 = _open_window(qtbot)
    win2.open_dataset(str(root))
    qtbot.waitUntil(lambda: win2.last_error is not None, timeout=30000)
    assert "not in this dataset" in win2.last_error
    assert "annotator-review.json" in win2.last_error
    assert not win2.review.is_open
    win2.close()


@pytest.mark.realdata
@pytest.mark.slow
def test_review_on_the_shared_ct_with_a_sam_box(qtbot, tmp_path):
    if not SHARED_CT.exists():
        pytest.skip("needs ../shared/data")
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    from annotator.engine.factory import create_engine

    engine = create_engine("lite-medsam", runtime="torch")
    if engine.model_id != "lite-medsam":
        pytest.skip("bundled LiteMedSAM weights unavailable")
    image, labels, names = shared_ct_case()
    planted = planted_cases(labels, names)
    root = write_dataset(tmp_path / "ds", "nnunet", image, {c: a for c, (a, _) in planted.items()}, names)
    originals = {p.name: _md5(p) for p in (root / "labelsTr").glob("*.nii.gz")}
    win = _open_window(qtbot, engine)
    _open_dataset(win, qtbot, root, "case_001")
    missing = int(planted["case_003"][1].split(":")[1])
    assert _kinds(win) == {"case_001": [("islands", 4)], "case_002": [("holes", 4)],
                           "case_003": [("missing-label", missing)]}
    _clean(win, qtbot, islands_below=1000.0, scope="active" if win.doc.active_label == 4 else "all")
    _next_case(win, qtbot, "case_002")
    _clean(win, qtbot, holes=True)
    _next_case(win, qtbot, "case_003")

    # the missing organ: a box on its largest axial slice through the real model, Enter
    doc = win.doc
    organ = labels == missing
    z = int(np.argmax(organ.sum(axis=(1, 2))))
    doc.set_active_label(missing)
    doc.set_slice(0, z)
    view = next(v for v in win.views if v.plane == "axial")
    rows, cols = np.nonzero(organ[z])
    win.tools.set_tool("box")
    start = view.raw_to_viewport(rows.min(), cols.min()).toPoint()
    end = view.raw_to_viewport(rows.max(), cols.max()).toPoint()
    with qtbot.waitSignal(win.bridge.prediction_ready, timeout=120000):
        qtbot.mousePress(view.viewport(), Qt.MouseButton.LeftButton, pos=start)
        qtbot.mouseMove(view.viewport(), end)
        qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=end)
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Return)
    got = slice_2d(doc.labels.array, 0, z) == missing
    dice = 2 * np.logical_and(got, organ[z]).sum() / (got.sum() + organ[z].sum())
    print(f"SAM box Dice on the missing {names[missing]}: {dice:.3f}")
    assert dice >= 0.8
    with qtbot.waitSignal(win.review.case_saved, timeout=30000):
        win.actions_by_name["save_case"].trigger()
    qtbot.waitUntil(lambda: win.review.checks_done and win.review.pending_saves == 0
                    and not win.review.reports["case_003"].findings
                    and not win.review.reports["case_001"].findings
                    and not win.review.reports["case_002"].findings, timeout=60000)
    win.close()
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(root), num_processes=1)
    assert {p.name: _md5(p) for p in (root / ORIGINALS_DIR / "labelsTr").glob("*.nii.gz")} == originals
    win2 = _open_window(qtbot)
    _open_dataset(win2, qtbot, root, "case_003")
    assert {c: s.status for c, s in win2.review.session.cases.items()} == {
        "case_001": "modified", "case_002": "modified", "case_003": "modified"}
    win2.close()
