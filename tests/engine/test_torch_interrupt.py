"""Torch encoder runs stop between blocks when their cancel event is set (a prompt does not wait for a
prefetch it no longer needs), only for the thread that asked, and leave the module as it was."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from support import lite_medsam as support

torch = pytest.importorskip("torch")


def _slow_module():
    from support.runtimes import slow_conv_module

    return slow_conv_module()  # the caller picks its own input: no need to size one


def _no_hooks_left(module) -> bool:
    return all(not m._forward_pre_hooks for m in module.modules())


def test_block_modules_are_the_stages_and_blocks_of_a_network():
    from annotator.engine.runtime.torch_interrupt import block_modules

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 4, 1)
            self.stages = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Identity())
                                               for _ in range(2)])
            self.head = torch.nn.Linear(4, 4)

    net = Net()
    found = {id(m) for m in block_modules(net)}
    expected = [net.stem, net.stages, net.head, *net.stages, *net.stages[0], *net.stages[1]]
    assert found == {id(m) for m in expected}


def test_torch_runner_stops_soon_after_cancel_and_gives_the_same_features_after():
    from support.runtimes import assert_encoder_stops_on_cancel, slow_conv_model

    from annotator.engine.runtime.accelerate import encoder_call
    from annotator.engine.runtime.torch_runner import TorchRunner

    slow, x = slow_conv_model()
    assert_encoder_stops_on_cancel(encoder_call(TorchRunner(slow)), x)
    assert _no_hooks_left(slow)


def test_another_threads_run_of_the_same_module_is_not_interrupted():
    """The runtime check runs the fp32 reference module on its own thread while the executor may
    be embedding with it: only the run whose event was set stops."""
    from annotator.engine.runtime.torch_interrupt import interruptible
    from annotator.engine.service import EmbeddingCancelled

    slow = _slow_module()
    x = torch.from_numpy(np.random.default_rng(1).random((1, 3, 192, 192), dtype=np.float32))
    with torch.inference_mode():
        expected = slow(x)
    cancel = threading.Event()
    hooked, other_done = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def cancelled_run():
        try:
            with torch.inference_mode(), interruptible(slow, cancel):
                hooked.set()
                other_done.wait(30)  # the hooks stay in place, the event set, while the other run goes
                slow(x)
            outcome["cancelled"] = False
        except EmbeddingCancelled:
            outcome["cancelled"] = True

    thread = threading.Thread(target=cancelled_run)
    thread.start()
    assert hooked.wait(5)
    cancel.set()
    with torch.inference_mode():
        outcome["other"] = slow(x)  # this thread's run passes the hooks
    other_done.set()
    thread.join(30)
    assert outcome["cancelled"] is True
    assert torch.equal(outcome["other"], expected)
    assert _no_hooks_left(slow)


def test_lite_medsam_torch_embedding_is_interrupted_and_the_engine_stays_usable():
    """The real bundled encoder on the torch runtime: a prefetch the user no longer needs stops
    within a fraction of its run, and the next embedding of the same slice is unchanged."""
    from annotator.engine.service import EmbeddingCancelled

    engine = support.torch_engine()
    assert engine.runtime == "torch-fp32"
    rng = np.random.default_rng(4)
    image = rng.integers(0, 255, size=(96, 128, 3), dtype=np.uint8)
    start = time.perf_counter()
    reference = engine.embed(image, cancel=threading.Event())
    full_s = time.perf_counter() - start
    cancel = threading.Event()
    threading.Timer(0.05, cancel.set).start()
    start = time.perf_counter()
    with pytest.raises(EmbeddingCancelled):
        engine.embed(image, cancel=cancel)
    assert time.perf_counter() - start < 0.05 + 0.6 * full_s, f"full run {full_s:.3f} s"
    assert _no_hooks_left(engine.torch_module)
    np.testing.assert_array_equal(engine.embed(image).features, reference.features)


def _cancel_after_first_block(encoder, cancel):
    """A hook that sets `cancel` when the encoder's first block finishes: a deterministic 'the user
    moved on while the encoder was running'."""
    from annotator.engine.runtime.torch_interrupt import block_modules

    first = block_modules(encoder)[0]
    return first.register_forward_hook(lambda *_: cancel.set())


def test_segment_anything_encoder_stops_mid_run():
    from support.sam_models import build_tiny_sam

    from annotator.engine.sam_engine import SamEngine
    from annotator.engine.service import EmbeddingCancelled

    engine = SamEngine(build_tiny_sam(seed=5), model_id="tiny", model_sha256="0" * 64)
    image = np.random.default_rng(2).integers(0, 255, size=(64, 80, 3), dtype=np.uint8)
    reference = engine.embed(image)
    cancel = threading.Event()
    ran: list[str] = []
    handles = [_cancel_after_first_block(engine.model.image_encoder, cancel),
               engine.model.image_encoder.neck.register_forward_pre_hook(lambda *_: ran.append("neck"))]
    try:
        with pytest.raises(EmbeddingCancelled):
            engine.embed(image, cancel=cancel)
    finally:
        for handle in handles:
            handle.remove()
    assert ran == []  # stopped before the end of the encoder
    assert _no_hooks_left(engine.model.image_encoder)
    np.testing.assert_array_equal(engine.embed(image).features, reference.features)
