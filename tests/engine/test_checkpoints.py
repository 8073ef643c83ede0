"""Checkpoints: weights-only loading (a pickle payload never runs), clear errors naming the file,
architecture read from tensor shapes, published checkpoints named by SHA-256."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
from support.sam_models import build_tiny_sam, save_tiny_checkpoint

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    from support.sam_models import one_torch_thread

    with one_torch_thread():
        yield

from annotator.engine import checkpoints  # noqa: E402
from annotator.engine.api import EngineError  # noqa: E402


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ck") / "tiny_sam.pth", seed=5, global_attn_indexes=(1,))


def test_detects_tiny_architecture_from_shapes(tiny_ckpt):
    arch = checkpoints.detect_architecture(checkpoints.load_state_dict(tiny_ckpt))
    assert arch.name == "vit_custom_32x2"
    assert (arch.encoder_embed_dim, arch.encoder_depth, arch.encoder_num_heads) == (32, 2, 2)
    assert arch.encoder_global_attn_indexes == (1,)
    assert (arch.window_size, arch.img_size, arch.patch_size, arch.prompt_embed_dim) == (14, 1024, 16, 256)
    assert (arch.decoder_depth, arch.decoder_mlp_dim, arch.num_multimask_outputs) == (2, 2048, 3)


@pytest.mark.parametrize(("builder", "name", "heads", "global_blocks"), [
    ("build_sam_vit_b", "vit_b", 12, (2, 5, 8, 11)),
    ("build_sam_vit_l", "vit_l", 16, (5, 11, 17, 23)),
    ("build_sam_vit_h", "vit_h", 16, (7, 15, 23, 31)),
])
def test_detects_published_sizes(builder, name, heads, global_blocks):
    from annotator.engine._torchvision_compat import ensure_torchvision

    ensure_torchvision()
    import segment_anything

    with torch.device("meta"):  # shapes only, no memory
        sam = getattr(segment_anything, builder)()
    arch = checkpoints.detect_architecture(sam.state_dict())
    assert (arch.name, arch.encoder_num_heads, arch.encoder_global_attn_indexes) == (name, heads, global_blocks)
    assert arch.window_size == 14


def test_load_builds_the_same_model_and_reports_flavour(tiny_ckpt, tmp_path):
    loaded = checkpoints.load_sam_checkpoint(tiny_ckpt)
    reference = build_tiny_sam(seed=5, global_attn_indexes=(1,))
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], tensor)
    assert loaded.sha256 == hashlib.sha256(tiny_ckpt.read_bytes()).hexdigest()
    assert loaded.known is None
    assert loaded.flavour == "sam"
    assert "not a published checkpoint" in loaded.display_name
    medsam = tmp_path / "medsam_vit_tiny.pth"
    medsam.write_bytes(tiny_ckpt.read_bytes())
    assert checkpoints.load_sam_checkpoint(medsam).flavour == "medsam"
    assert checkpoints.load_sam_checkpoint(medsam, flavour="sam").flavour == "sam"


def test_published_checkpoints_are_recognised_by_sha256(tiny_ckpt, monkeypatch):
    for sha, known in checkpoints.KNOWN_CHECKPOINTS.items():
        assert re.fullmatch(r"[0-9a-f]{64}", sha)
        assert known.architecture in ("vit_b", "vit_l", "vit_h")
        assert known.name.endswith(known.source.rsplit("_", 1)[-1].removesuffix(".pth"))
    sha = checkpoints.file_sha256(tiny_ckpt)
    fake = checkpoints.KnownCheckpoint("sam_vit_tiny_test", "vit_b", "medsam", "test")
    monkeypatch.setitem(checkpoints.KNOWN_CHECKPOINTS, sha, fake)
    loaded = checkpoints.load_sam_checkpoint(tiny_ckpt)
    assert loaded.known is fake
    assert loaded.flavour == "medsam"
    assert "recognised by SHA-256" in loaded.display_name


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # creating a file proves code ran


def test_pickle_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pth"
    torch.save({"image_encoder.pos_embed": torch.zeros(1), "payload": _Payload(marker)}, evil)
    with pytest.raises(EngineError, match=re.escape(str(evil))) as info:
        checkpoints.load_sam_checkpoint(evil)
    assert "refused" in str(info.value)
    assert not marker.exists()
    # the payload is real: an unsafe load would have run it
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_corrupt_truncated_missing_and_foreign_files_give_clear_errors(tiny_ckpt, tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(tiny_ckpt.read_bytes()[: tiny_ckpt.stat().st_size // 2])
    foreign = tmp_path / "foreign.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, foreign)
    for path, message in [(garbage, "not a readable PyTorch checkpoint"),
                          (truncated, "not a readable PyTorch checkpoint"),
                          (tmp_path / "missing.pth", "not found"),
                          (foreign, "not a Segment Anything")]:
        with pytest.raises(EngineError, match=re.escape(str(path))) as info:
            checkpoints.load_sam_checkpoint(path)
        assert message in str(info.value)


def test_wrong_shape_gives_clear_error(tmp_path):
    state = build_tiny_sam(seed=1).state_dict()
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 128)
    bad = tmp_path / "bad_shape.pth"
    torch.save(state, bad)
    with pytest.raises(EngineError, match=re.escape(str(bad))) as info:
        checkpoints.load_sam_checkpoint(bad)
    assert "do not fit" in str(info.value)


def test_engine_load_from_checkpoint_predicts_like_the_model(tiny_ckpt):
    from segment_anything import SamPredictor

    from annotator.engine.sam_engine import SamEngine

    engine = SamEngine.load(tiny_ckpt, device="cpu")
    assert engine.device == "cpu"
    assert engine.runtime == "torch-fp32"
    assert engine.model_id == "sam-vit_custom_32x2"
    assert engine.model_sha256 == checkpoints.file_sha256(tiny_ckpt)
    image = np.repeat(np.linspace(0, 255, 64 * 48, dtype=np.uint8).reshape(48, 64)[:, :, None], 3, axis=2)
    predictor = SamPredictor(build_tiny_sam(seed=5, global_attn_indexes=(1,)))
    predictor.set_image(image)
    ours = engine.predict(engine.embed(image), box_xyxy=np.array([5.0, 5.0, 30.0, 20.0]), multimask=False)
    masks, _, logits = predictor.predict(box=np.array([5.0, 5.0, 30.0, 20.0]), multimask_output=False)
    np.testing.assert_array_equal(ours.masks, masks)
    np.testing.assert_allclose(ours.low_res_logits, logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("version", ["2.5.1+cpu", "2.1.0", "1.13.1"])
def test_a_torch_whose_safe_loading_can_be_bypassed_is_refused(tmp_path, monkeypatch, version):
    """torch < 2.6 (CVE-2025-32434): no checkpoint is opened, and the message says why and what to do."""
    import torch

    from annotator.engine.api import EngineError
    from annotator.engine.checkpoints import load_state_dict
    from annotator.engine.lite_medsam.model import read_state_dict

    path = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(2)}, path)
    assert set(load_state_dict(path)) == {"a"}
    monkeypatch.setattr(torch, "__version__", version)
    for load in (load_state_dict, read_state_dict):
        with pytest.raises(EngineError, match=r"torch >= 2\.6.*CVE-2025-32434"):
            load(path)
