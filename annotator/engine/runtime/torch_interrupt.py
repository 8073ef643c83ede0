"""Torch forward passes that a set cancel event stops between blocks. Torch has no cancel of its own,
and a prompt must not wait up to a whole encoder run (0.8-3 s on a laptop CPU) for a prefetch it no
longer needs; OpenVINO's runs stop the same way (openvino_runner._infer)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def block_modules(module: Any) -> list[Any]:
    """Where a run may stop: the module's direct children and every member of a ModuleList or
    Sequential inside it (a network's stages and blocks), each once."""
    import torch

    seen: dict[int, Any] = {id(child): child for child in module.children()}
    for sub in module.modules():
        if isinstance(sub, (torch.nn.ModuleList, torch.nn.Sequential)):
            for child in sub.children():
                seen.setdefault(id(child), child)
    return list(seen.values())


@contextmanager
def interruptible(module: Any, cancel: threading.Event | None) -> Iterator[None]:
    """Within the block, this thread's forward pass of `module` raises EmbeddingCancelled at the next
    block boundary once `cancel` is set. Only this thread's: another thread running the same module
    meanwhile (the runtime check's fp32 reference) passes the hooks untouched. They are removed on
    leaving."""
    if cancel is None:
        yield
        return
    from annotator.engine.service import EmbeddingCancelled

    owner = threading.get_ident()

    def check(_module: Any, _inputs: Any) -> None:
        if cancel.is_set() and threading.get_ident() == owner:
            raise EmbeddingCancelled("encoder interrupted")

    handles = [block.register_forward_pre_hook(check) for block in block_modules(module)]
    try:
        if cancel.is_set():
            raise EmbeddingCancelled("cancelled before the encoder started")
        yield
    finally:
        for handle in handles:
            handle.remove()
