"""The weights-free engine: segments what was clicked, respects negative clicks and the box, and
gives usable masks on a real CT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from annotator.engine.api import PromptEngine
from annotator.engine.classical import ClassicalEngine

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


def _rgb(gray):
    return np.repeat(np.clip(gray, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


@pytest.fixture
def scene():
    """Dark noisy background, a bright disk, a separate bright square, and two touching disks."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:120, :160]
    disk = (rows - 40) ** 2 + (cols - 40) ** 2 <= 20 ** 2
    square = (rows >= 80) & (rows < 110) & (cols >= 20) & (cols < 60)
    left = (rows - 60) ** 2 + (cols - 100) ** 2 <= 15 ** 2
    right = (rows - 60) ** 2 + (cols - 128) ** 2 <= 15 ** 2
    gray = 40 + rng.normal(0, 6, size=rows.shape)
    gray[disk | square] = 200 + rng.normal(0, 6, size=(disk | square).sum())
    gray[left | right] = 150 + rng.normal(0, 4, size=(left | right).sum())
    return _rgb(gray), dict(disk=disk, square=square, left=left, right=right)


def test_is_a_prompt_engine():
    assert isinstance(ClassicalEngine(), PromptEngine)


def test_click_segments_the_clicked_structure_only(scene):
    image, truth = scene
    engine = ClassicalEngine()
    emb = engine.embed(image)
    pred = engine.predict(emb, points_xy=np.array([[40.0, 40.0]]), point_labels=np.array([1]))
    assert pred.masks.shape == (3, 120, 160)
    assert pred.low_res_logits.shape == (3, 256, 256)
    assert _dice(pred.best_mask, truth["disk"]) > 0.95
    assert not pred.best_mask[truth["square"]].any()  # same intensity, not connected


def test_box_alone_and_box_restricts_growth(scene):
    image, truth = scene
    engine = ClassicalEngine()
    emb = engine.embed(image)
    alone = engine.predict(emb, box_xyxy=np.array([15.0, 75.0, 65.0, 115.0]), multimask=False)
    assert alone.masks.shape == (1, 120, 160)
    assert _dice(alone.masks[0], truth["square"]) > 0.95
    half = engine.predict(emb, points_xy=np.array([[40.0, 40.0]]), point_labels=np.array([1]),
                          box_xyxy=np.array([0.0, 0.0, 40.0, 119.0]), multimask=False).masks[0]
    assert not half[:, 41:].any()
    assert _dice(half, truth["disk"] & (np.arange(160) <= 40)[None, :]) > 0.9


def test_negative_click_splits_touching_regions(scene):
    image, truth = scene
    engine = ClassicalEngine()
    emb = engine.embed(image)
    both = engine.predict(emb, points_xy=np.array([[100.0, 60.0]]), point_labels=np.array([1]), multimask=False)
    assert _dice(both.masks[0], truth["left"] | truth["right"]) > 0.9
    split = engine.predict(emb, points_xy=np.array([[100.0, 60.0], [128.0, 60.0]]), point_labels=np.array([1, 0]),
                           multimask=False)
    assert _dice(split.masks[0], truth["left"]) > 0.85
    assert split.masks[0][truth["right"]].mean() < 0.1


def test_needs_a_positive_prompt(scene):
    engine = ClassicalEngine()
    with pytest.raises(ValueError, match="positive point or a box"):
        engine.predict(engine.embed(scene[0]), points_xy=np.array([[5.0, 5.0]]), point_labels=np.array([0]))


@pytest.mark.realdata
def test_real_ct_organs_from_one_click():
    case = DATA / "labelled" / "ct_totalseg_abdomen_3mm"
    if not case.exists():
        pytest.skip("shared test data not available")
    import nibabel as nib
    from scipy import ndimage

    from annotator.core.geometry import Window, apply_window

    image = np.asarray(nib.load(case / "image.nii.gz").dataobj)
    labels = np.asarray(nib.load(case / "labels.nii.gz").dataobj)
    engine = ClassicalEngine()
    scores = {}
    for value, name in [(1, "spleen"), (5, "liver"), (30, "vertebrae_L2"), (86, "autochthon_left")]:
        mask3d = labels == value
        k = int(np.argmax(mask3d.sum(axis=(0, 1))))
        truth = mask3d[:, :, k]
        emb = engine.embed(_rgb(apply_window(image[:, :, k], Window(40, 400))))
        depth = ndimage.distance_transform_edt(truth)
        row, col = np.unravel_index(np.argmax(depth), truth.shape)
        pred = engine.predict(emb, points_xy=np.array([[col, row]], dtype=float), point_labels=np.array([1]))
        scores[name] = _dice(pred.best_mask, truth)
    assert min(scores.values()) > 0.75, scores
