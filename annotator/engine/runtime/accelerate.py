"""Puts an engine's image encoder on the runtime selected for this machine, and its prompt path on
the fastest runtime whose masks equal torch's: the part every model's runtime module shares."""

from __future__ import annotations

import logging
from typing import Any

from annotator.engine.runtime.base import ModelSpec
from annotator.engine.runtime.compiled_cache import CompiledModelCache
from annotator.engine.runtime.select import Selection, SelfCheck, select_runner

log = logging.getLogger(__name__)


def accelerate(engine: Any, spec: ModelSpec, check: SelfCheck, runtime: str = "auto", *, prompt_part: str,
               cache: CompiledModelCache | None = None, stored_only: bool = False,
               require_faster: bool = True) -> Selection | None:
    """Select the encoder runner for `spec` and install it (engine.set_encoder renames the engine's
    runtime, so embeddings never mix); on the CPU also select the prompt path, unless torch was forced.

    stored_only=True installs a choice an earlier check stored on this machine, or returns None
    and leaves the engine on torch (no export, no self-check: those take a minute or more).
    Raises EngineError for an unknown or uninstalled runtime asked for by name.
    """
    from annotator.engine.api import EngineError
    from annotator.engine.runtime.malloc import tune_malloc

    tune_malloc()
    try:
        selection = select_runner(spec, runtime=runtime, check=check, cache=cache, device=engine.device,
                                  stored_only=stored_only, require_faster=require_faster)
    except ValueError as exc:
        raise EngineError(f"{engine.model_id}: {exc}") from exc
    if selection is None:
        return None
    runner = selection.runner
    if selection.name != engine.runtime:
        engine.set_encoder(encoder_call(runner), selection.name)
    log.info("%s encoder on %s%s", engine.model_id, selection.name,
             " (stored choice)" if selection.from_cache else "")
    if engine.device == "cpu" and runtime not in ("torch", "torch-fp32"):
        engine.set_prompt_runner(prompt_runner(engine, prompt_part, "auto" if "-" in runtime else runtime, cache))
    return selection


def encoder_call(runner: Any) -> Any:
    """`encoder(x) -> features` over a runner; where the runner can stop mid-run (OpenVINO's), it
    also takes cancel= and says so (accepts_cancel, read by runtime.base.run_encoder)."""
    if not getattr(runner, "cancellable", False):
        return lambda x: runner(x)[0]

    def encode(x: Any, cancel: Any = None) -> Any:
        return runner(x, cancel=cancel)[0]

    encode.accepts_cancel = True  # type: ignore[attr-defined]
    return encode


def prompt_runner(engine: Any, part: str, runtime: str = "auto", cache: CompiledModelCache | None = None) -> Any:
    """The fastest prompt-path runner for `engine` whose masks equal torch's (see prompt_path.py)."""
    from annotator.engine.runtime.prompt_path import select_prompt_runner

    module = engine.torch_module
    size = module.prompt_encoder.image_embedding_size
    return select_prompt_runner(module.prompt_encoder, module.mask_decoder, part=part,
                                model_sha256=engine.model_sha256,
                                embedding_shape=(1, module.prompt_encoder.embed_dim, *size),
                                runtime=runtime, cache=cache)
