"""The torchvision stand-in: installed only when the real one cannot be imported, and its four
functions behave as torchvision documents them."""

from __future__ import annotations

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from annotator.engine import _torchvision_compat as compat  # noqa: E402


@pytest.fixture
def fresh_state(monkeypatch):
    monkeypatch.setattr(compat, "_state", None)
    monkeypatch.setattr(sys, "modules", dict(sys.modules))  # restored afterwards


def test_broken_torchvision_is_replaced_and_half_imports_removed(fresh_state, monkeypatch):
    sys.modules["torchvision"] = object()  # what a failed import can leave behind
    sys.modules["torchvision._meta_registrations"] = object()

    def broken():
        raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.setattr(compat, "_import_real", broken)
    assert compat.ensure_torchvision() == "shim"
    assert "torchvision._meta_registrations" not in sys.modules
    from torchvision.ops.boxes import batched_nms, box_area
    from torchvision.transforms.functional import resize, to_pil_image

    assert (resize, to_pil_image, batched_nms, box_area) == (compat.resize, compat.to_pil_image,
                                                             compat.batched_nms, compat.box_area)
    assert compat.ensure_torchvision() == "shim"  # idempotent


def test_working_torchvision_is_left_alone(fresh_state, monkeypatch):
    sentinel = object()
    sys.modules["torchvision"] = sentinel
    monkeypatch.setattr(compat, "_import_real", lambda: None)
    assert compat.ensure_torchvision() == "real"
    assert sys.modules["torchvision"] is sentinel


def test_segment_anything_imports_after_ensure():
    compat.ensure_torchvision()
    import segment_anything  # noqa: F401
    from segment_anything.utils.transforms import ResizeLongestSide

    out = ResizeLongestSide(64).apply_image(np.zeros((30, 40, 3), dtype=np.uint8))
    assert out.shape == (48, 64, 3)
    assert out.dtype == np.uint8


def test_resize_pil_matches_pil_bilinear_and_int_size_matches_shorter_edge():
    from PIL import Image

    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))
    out = compat.resize(img, (20, 15))  # (h, w)
    assert out.size == (15, 20)  # PIL size is (w, h)
    np.testing.assert_array_equal(np.array(out), np.array(img.resize((15, 20), Image.BILINEAR)))
    assert compat.resize(img, 15).size == (20, 15)  # shorter edge (h=30) -> 15, aspect kept
    assert compat.resize(img, [15]).size == (20, 15)
    tall = Image.fromarray(np.zeros((40, 30), dtype=np.uint8))
    assert compat.resize(tall, 15).size == (15, 20)


def test_resize_tensor_bilinear_antialiased():
    x = torch.arange(2 * 8 * 12, dtype=torch.float32).reshape(2, 8, 12)
    out = compat.resize(x, [4, 6])
    assert out.shape == (2, 4, 6)
    expected = torch.nn.functional.interpolate(x[:, None], size=(4, 6), mode="bilinear", align_corners=False,
                                               antialias=True)[:, 0]
    torch.testing.assert_close(out, expected)
    u8 = compat.resize(torch.full((1, 8, 12), 200, dtype=torch.uint8), 4)
    assert u8.dtype == torch.uint8
    assert u8.shape == (1, 4, 6)
    assert int(u8.min()) == 200


def test_to_pil_image_modes_and_float_scaling():
    rgb = np.random.default_rng(2).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    pil = compat.to_pil_image(rgb)
    assert pil.mode == "RGB"
    assert pil.size == (7, 5)
    np.testing.assert_array_equal(np.array(pil), rgb)
    gray = compat.to_pil_image(rgb[:, :, 0])
    assert gray.mode == "L"
    np.testing.assert_array_equal(np.array(gray), rgb[:, :, 0])
    chw = torch.full((3, 2, 2), 0.5)
    assert np.array(compat.to_pil_image(chw))[0, 0].tolist() == [127, 127, 127]  # 0.5 * 255 -> byte
    with pytest.raises(ValueError, match="channels"):
        compat.to_pil_image(np.zeros((2, 2, 5), dtype=np.uint8))


def test_box_area():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 5.0], [2.0, 3.0, 4.0, 4.0]])
    torch.testing.assert_close(compat.box_area(boxes), torch.tensor([50.0, 2.0]))


def test_batched_nms_suppresses_within_a_class_only_and_orders_by_score():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0],
                          [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.9, 0.95, 0.5, 0.3])
    idxs = torch.tensor([0, 0, 1, 0])
    keep = compat.batched_nms(boxes, scores, idxs, 0.5)
    # box 0 overlaps the higher-scoring box 1 (IoU 0.81) in class 0 -> gone; box 2 is class 1 -> kept
    assert keep.tolist() == [1, 2, 3]
    assert keep.dtype == torch.int64
    assert compat.batched_nms(boxes, scores, idxs, 0.9).tolist() == [1, 0, 2, 3]
    empty = compat.batched_nms(torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5)
    assert empty.numel() == 0
