"""`annotator evaluate`: the report's schema and the command line on a tiny synthetic scan (classical
engine, no weights), and LiteMedSAM on the shared CT against the reference implementation's numbers."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

CASE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "labelled" / "ct_totalseg_abdomen_3mm"
VARIANT_KEYS = {"mean_dice_final", "mean_dice_per_step", "noc85", "noc90"}
SUMMARY_KEYS = {"n_items", "mean_dice_box", "plain", "refine", "app", "mean_encoder_ms", "mean_decoder_ms",
                "encoder_calls", "decoder_calls"}



def _write_case(folder: Path) -> tuple[Path, Path, Path]:
    import SimpleITK as sitk

    image = np.full((6, 48, 48), -100, dtype=np.int16)
    labels = np.zeros(image.shape, dtype=np.uint8)
    rr, cc = np.ogrid[:48, :48]
    for z in range(1, 5):
        disk = (rr - 20) ** 2 + (cc - 22) ** 2 <= (8 + z) ** 2
        image[z][disk] = 60
        labels[z][disk] = 1
        bar = (rr >= 34) & (rr < 44) & (cc >= 5) & (cc < 40)
        image[z][bar] = 700
        labels[z][bar] = 2
    image[0, 0, 0] = -1000  # a CT by the protocol's rule (minimum <= -500)
    paths = folder / "image.nii.gz", folder / "labels.nii.gz", folder / "names.json"
    sitk.WriteImage(sitk.GetImageFromArray(image), str(paths[0]))
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(paths[1]))
    paths[2].write_text(json.dumps({"labels": {"1": "liver", "2": "rib_left_1"}}))
    return paths


def test_cli_writes_the_report_with_the_documented_schema(tmp_path, capsys):
    from annotator.cli import main

    image, labels, names = _write_case(tmp_path)
    out = tmp_path / "out.json"
    code = main(["evaluate", str(image), str(labels), "--labels-table", str(names), "--model", "classical",
                 "--max-clicks", "2", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert set(report["summary"]) == {"all", "organs"}
    assert SUMMARY_KEYS <= set(report["summary"]["all"])
    for variant in ("plain", "refine", "app"):
        assert VARIANT_KEYS <= set(report["summary"]["all"][variant])
        assert len(report["summary"]["all"][variant]["mean_dice_per_step"]) == 3
    assert report["summary"]["all"]["n_items"] == 2
    assert report["summary"]["organs"]["n_items"] == 1
    liver = report["items"][0]
    assert (liver["label"], liver["name"], liver["plane"], liver["slice"]) == (1, "liver", "axial", 4)
    assert liver["pixels"] == int(np.count_nonzero((np.ogrid[:48, :48][0] - 20) ** 2
                                                   + (np.ogrid[:48, :48][1] - 22) ** 2 <= 144))
    assert all(len(liver[v]["dice"]) == 3 for v in ("plain", "refine", "app"))
    assert 1 <= report["summary"]["all"]["plain"]["noc85"] <= 4
    # the app's masks' crumbs and pinholes per step, beside the labels' own
    assert len(liver["app"]["holes"]) == len(liver["app"]["extra_pieces"]) == 3
    assert (liver["truth_holes"], liver["truth_extra_pieces"]) == (0, 0)
    app = report["summary"]["all"]["app"]
    assert len(app["mean_holes_per_step"]) == len(app["mean_extra_pieces_per_step"]) == 3
    assert report["summary"]["all"]["truth_mean_holes"] == 0.0
    printed = capsys.readouterr().out
    assert "pieces beside the largest" in printed
    assert "liver" in printed
    assert "rib_left_1" in printed
    assert f"wrote {out}" in printed
    # An existing report is never overwritten without --overwrite.
    assert main(["evaluate", str(image), str(labels), "--model", "classical", "--json", str(out)]) == 2


def test_mask_pieces_and_holes_counts_crumbs_and_pinholes_as_a_reviewer_sees_them():
    from annotator.evaluate.runner import mask_pieces_and_holes

    mask = np.zeros((30, 30), dtype=bool)
    assert mask_pieces_and_holes(mask) == (0, 0)
    mask[5:20, 5:20] = True
    assert mask_pieces_and_holes(mask) == (0, 0)
    mask[8, 8] = mask[12:14, 12:14] = False           # two pinholes
    mask[20, 20] = True                               # touches the square's corner: one piece
    mask[25, 5] = mask[25, 25] = True                 # two crumbs
    assert mask_pieces_and_holes(mask) == (2, 2)


def test_cli_names_the_file_when_input_is_bad(tmp_path, capsys):
    from annotator.cli import main

    image, labels, _ = _write_case(tmp_path)
    bad = tmp_path / "names.json"
    bad.write_text("{not json")
    assert main(["evaluate", str(image), str(labels), "--labels-table", str(bad), "--model", "classical"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "names.json" in err[0]
    assert main(["evaluate", str(tmp_path / "missing.nii.gz"), str(labels), "--model", "classical"]) == 2


@pytest.mark.realdata
@pytest.mark.slow
def test_lite_medsam_on_the_shared_ct_matches_the_reference_and_clicks_help():
    """Liver, spleen, kidneys, stomach: box Dice equal to the reference implementation's per item,
    `plain` clicks reproduce its click sequence, and the `app` clicks end at or above the box."""
    if not (CASE / "image.nii.gz").is_file():
        pytest.skip("shared labelled CT not found")
    from support import lite_medsam as support

    from annotator.evaluate.runner import evaluate_volume

    volume, label_map = support.shared_case()
    keep = [1, 2, 3, 5, 6]
    labels = np.where(np.isin(label_map.array, keep), label_map.array, 0)
    names = json.loads((CASE / "labels.json").read_text())["labels"]
    report = evaluate_volume(volume, labels, {int(k): v for k, v in names.items()}, support.torch_engine(),
                             max_clicks=2)
    reference = {it["label"]: it for it in json.loads((CASE / "reference_eval.json").read_text())["items"]}
    assert [it["label"] for it in report["items"]] == keep
    for item in report["items"]:
        ref = reference[item["label"]]
        assert item["slice"] == ref["slice"]
        assert item["box_xyxy"] == ref["box_xyxy"]
        assert item["plain"]["dice"][0] == pytest.approx(ref["plain"]["dice"][0], abs=0.01)
        assert item["plain"]["clicks_xy_label"][0] == ref["plain"]["clicks_xy_label"][0]
    summary = report["summary"]["all"]
    assert summary["app"]["mean_dice_final"] >= summary["mean_dice_box"]
    # Each distinct slice image once: the reference window's 4 slices (spleen and stomach share
    # slice 22), plus the app's input windows for each box, fewer where they give the same image.
    app_inputs = {(it["slice"], tuple(w)) for it in report["items"] for w in it["app"]["windows_tried"]}
    assert 4 <= summary["encoder_calls"] <= 4 + len(app_inputs)
    assert all(it["app"]["window"] in it["app"]["windows_tried"] for it in report["items"])


def test_the_simulated_user_may_correct_the_first_box_slice_once_and_with_clicks():
    """The first box's slice is open to correction while it is the worst (a user sees the first mask is
    wrong and clicks there, as clicks on a labelled slice do in the window); a slice once corrected
    is not picked again."""
    from annotator.core.geometry import Window
    from annotator.core.volume import Volume
    from annotator.engine.propagate import Key
    from annotator.engine.testing import FakeEngine
    from annotator.evaluate import protocol
    from annotator.evaluate.propagation import correction_key, slice_to_correct
    from annotator.evaluate.runner import EngineMeter

    truth = np.zeros((5, 40, 40), dtype=bool)
    truth[:, 10:30, 12:28] = True
    predicted = truth.copy()
    predicted[2] = False
    predicted[2, 30:38, 2:10] = True  # the first box took the neighbour
    predicted[4, 10:30, 28:32] = True  # a smaller error elsewhere
    w = Window(40, 400)
    keys = {2: Key(2, predicted[2], w)}
    assert slice_to_correct(predicted, truth, 0, keys, {2}) == 2
    assert slice_to_correct(predicted, truth, 0, keys, set()) == 4
    assert slice_to_correct(truth, truth, 0, keys, {2}) is None

    image = np.where(truth, 60, -100).astype(np.int16)
    image[0, 0, 0] = -1000
    volume = Volume(image, (3.0, 1.0, 1.0), modality="CT")
    meter = EngineMeter(FakeEngine(), volume, 0, protocol.windowed_volume_u8(image, "CT")[0])
    key, done = correction_key(meter, truth, 0, 2, keys, "box", predicted[2], boxed=True)
    assert done["action"] == "clicks"  # not the same box again
    assert done["prompts"] >= 1
    assert protocol.dice(key.mask, truth[2]) > 0.5
    _, redrawn = correction_key(meter, truth, 0, 2, keys, "box", predicted[2])
    assert redrawn["action"] == "box"  # any other slice this wrong gets a box first


def test_a_structure_in_pieces_is_boxed_piece_by_piece():
    """A slice where the structure lies in separate pieces (colon loops, the portal and splenic vein,
    the ascending and descending aorta): one box around them all takes what lies between, so the
    simulated user boxes each piece, as the window adds a box's mask to a key slice, spending a
    prompt per box. A structure in one piece gets one box, as before."""
    from annotator.core.geometry import Window
    from annotator.core.volume import Volume
    from annotator.engine.propagate import Key
    from annotator.engine.testing import FakeEngine
    from annotator.evaluate import protocol, runner
    from annotator.evaluate.propagation import correction_key
    from annotator.evaluate.runner import EngineMeter

    truth = np.zeros((5, 48, 48), dtype=bool)
    truth[:, 6:18, 4:16] = True
    truth[:4, 30:42, 32:44] = True  # a second piece far from the first, on slices 0-3
    predicted = truth.copy()
    predicted[3] = predicted[4] = False  # the run lost slices 3 and 4
    w = Window(40, 400)
    keys = {2: Key(2, truth[2], w)}
    image = np.where(truth, 60, -100).astype(np.int16)
    image[0, 0, 0] = -1000
    volume = Volume(image, (3.0, 1.0, 1.0), modality="CT")
    meter = EngineMeter(FakeEngine(), volume, 0, protocol.windowed_volume_u8(image, "CT")[0])
    # the fake model's ellipse in one box around both pieces covers the gap between them
    one_box = runner.app_first_prompt(meter, 3, protocol.tight_box_xyxy(truth[3]).astype(np.float64), "box")
    assert protocol.dice(one_box.mask, truth[3]) < 0.6
    key, done = correction_key(meter, truth, 0, 3, keys, "box", predicted[3])
    assert done["action"] == "boxes"
    assert done["prompts"] >= 2  # a box per piece
    assert protocol.dice(key.mask, truth[3]) > 0.85
    assert key.mask[12, 10]
    assert key.mask[36, 38]
    assert not key.mask[24, 24]  # not the gap between the pieces
    _, done = correction_key(meter, truth, 0, 4, keys, "box", predicted[4])
    assert done["action"] == "box"


def test_a_correction_that_never_holds_the_structure_is_given_up_not_accepted(monkeypatch):
    """Where every mask the simulated user saw on a slice misses the structure (the box takes the
    neighbour, clicks cannot pull it over), they accept nothing: an empty key would say the
    structure is absent there. The slice is not picked again."""
    from annotator.core.geometry import Window
    from annotator.engine import slice_segmentation
    from annotator.engine.click_strategy import ClickOutcome
    from annotator.engine.propagate import Key
    from annotator.evaluate import propagation, runner
    from annotator.evaluate.propagation import correction_key, slice_to_correct

    truth = np.zeros((5, 40, 40), dtype=bool)
    truth[:, 10:30, 12:28] = True
    predicted = truth.copy()
    predicted[3] = False  # the run lost slice 3
    w = Window(40, 400)
    neighbour = np.zeros((40, 40), dtype=bool)
    neighbour[32:38, 2:8] = True
    wrong = slice_segmentation.SliceOutcome(ClickOutcome(neighbour, np.array([12.0, 10, 27, 29])), w)
    monkeypatch.setattr(runner, "app_first_prompt", lambda *a, **k: wrong)
    monkeypatch.setattr(propagation.slice_segmentation, "add_click", lambda *a, **k: wrong)
    keys = {2: Key(2, truth[2], w)}
    meter = SimpleNamespace(predict_in=lambda index: None, image_in=lambda index: None)
    key, done = correction_key(meter, truth, 0, 3, keys, "box", predicted[3])
    assert key is None
    assert done["action"] == "abandoned"
    assert done["prompts"] == 4
    assert slice_to_correct(predicted, truth, 0, keys, set()) == 3
    assert slice_to_correct(predicted, truth, 0, keys, set(), given_up={3}) is None
    # a mask that holds some of it is accepted, as before
    partial = truth[3].copy()
    partial[:, 20:] = False
    some = slice_segmentation.SliceOutcome(ClickOutcome(partial, np.array([12.0, 10, 27, 29])), w)
    monkeypatch.setattr(runner, "app_first_prompt", lambda *a, **k: some)
    monkeypatch.setattr(propagation.slice_segmentation, "add_click", lambda *a, **k: some)
    key, done = correction_key(meter, truth, 0, 3, keys, "box", predicted[3])
    assert key is not None
    assert done["action"] == "box"
