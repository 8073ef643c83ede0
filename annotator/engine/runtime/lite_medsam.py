"""Puts a LiteMedSAM engine's image encoder on the runtime chosen for this machine (issue 8).

The engine keeps its torch module as the reference; this module builds the export spec and the
first-use self-check from the engine's own preprocessing and decoder, selects a runner and hands
it to LiteMedSamEngine.set_encoder, which also renames the engine's runtime (EmbeddingKey.runtime).
"""

from __future__ import annotations

import logging

import numpy as np

from annotator.engine.runtime.base import ModelSpec
from annotator.engine.runtime.cache import CompiledModelCache
from annotator.engine.runtime.select import Selection, SelfCheck, select_runner
from annotator.engine.runtime.selfcheck import mask_agreement_check, phantom_slices

log = logging.getLogger(__name__)
ENCODER_PART = "lite-medsam.encoder"
# Kept fp32 under "bf16mix": the stem and first (convolutional) stage see the raw image; in bf16
# they cost the box masks 0.005 mean Dice on the shared CT (onnx_split.py, select.py).
FP32_STEM = ("patch_embed", "layers.0")


def encoder_spec(engine) -> ModelSpec:
    from annotator.engine.lite_medsam import preprocess

    size = preprocess.IMAGE_SIZE
    return ModelSpec(module=engine.torch_module.image_encoder, part=ENCODER_PART,
                     model_sha256=engine.model_sha256,
                     example_inputs=(np.zeros((1, 3, size, size), dtype=np.float32),),
                     input_names=("image",), output_names=("features",), fp32_scopes=FP32_STEM)


def encoder_self_check(engine, count: int = 3) -> SelfCheck:
    """Masks from box prompts on phantom slices, decoded by the engine's own (torch) prompt path."""
    from annotator.engine.api import ImageEmbedding
    from annotator.engine.lite_medsam import preprocess

    phantoms = phantom_slices(count)
    prepared = [preprocess.model_input(image) for image, _ in phantoms]

    def masks(index: int, features: np.ndarray) -> list[np.ndarray]:
        image, boxes = phantoms[index]
        embedding = ImageEmbedding(features=features, original_size=image.shape[:2],
                                   input_size=prepared[index][1], model_id=engine.model_id)
        return [engine.predict(embedding, box_xyxy=box, multimask=False).best_mask for box in boxes]

    return mask_agreement_check([(model_input,) for model_input, _ in prepared], masks,
                                identity=f"phantom-boxes-{count}-v1")


def accelerate_lite_medsam(engine, runtime: str = "auto", *, cache: CompiledModelCache | None = None,
                           check: SelfCheck | None = None, stored_only: bool = False) -> Selection | None:
    """Select the encoder runner for `engine` and install it (engine.runtime becomes its name).

    stored_only=True installs a choice an earlier check stored on this machine, or returns None
    and leaves the engine on torch (no export, no self-check: those take a minute or more).
    """
    from annotator.engine.runtime.malloc import tune_malloc

    tune_malloc()
    try:
        selection = select_runner(encoder_spec(engine), runtime=runtime,
                                  check=check or encoder_self_check(engine), cache=cache,
                                  device=engine.device, stored_only=stored_only)
    except ValueError as exc:  # unknown or uninstalled runtime asked for by name
        from annotator.engine.api import EngineError

        raise EngineError(f"lite-medsam: {exc}") from exc
    if selection is None:
        return None
    runner = selection.runner

    def encode(model_input_1x3: np.ndarray) -> np.ndarray:
        return runner(model_input_1x3)[0]

    engine.set_encoder(encode, selection.name)
    log.info("lite-medsam encoder on %s%s", selection.name, " (stored choice)" if selection.from_cache else "")
    if engine.device == "cpu" and runtime != "torch" and hasattr(engine, "set_prompt_runner"):
        engine.set_prompt_runner(prompt_runner(engine, "auto" if "-" in runtime else runtime, cache))
    return selection


def prompt_runner(engine, runtime: str = "auto", cache: CompiledModelCache | None = None):
    """The fastest prompt-path runner for `engine` whose masks equal torch's (see prompt_path.py)."""
    from annotator.engine.runtime.prompt_path import select_prompt_runner

    module = engine.torch_module
    size = module.prompt_encoder.image_embedding_size
    return select_prompt_runner(module.prompt_encoder, module.mask_decoder, part="lite-medsam.prompt",
                                model_sha256=engine.model_sha256,
                                embedding_shape=(1, module.prompt_encoder.embed_dim, *size),
                                runtime=runtime, cache=cache)
