"""Puts a LiteMedSAM engine's image encoder on the runtime chosen for this machine (issue 8).

The engine keeps its torch module as the reference; this module builds the export spec and the
first-use self-check from the engine's own preprocessing and decoder, selects a runner and hands
it to LiteMedSamEngine.set_encoder, which also renames the engine's runtime (EmbeddingKey.runtime).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from annotator.engine.runtime.accelerate import accelerate
from annotator.engine.runtime.base import ModelSpec
from annotator.engine.runtime.compiled_cache import CompiledModelCache
from annotator.engine.runtime.select import Selection, SelfCheck
from annotator.engine.runtime.selfcheck import mask_agreement_check, phantom_slices

ENCODER_PART = "lite-medsam.encoder"
# Kept fp32 under "bf16mix": the stem and first (convolutional) stage see the raw image; in bf16
# they cost the box masks 0.005 mean Dice on the shared CT (onnx_split.py, select.py).
FP32_STEM = ("patch_embed", "layers.0")


def encoder_spec(engine: Any) -> ModelSpec:
    from annotator.engine.lite_medsam import preprocess

    size = preprocess.IMAGE_SIZE
    return ModelSpec(module=engine.torch_module.image_encoder, part=ENCODER_PART,
                     model_sha256=engine.model_sha256,
                     example_inputs=(np.zeros((1, 3, size, size), dtype=np.float32),),
                     input_names=("image",), output_names=("features",), fp32_scopes=FP32_STEM)


def encoder_self_check(engine: Any, count: int = 3) -> SelfCheck:
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


def accelerate_lite_medsam(engine: Any, runtime: str = "auto", *, cache: CompiledModelCache | None = None,
                           check: SelfCheck | None = None, stored_only: bool = False) -> Selection | None:
    """Select the encoder runner for `engine` and install it (engine.runtime becomes its name);
    see accelerate.accelerate."""
    return accelerate(engine, encoder_spec(engine), check or encoder_self_check(engine), runtime,
                      prompt_part="lite-medsam.prompt", cache=cache, stored_only=stored_only)
