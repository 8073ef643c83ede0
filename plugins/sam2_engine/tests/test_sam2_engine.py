"""The SAM 2 engine plugin on small randomly initialised models of sam2's real classes: the same
masks, scores and logits as sam2's own SAM2ImagePredictor, loading through the plugin registry,
cached embeddings, and clear errors for checkpoints that are not SAM 2."""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from annotator_sam2.engine import (  # noqa: E402
    MEDSAM2_IMAGE_SIZE,
    Sam2Checkpoint,
    Sam2Engine,
    build_model,
    describe_checkpoint,
)

from annotator.engine.api import EngineError  # noqa: E402

SMALL = Sam2Checkpoint("sam2.1", "t", MEDSAM2_IMAGE_SIZE)  # MedSAM2's shape: 512², a quarter of SAM 2's work


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    built = build_model(SMALL)
    with torch.no_grad():  # random init leaves some heads at zero; make every path carry signal
        for name, param in built.named_parameters():
            if name.endswith("no_mem_embed") or "mask_tokens" in name or "iou_token" in name:
                param.normal_(0, 0.5)
    return built


@pytest.fixture(scope="module")
def engine(model):
    return Sam2Engine(model, SMALL, model_sha256="0" * 64)


def _image(seed: int = 0, shape=(180, 240)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (*shape, 3)).astype(np.uint8)
    image[50:120, 70:160] = 200  # a bright block to segment
    return image


# ---- torchvision stand-ins, as documented, only where the real one cannot be imported -------------
class Resize(torch.nn.Module):
    """torchvision.transforms.Resize on a CHW tensor: bilinear, antialias=True (the default since 0.17)."""

    def __init__(self, size):
        super().__init__()
        self.size = [int(size[0]), int(size[1])]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(img.unsqueeze(0), size=self.size, mode="bilinear",
                                               align_corners=False, antialias=True).squeeze(0)


class Normalize(torch.nn.Module):
    """torchvision.transforms.Normalize: (x - mean) / std per channel."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ToTensor:
    """torchvision.transforms.ToTensor on an HWC uint8 array: CHW float in [0, 1]."""

    def __call__(self, pic):
        return torch.from_numpy(np.ascontiguousarray(pic)).permute(2, 0, 1).float().div(255)


@pytest.fixture(scope="module")
def reference_predictor(model):
    """sam2's own SAM2ImagePredictor on the same model (its transforms need torchvision)."""
    from annotator.engine._torchvision_compat import ensure_torchvision

    if ensure_torchvision() == "shim":
        transforms = sys.modules["torchvision.transforms"]
        for name, value in (("Resize", Resize), ("Normalize", Normalize), ("ToTensor", ToTensor)):
            if not hasattr(transforms, name):
                setattr(transforms, name, value)
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(model)
    # Its feature sizes are written for 1024² inputs; MedSAM2's copy of it uses those of 512².
    predictor._bb_feat_sizes = [(128, 128), (64, 64), (32, 32)]
    return predictor


PROMPTS = [
    dict(box_xyxy=np.array([60.0, 40.0, 170.0, 130.0]), multimask=False),
    dict(points_xy=np.array([[110.0, 80.0]]), point_labels=np.array([1]), multimask=True),
    dict(points_xy=np.array([[110.0, 80.0], [20.0, 20.0]]), point_labels=np.array([1, 0]),
         box_xyxy=np.array([60.0, 40.0, 170.0, 130.0]), multimask=False),
]


def test_masks_scores_and_logits_are_sam2_image_predictors(engine, reference_predictor):
    image = _image()
    embedding = engine.embed(image)
    assert embedding.features.shape == (1, 256, 32, 32)
    assert embedding.extras["high_res_0"].shape == (1, 32, 128, 128)
    assert embedding.extras["high_res_1"].shape == (1, 64, 64, 64)
    reference_predictor.set_image(image)
    ref_embed = reference_predictor.get_image_embedding().numpy()
    assert np.allclose(embedding.features, ref_embed, atol=1e-5)
    previous = None
    for prompt in [*PROMPTS, dict(box_xyxy=PROMPTS[0]["box_xyxy"], multimask=False, mask_input="previous")]:
        kwargs = dict(prompt)
        if kwargs.get("mask_input") == "previous":
            kwargs["mask_input"] = previous
        ours = engine.predict(embedding, **kwargs)
        masks, scores, low_res = reference_predictor.predict(
            point_coords=kwargs.get("points_xy"), point_labels=kwargs.get("point_labels"), box=kwargs.get("box_xyxy"),
            mask_input=kwargs.get("mask_input"), multimask_output=kwargs["multimask"])
        assert ours.masks.shape == masks.shape == (3 if kwargs["multimask"] else 1, 180, 240)
        assert np.array_equal(ours.masks, masks.astype(bool))
        assert np.allclose(ours.scores, scores, atol=1e-5)
        assert np.allclose(ours.low_res_logits, low_res, atol=1e-4)
        previous = ours.low_res_logits[ours.best_index: ours.best_index + 1]
    # Something is segmented at all (a test on masks that are all empty would prove nothing).
    assert 0 < int(ours.masks.sum()) < ours.masks.size


def test_a_slice_larger_than_the_model_input_is_shrunk_as_sam2_shrinks_it(engine, reference_predictor):
    image = np.kron(_image(1), np.ones((4, 3, 1), dtype=np.uint8))[:700, :650]  # 700 x 650: shrunk to 512²
    embedding = engine.embed(image)
    reference_predictor.set_image(image)
    assert np.allclose(embedding.features, reference_predictor.get_image_embedding().numpy(), atol=1e-5)
    box = np.array([200.0, 150.0, 500.0, 500.0])
    ours = engine.predict(embedding, box_xyxy=box, multimask=False)
    masks, _, _ = reference_predictor.predict(box=box, multimask_output=False)
    assert ours.masks.shape == (1, 700, 650)
    assert np.array_equal(ours.masks, masks.astype(bool))


def test_the_checkpoint_says_what_it_is():
    model = build_model(Sam2Checkpoint("sam2.1", "t", 1024))
    state = model.state_dict()
    assert describe_checkpoint(state, "sam2.1_hiera_tiny.pt") == Sam2Checkpoint("sam2.1", "t", 1024)
    assert describe_checkpoint(state, "MedSAM2_latest.pt") == Sam2Checkpoint("sam2.1", "t", 512)
    assert describe_checkpoint(state, "x.pt", image_size=768).image_size == 768
    older = {k: v for k, v in state.items() if k != "no_obj_embed_spatial"}
    assert describe_checkpoint(older, "sam2_hiera_tiny.pt").family == "sam2"
    small = dict(state)
    for i in range(12, 16):  # SAM 2 small: the tiny trunk with 11 blocks in stage 3
        small[f"image_encoder.trunk.blocks.{i}.norm1.weight"] = state["image_encoder.trunk.blocks.0.norm1.weight"]
    assert describe_checkpoint(small, "s.pt").size == "s"
    with pytest.raises(EngineError, match="not a SAM 2 checkpoint"):
        describe_checkpoint({"image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16)}, "medsam_vit_b.pth")
    with pytest.raises(EngineError, match="width 96 with 13 blocks"):
        describe_checkpoint({**state, "image_encoder.trunk.blocks.12.norm1.weight": torch.zeros(96)}, "odd.pt")


def test_loaded_through_the_registry_cached_and_refusing_a_wrong_checkpoint(model, tmp_path):
    from annotator.core.phantom import make_phantom
    from annotator.engine.embedding_cache import EmbeddingCache
    from annotator.engine.factory import create_engine, engine_names
    from annotator.engine.input_window import default_model_window
    from annotator.engine.service import EmbeddingService

    assert "sam2" in engine_names()
    path = tmp_path / "MedSAM2_random.pt"
    torch.save({"model": model.state_dict()}, path)
    engine = create_engine("sam2", checkpoint=path, device="cpu")
    assert isinstance(engine, Sam2Engine)
    assert engine.model_id == "sam2.1-hiera-t-512"
    # A SAM 2 file chosen in the window (engine "auto") goes to this plugin, not to LiteMedSAM.
    assert isinstance(create_engine("auto", checkpoint=path, device="cpu"), Sam2Engine)
    phantom = make_phantom((6, 64, 80), (2.0, 1.5, 1.5))
    window = default_model_window(phantom.volume)
    cache = EmbeddingCache(memory_bytes=0, disk_dir=tmp_path / "cache")
    first = EmbeddingService(engine, cache).embedding(phantom.volume, 0, 3, window)
    again = EmbeddingService(engine, EmbeddingCache(memory_bytes=0, disk_dir=tmp_path / "cache")).embedding(phantom.volume, 0, 3, window)
    assert again is not first
    assert set(again.extras) == {"high_res_0", "high_res_1"}
    box = np.array([10.0, 10.0, 50.0, 40.0])
    a = engine.predict(first, box_xyxy=box, multimask=False)
    b = engine.predict(again, box_xyxy=box, multimask=False)
    assert (a.masks ^ b.masks).mean() < 0.01  # the cache keeps float16 copies

    with pytest.raises(EngineError, match="the 'sam2' engine needs a checkpoint"):
        create_engine("sam2")
    broken = model.state_dict()
    broken["sam_mask_decoder.iou_token.weight"] = torch.zeros(2, 7)
    bad = tmp_path / "sam2_bad.pt"
    torch.save(broken, bad)
    with pytest.raises(EngineError, match="sam2_bad.pt: does not fit configs/sam2.1/sam2.1_hiera_t.yaml"):
        create_engine("sam2", checkpoint=bad, device="cpu")
    with pytest.raises(EngineError, match="runs on torch only"):
        create_engine("sam2", checkpoint=path, runtime="openvino")
    other = replace(first, model_id="lite-medsam")
    with pytest.raises(EngineError, match="embedding was made by"):
        engine.predict(other, box_xyxy=box)


def test_an_embedding_the_user_no_longer_needs_stops_mid_run(engine, model):
    """A prompt interrupts a running prefetch (executor.make_way): the Hiera trunk stops at its next
    block once the event is set, and the engine embeds as before afterwards."""
    import threading

    from annotator.engine.service import EmbeddingCancelled

    image = _image(7)
    reference = engine.embed(image)
    cancel = threading.Event()
    blocks = model.image_encoder.trunk.blocks
    reached: list[int] = []
    handles = [blocks[0].register_forward_hook(lambda *_: cancel.set()),
               blocks[-1].register_forward_pre_hook(lambda *_: reached.append(1))]
    try:
        with pytest.raises(EmbeddingCancelled):
            engine.embed(image, cancel=cancel)
    finally:
        for handle in handles:
            handle.remove()
    assert reached == []
    assert all(not m._forward_pre_hooks for m in model.modules())
    np.testing.assert_array_equal(engine.embed(image).features, reference.features)
