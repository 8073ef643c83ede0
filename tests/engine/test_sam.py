"""SamEngine runs the real segment-anything code: same masks/logits as SamPredictor, MedSAM's own
preprocessing, and an explicit embedding that can be restored on another engine instance."""

from __future__ import annotations

import numpy as np
import pytest
from support.sam_models import build_tiny_sam

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    from support.sam_models import one_torch_thread

    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def tiny_sam():
    return build_tiny_sam(seed=3)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 60, size=(120, 180), dtype=np.uint8)
    img[30:80, 50:120] += 150  # a bright rectangle
    return np.repeat(img[:, :, None], 3, axis=2)


@pytest.fixture(scope="module")
def engine(tiny_sam):
    from annotator.engine.sam_engine import SamEngine

    return SamEngine(tiny_sam, model_id="tiny", model_sha256="0" * 64)


@pytest.fixture(scope="module")
def predictor(tiny_sam, image):
    from segment_anything import SamPredictor

    pred = SamPredictor(tiny_sam)
    pred.set_image(image)
    return pred


@pytest.fixture(scope="module")
def embedding(engine, image):
    return engine.embed(image)


def test_embedding_equals_sam_predictor_features(embedding, predictor, image):
    assert embedding.features.dtype == np.float32
    np.testing.assert_array_equal(embedding.features, predictor.features.numpy())
    assert embedding.original_size == tuple(predictor.original_size) == image.shape[:2]
    assert embedding.input_size == tuple(predictor.input_size) == (683, 1024)


CASES = {
    "one point, multimask": dict(points_xy=[[80.0, 50.0]], point_labels=[1], multimask=True),
    "points, single mask": dict(points_xy=[[80.0, 50.0], [10.0, 10.0]], point_labels=[1, 0], multimask=False),
    "box": dict(box_xyxy=[50.0, 30.0, 119.0, 79.0], multimask=False),
    "box, multimask": dict(box_xyxy=[50.0, 30.0, 119.0, 79.0], multimask=True),
    "points + box": dict(points_xy=[[80.0, 50.0]], point_labels=[1], box_xyxy=[50.0, 30.0, 119.0, 79.0],
                         multimask=False),
}


def _ours_and_theirs(engine, embedding, predictor, case, mask_input=None):
    points = np.array(case["points_xy"]) if "points_xy" in case else None
    labels = np.array(case["point_labels"]) if "point_labels" in case else None
    box = np.array(case["box_xyxy"]) if "box_xyxy" in case else None
    ours = engine.predict(embedding, points_xy=points, point_labels=labels, box_xyxy=box, mask_input=mask_input,
                          multimask=case["multimask"])
    masks, scores, logits = predictor.predict(point_coords=points, point_labels=labels, box=box,
                                              mask_input=mask_input, multimask_output=case["multimask"])
    return ours, (masks, scores, logits)


@pytest.mark.parametrize("name", list(CASES))
def test_prediction_equals_sam_predictor(engine, embedding, predictor, name):
    ours, (masks, scores, logits) = _ours_and_theirs(engine, embedding, predictor, CASES[name])
    expected_count = 3 if CASES[name]["multimask"] else 1
    assert ours.masks.shape == (expected_count, 120, 180)
    assert ours.masks.dtype == bool
    np.testing.assert_array_equal(ours.masks, masks)
    np.testing.assert_allclose(ours.scores, scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.low_res_logits, logits, rtol=1e-5, atol=1e-5)
    assert ours.low_res_logits.shape == (expected_count, 256, 256)


def test_mask_input_refinement_equals_sam_predictor(engine, embedding, predictor):
    first = engine.predict(embedding, points_xy=np.array([[80.0, 50.0]]), point_labels=np.array([1]))
    previous = first.low_res_logits[first.best_index][None]
    case = dict(points_xy=[[80.0, 50.0], [60.0, 40.0]], point_labels=[1, 0], multimask=False)
    ours, (masks, scores, logits) = _ours_and_theirs(engine, embedding, predictor, case, mask_input=previous)
    np.testing.assert_array_equal(ours.masks, masks)
    np.testing.assert_allclose(ours.low_res_logits, logits, rtol=1e-5, atol=1e-5)
    # the mask input really changes the answer (so the comparison above is not vacuous)
    without = engine.predict(embedding, points_xy=np.array([[80.0, 50.0], [60.0, 40.0]]),
                             point_labels=np.array([1, 0]), multimask=False)
    assert not np.allclose(without.low_res_logits, ours.low_res_logits)


def test_restored_embedding_on_a_new_engine_gives_same_prediction(tiny_sam, embedding, predictor):
    """The explicit ImageEmbedding is all predict needs: no hidden image state in the adapter."""
    from annotator.engine.sam_engine import SamEngine

    other = SamEngine(tiny_sam, model_id="tiny", model_sha256="0" * 64)
    copy = type(embedding)(embedding.features.copy(), embedding.original_size, embedding.input_size, "tiny")
    ours = other.predict(copy, points_xy=np.array([[80.0, 50.0]]), point_labels=np.array([1]))
    masks, _, logits = predictor.predict(point_coords=np.array([[80.0, 50.0]]), point_labels=np.array([1]))
    np.testing.assert_array_equal(ours.masks, masks)
    np.testing.assert_allclose(ours.low_res_logits, logits, rtol=1e-5, atol=1e-5)


def test_predict_refuses_another_models_embedding_and_empty_prompts(engine, embedding):
    from annotator.engine.api import EngineError

    alien = type(embedding)(embedding.features, embedding.original_size, embedding.input_size, "other-model")
    with pytest.raises(EngineError, match="other-model"):
        engine.predict(alien, points_xy=np.array([[1.0, 1.0]]), point_labels=np.array([1]))
    with pytest.raises(ValueError, match="at least one"):
        engine.predict(embedding)
    with pytest.raises(ValueError, match="uint8"):
        engine.embed(np.zeros((10, 10), dtype=np.uint8))


def test_medsam_preprocessing_follows_the_medsam_reference(tiny_sam, image):
    """MedSAM: whole slice resized to 1024x1024 (bicubic, anti-aliased), min-max to [0, 1], no
    mean/std and no padding; box scaled by 1024/W, 1024/H; sigmoid upsampled, > 0.5."""
    import torch.nn.functional as F
    from skimage import transform

    from annotator.engine.sam_engine import SamEngine

    engine = SamEngine(tiny_sam, model_id="tiny-medsam", model_sha256="1" * 64, flavour="medsam")
    assert engine.prompt_kind == "box"
    emb = engine.embed(image)
    assert emb.input_size == (1024, 1024)

    # the reference pipeline, step by step (bowang-lab/MedSAM MedSAM_Inference.py)
    height, width = image.shape[:2]
    img_1024 = transform.resize(image, (1024, 1024), order=3, preserve_range=True, anti_aliasing=True).astype(np.uint8)
    img_1024 = (img_1024 - img_1024.min()) / np.clip(img_1024.max() - img_1024.min(), a_min=1e-8, a_max=None)
    tensor = torch.tensor(img_1024).float().permute(2, 0, 1).unsqueeze(0)
    with torch.no_grad():
        ref_features = tiny_sam.image_encoder(tensor)
        np.testing.assert_allclose(emb.features, ref_features.numpy(), rtol=1e-5, atol=1e-5)
        box = np.array([[50, 30, 119, 79]])
        box_1024 = box / np.array([width, height, width, height]) * 1024
        box_torch = torch.as_tensor(box_1024, dtype=torch.float)[:, None, :]
        sparse, dense = tiny_sam.prompt_encoder(points=None, boxes=box_torch, masks=None)
        low_res, _ = tiny_sam.mask_decoder(image_embeddings=ref_features, image_pe=tiny_sam.prompt_encoder.get_dense_pe(),
                                           sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                           multimask_output=False)
        prob = F.interpolate(torch.sigmoid(low_res), size=(height, width), mode="bilinear", align_corners=False)
        ref_mask = (prob.squeeze().numpy() > 0.5)
    ours = engine.predict(emb, box_xyxy=np.array([50.0, 30.0, 119.0, 79.0]), multimask=True)
    assert ours.masks.shape == (1, height, width)  # MedSAM is single-output whatever was asked
    np.testing.assert_allclose(ours.low_res_logits[0], low_res[0, 0].numpy(), rtol=1e-4, atol=1e-4)
    assert (ours.masks[0] != ref_mask).sum() <= 2  # fp rounding at the 0.5 boundary only
    # and it is not SAM's preprocessing
    sam_engine = SamEngine(tiny_sam, model_id="tiny", model_sha256="0" * 64)
    assert not np.allclose(sam_engine.embed(image).features, emb.features)


@pytest.mark.parametrize("original_size", [(120, 180), (300, 512), (512, 96), (512, 512), (7, 1000)])
def test_upscaling_only_the_kept_frame_is_bit_identical_to_sam(engine, tiny_sam, original_size):
    from segment_anything.utils.transforms import ResizeLongestSide

    input_size = ResizeLongestSide.get_preprocess_shape(*original_size, 1024)
    low_res = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1)) * 4
    with torch.inference_mode():
        ours = engine._upscale_logits(low_res, input_size, original_size)
        theirs = tiny_sam.postprocess_masks(low_res, input_size, original_size)
    assert ours.shape == theirs.shape == (1, 3, *original_size)
    assert torch.equal(ours, theirs)


def test_another_runtime_can_replace_the_encoder(tiny_sam, image, embedding):
    from annotator.engine.api import EngineError
    from annotator.engine.sam_engine import SamEngine

    engine = SamEngine(tiny_sam, model_id="tiny", model_sha256="0" * 64)
    seen = []

    def numpy_encoder(x):
        seen.append(x.shape)
        with torch.inference_mode():
            return tiny_sam.image_encoder(torch.from_numpy(x)).numpy()

    engine.set_encoder(numpy_encoder, "numpy-test-fp32")
    assert engine.runtime == "numpy-test-fp32"
    np.testing.assert_allclose(engine.embed(image).features, embedding.features, rtol=1e-5, atol=1e-5)
    assert seen == [(1, 3, 1024, 1024)]
    engine.set_encoder(lambda x: np.zeros((1, 256, 32, 32), np.float32), "broken")
    with pytest.raises(EngineError, match="shape"):
        engine.embed(image)
