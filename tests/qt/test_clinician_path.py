"""A clinician's path with the real bundled LiteMedSAM on the shared abdominal CT, in the real
window: a box on the liver (axial), spleen (coronal) and a kidney (sagittal), Enter, then P; then
a correcting box on the worst slice, Enter, P again, a corrective click on a propagated slice,
and a slice where the liver lies in two pieces boxed piece by piece; and a box past where the
portal vein's run stopped, P again; each checked against the evaluation's code path.
Boxes come from the reference labels and are dragged in view pixels, so a flipped axis or an
off-by-one between screen and voxels shows up as a low Dice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from annotator.core.geometry import plane_array_axis, slice_2d

pytestmark = [pytest.mark.gui, pytest.mark.realdata, pytest.mark.slow]

CASE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "labelled" / "ct_totalseg_abdomen_3mm"
# kidney_right: on its largest sagittal slice the bundled model reaches 0.94 from a tight box
# (kidney_left only 0.88 there, headless too, so that is the model, not the window).
LIVER, SPLEEN, KIDNEY_RIGHT, PORTAL_VEIN = 5, 1, 2, 64


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2.0 * float(np.logical_and(a, b).sum()) / max(float(a.sum() + b.sum()), 1.0)


@pytest.fixture(scope="module", params=["local", "server"])
def engine(request, tmp_path_factory):
    """The bundled LiteMedSAM in this process, or the same model behind `annotator serve` on
    loopback (issue 18: the window does everything the same with its model on a server)."""
    if not (CASE / "image.nii.gz").is_file():
        pytest.skip("shared data not available")
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    from annotator.engine.factory import create_engine

    if request.param == "local":
        eng = create_engine("lite-medsam", runtime="torch")
        if eng.model_id != "lite-medsam":
            pytest.skip("bundled LiteMedSAM weights unavailable")
        yield eng
        return
    from annotator.engine.remote import RemoteEngine
    from annotator.server.local import start_local_server

    token = "clinician-" + "t" * 24
    url, proc = start_local_server(tmp_path_factory.mktemp("server"), token,
                                   args=("--engine", "lite-medsam", "--runtime", "torch"))
    try:
        eng = RemoteEngine(url, token)
        yield eng
        eng.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def clinician_window(qtbot, engine):
    from annotator.io import read_labels_onto
    from annotator.qt.main_window import MainWindow
    from annotator.settings import Settings

    win = MainWindow(Settings(prefetch_radius=0), engine=engine)
    qtbot.addWidget(win)
    win.resize(1500, 800)
    win.show()
    qtbot.waitExposed(win)
    win.open_path(str(CASE / "image.nii.gz"))
    qtbot.waitUntil(lambda: win.doc.has_volume, timeout=20000)
    win.reference = read_labels_onto(win.doc.volume, CASE / "labels.nii.gz").array
    yield win
    win.shutdown()


def box_organ(win, qtbot, plane: str, label_value: int, name: str) -> tuple[int, int, float]:
    """Go to the organ's largest slice on `plane`, drag its bounding box, Enter; returns Dice there."""
    axis = plane_array_axis(win.doc.volume, plane)
    organ = win.reference == label_value
    other_axes = tuple(a for a in range(3) if a != axis)
    return box_organ_on(win, qtbot, plane, label_value, name, int(np.argmax(organ.sum(axis=other_axes))))


def box_organ_on(win, qtbot, plane: str, label_value: int, name: str, index: int) -> tuple[int, int, float]:
    """On slice `index` of `plane`: drag the organ's bounding box, Enter; returns Dice there."""
    axis = plane_array_axis(win.doc.volume, plane)
    target = slice_2d(win.reference == label_value, axis, index)
    return axis, index, box_on(win, qtbot, plane, target, name, index, target)


def box_on(win, qtbot, plane: str, boxed: np.ndarray, name: str, index: int, target: np.ndarray) -> float:
    """On slice `index` of `plane`: drag the bounding box of `boxed` for label `name`, Enter;
    returns the label's Dice with `target` there."""
    doc = win.doc
    view = next(v for v in win.views if v.plane == plane)
    axis = plane_array_axis(doc.volume, plane)
    assert view.axis == axis
    doc.set_slice(axis, index)
    rows, cols = np.nonzero(boxed)
    label_id = doc.labels.table.by_name(name).id if doc.labels.table.by_name(name) else doc.add_label(name)
    doc.set_active_label(label_id)
    win.tools.set_tool("box")
    start = view.raw_to_viewport(rows.min(), cols.min()).toPoint()
    end = view.raw_to_viewport(rows.max(), cols.max()).toPoint()
    with qtbot.waitSignal(win.bridge.prediction_ready, timeout=120000):
        qtbot.mousePress(view.viewport(), Qt.MouseButton.LeftButton, pos=start)
        qtbot.mouseMove(view.viewport(), (start + end) / 2)
        qtbot.mouseMove(view.viewport(), end)
        qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=end)
    assert doc.preview is not None
    assert doc.preview.index == index
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Return)
    assert doc.preview is None, "Enter did not accept the preview"
    got = slice_2d(doc.labels.array, axis, index) == label_id
    return dice(got, target)


def test_liver_spleen_kidney_boxes_then_propagation(clinician_window, qtbot, engine, tmp_path):
    win = clinician_window
    doc = win.doc
    results = {}
    for plane, value, name in (("coronal", SPLEEN, "spleen"), ("sagittal", KIDNEY_RIGHT, "kidney_right"),
                               ("axial", LIVER, "liver")):
        axis, index, score = box_organ(win, qtbot, plane, value, name)
        results[name] = score
    print("2-D Dice after Enter:", results)  # recorded in the report
    assert results["liver"] >= 0.9
    assert results["spleen"] >= 0.9
    assert results["kidney_right"] >= 0.9
    # Undo removes exactly the accepted liver voxels; redo restores them.
    liver_id = doc.labels.table.by_name("liver").id
    with_liver = doc.labels.array.copy()
    win.actions_by_name["undo"].trigger()
    assert not (doc.labels.array == liver_id).any()
    assert np.array_equal(doc.labels.array[with_liver != liver_id], with_liver[with_liver != liver_id])
    win.actions_by_name["redo"].trigger()
    assert np.array_equal(doc.labels.array, with_liver)

    # The point tool on the same (embedded) slice goes through the engine's click strategy:
    # a positive click inside the spleen-free liver gives a mask holding the click; Esc drops it.
    axial = next(v for v in win.views if v.plane == "axial")
    liver_slice = slice_2d(win.reference == LIVER, 0, doc.slice_index(0))
    rows, cols = np.nonzero(liver_slice)
    row, col = int(np.median(rows)), int(np.median(cols))
    assert liver_slice[row, col]
    win.tools.set_tool("point")
    with qtbot.waitSignal(win.bridge.prediction_ready, timeout=120000):
        qtbot.mouseClick(axial.viewport(), Qt.MouseButton.LeftButton, pos=axial.raw_to_viewport(row, col).toPoint())
    assert doc.preview.mask[row, col]
    point_dice = dice(doc.preview.mask, liver_slice)
    print("point-click Dice on the liver slice:", round(point_dice, 3))
    assert point_dice >= 0.7
    qtbot.keyClick(axial, Qt.Key.Key_Escape)
    assert doc.preview is None
    assert np.array_equal(doc.labels.array, with_liver)

    # P from the accepted liver slice, compared with the same propagation run headlessly.
    axial.setFocus()
    key_index = doc.slice_index(0)
    with qtbot.waitSignal(win.bridge.propagation_finished, timeout=600000) as blocker:
        win.actions_by_name["propagate"].trigger()
    assert blocker.args == [""]
    window_liver = doc.labels.array == liver_id
    reference = win.reference == LIVER
    dice_window = dice(window_liver, reference)

    # The same box through `annotator segment --propagate` (the batch command, same disk cache).
    import json

    from annotator.cli import main as cli_main

    key_rows, key_cols = np.nonzero(slice_2d(reference, 0, key_index))
    prompts = tmp_path / "liver_box.json"
    prompts.write_text(json.dumps({"coordinates": "voxel", "objects": [{
        "label": 1, "name": "liver", "plane": "axial",
        "box": {"min": [int(key_cols.min()), int(key_rows.min()), key_index],
                "max": [int(key_cols.max()), int(key_rows.max()), key_index]}}]}))
    out = tmp_path / "liver_propagated.nii.gz"
    code = cli_main(["segment", str(CASE / "image.nii.gz"), "--prompts", str(prompts), "-o", str(out),
                     "--engine", "lite-medsam", "--runtime", "torch", "--propagate"])
    assert code == 0
    from annotator.io import read_labels_onto

    headless = read_labels_onto(doc.volume, out).array == 1
    dice_headless = dice(headless, reference)
    print(f"3-D liver Dice: window {dice_window:.4f}, headless {dice_headless:.4f}")
    assert dice_window >= 0.9
    assert abs(dice_window - dice_headless) <= 0.02

    # A correction: a box on the slice where the propagated liver is most wrong, Enter (that slice
    # becomes a key), P again: propagation reruns between the two keys and leaves both as they are.
    errors = np.count_nonzero(window_liver ^ reference, axis=(1, 2))
    errors[key_index] = -1
    worst = int(np.argmax(errors))
    propagated = doc.labels.array == liver_id
    _, _, worst_dice = box_organ_on(win, qtbot, "axial", LIVER, "liver", worst)
    corrected_key = doc.labels.array[worst] == liver_id
    before_rerun = doc.labels.array == liver_id
    assert set(doc.key_marks(liver_id, 0)) == {key_index, worst}, doc.history.descriptions()
    with qtbot.waitSignal(win.bridge.propagation_finished, timeout=600000) as blocker:
        win.actions_by_name["propagate"].trigger()
    assert blocker.args == [""]
    after = doc.labels.array == liver_id
    assert np.array_equal(after[worst], corrected_key)
    assert np.array_equal(after[key_index], propagated[key_index])
    dice_corrected = dice(after, reference)
    print(f"3-D liver Dice after a box on slice {worst} (2-D {worst_dice:.3f}): {dice_corrected:.4f}")

    # The evaluation's code path (annotator evaluate --propagate) from the same two keys and the same
    # label before P (its extent, and its masks a run joins) gives the same labels: one propagation
    # for the window, the command line and the evaluation.
    from annotator.core.labels import LabelMap
    from annotator.engine.label_extent import label_before
    from annotator.engine.propagate import propagate_volume
    from annotator.engine.propagation_edit import propagation_edit
    from annotator.evaluate import protocol
    from annotator.evaluate.propagation import MeterSlices
    from annotator.evaluate.runner import EngineMeter, app_first_prompt

    meter = EngineMeter(engine, doc.volume, 0, protocol.windowed_volume_u8(doc.volume.array, "CT")[0])
    keys = win.bridge.propagation_keys(0, liver_id)
    # the label as the evaluation reads it: the corrected slice counts as it was before the box
    before = label_before(before_rerun, 0, [k.index for k in keys], {worst: bool(propagated[worst].any())})
    headless = propagate_volume(MeterSlices(meter), doc.volume, 0, keys, **before._asdict())
    headless_labels = LabelMap(after.shape)
    headless_labels.array[before_rerun] = 1
    propagation_edit(headless_labels, headless, 0, 1)
    assert dice(headless_labels.array == 1, after) >= 0.999
    assert dice_corrected >= dice_window - 0.01

    # A corrective click on a propagated slice refines the mask there (not a new one from nothing),
    # in the nearest key's window, exactly as the evaluation's corrections do (from_mask, add_click).
    from annotator.core.geometry import Window
    from annotator.engine import click_strategy, slice_segmentation

    errors = np.count_nonzero(after ^ reference, axis=(1, 2))
    errors[list(doc.key_marks(liver_id, 0))] = -1
    fix = int(np.argmax(errors))
    x, y, positive = protocol.next_click(after[fix], reference[fix])
    doc.set_slice(0, fix)
    win.tools.set_tool("point")
    modifier = Qt.KeyboardModifier.NoModifier if positive else Qt.KeyboardModifier.ShiftModifier
    with qtbot.waitSignal(win.bridge.prediction_ready, timeout=120000):
        qtbot.mouseClick(axial.viewport(), Qt.MouseButton.LeftButton, modifier,
                         axial.raw_to_viewport(y, x).toPoint())
    assert doc.prompts(0, fix).base is not None
    window = Window.from_bounds(*doc.model_window_at(liver_id, 0, fix))
    headless_click = slice_segmentation.add_click(
        meter.predict_in(fix), engine.prompt_kind, slice_segmentation.from_mask(after[fix], window),
        click_strategy.Click(x, y, positive), meter.image_in(fix))
    assert dice(doc.preview.mask, headless_click.mask) >= 0.999
    assert dice(doc.preview.mask, after[fix]) >= 0.5  # a correction of what was there
    print(f"click on propagated slice {fix}: 2-D {dice(after[fix], reference[fix]):.3f} -> "
          f"{dice(doc.preview.mask, reference[fix]):.3f}")
    qtbot.keyClick(axial, Qt.Key.Key_Escape)
    assert np.array_equal(doc.labels.array == liver_id, after)
    for _ in range(3):  # the re-propagation, the correction and the first propagation
        win.actions_by_name["undo"].trigger()
    assert set(doc.key_marks(liver_id, 0)) == {key_index}
    assert np.array_equal(doc.labels.array, with_liver)

    # A slice where the liver lies in two pieces: one box around both takes what lies between, so
    # the user boxes each piece (Enter after each: the second box's mask is added to the key), as
    # the evaluation's simulated user does (evaluate.propagation.boxes_per_piece).
    from annotator.evaluate.propagation import boxes_per_piece

    keys_now = set(doc.key_marks(liver_id, 0))
    split = next(i for i in range(reference.shape[0])
                 if i not in keys_now and len(protocol.pieces_to_box(reference[i], 4)) > 1)
    pieces = protocol.pieces_to_box(reference[split], 4)
    for piece in pieces:
        box_on(win, qtbot, "axial", piece, "liver", split, reference[split])
    by_pieces = doc.labels.array[split] == liver_id
    assert split in doc.key_marks(liver_id, 0)
    headless_pieces = boxes_per_piece(meter, split, pieces, engine.prompt_kind)
    assert dice(by_pieces, headless_pieces.mask) >= 0.999
    one_box = dice(app_first_prompt(meter, split, protocol.tight_box_xyxy(reference[split]).astype(np.float64),
                                    engine.prompt_kind).mask, reference[split])
    print(f"liver slice {split} in {len(pieces)} pieces: one box 2-D {one_box:.3f}, "
          f"a box per piece {dice(by_pieces, reference[split]):.3f}")
    assert dice(by_pieces, reference[split]) >= 0.9


def test_a_box_past_where_propagation_stopped_reopens_it_as_the_evaluation_does(clinician_window, qtbot, engine):
    """The portal vein's run stops short of its end: the user boxes the next slice that holds it and
    presses P again. That key lies past the structure's end, so the run goes on from it (the
    evaluation's simulated user does the same: one rule, engine.label_extent.label_before)."""
    from annotator.core.labels import LabelMap
    from annotator.engine.label_extent import label_before, mask_extent
    from annotator.engine.propagate import propagate_volume
    from annotator.engine.propagation_edit import propagation_edit
    from annotator.evaluate import protocol
    from annotator.evaluate.propagation import MeterSlices
    from annotator.evaluate.runner import EngineMeter

    win = clinician_window
    doc = win.doc
    box_organ(win, qtbot, "axial", PORTAL_VEIN, "portal_vein")
    label = doc.labels.table.by_name("portal_vein").id
    next(v for v in win.views if v.plane == "axial").setFocus()
    with qtbot.waitSignal(win.bridge.propagation_finished, timeout=600000) as blocker:
        win.actions_by_name["propagate"].trigger()
    assert blocker.args == [""]
    propagated = doc.labels.array == label
    reference = win.reference == PORTAL_VEIN
    first, last = mask_extent(propagated, 0)
    past = [i for i in (last + 1, first - 1) if 0 <= i < reference.shape[0] and reference[i].any()]
    assert past, f"the portal vein's run reached both its ends ({first}..{last}): no slice past an end to box"
    box_organ_on(win, qtbot, "axial", PORTAL_VEIN, "portal_vein", past[0])
    assert doc.keys_since_propagation(label, 0) == {past[0]: False}
    before_rerun = doc.labels.array == label
    with qtbot.waitSignal(win.bridge.propagation_finished, timeout=600000) as blocker:
        win.actions_by_name["propagate"].trigger()
    assert blocker.args == [""]
    after = doc.labels.array == label
    assert doc.keys_since_propagation(label, 0) == {}

    meter = EngineMeter(engine, doc.volume, 0, protocol.windowed_volume_u8(doc.volume.array, "CT")[0])
    keys = win.bridge.propagation_keys(0, label)
    before = label_before(before_rerun, 0, [k.index for k in keys], {past[0]: bool(propagated[past[0]].any())})
    assert before.extent == (first, last)  # the box's slice lies past the end: the run reopens there
    headless = propagate_volume(MeterSlices(meter), doc.volume, 0, keys, **before._asdict())
    headless_labels = LabelMap(after.shape)
    headless_labels.array[before_rerun] = 1
    propagation_edit(headless_labels, headless, 0, 1)
    assert dice(headless_labels.array == 1, after) >= 0.999
    print(f"portal vein: P reached {first}..{last}, box on {past[0]} (past the end), P again: "
          f"{mask_extent(after, 0)}, stops {headless.stops}; 3-D Dice {dice(propagated, reference):.3f} -> "
          f"{dice(after, reference):.3f}")
