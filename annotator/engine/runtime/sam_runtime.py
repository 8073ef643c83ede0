"""Puts a SAM / MedSAM engine's image encoder and prompt path on the runtime chosen for this machine.

The same layer as runtime/lite_medsam_runtime.py, for segment-anything's ViT-B/L/H: the encoder spec and
the first-use self-check come from the engine's own preprocessing and (torch) decoder, the chosen
runner replaces the encoder through SamEngine.set_encoder (which renames the engine's runtime, so
embeddings never mix), and the prompt path goes on the fastest runtime whose masks equal torch's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from annotator.engine.runtime.accelerate import accelerate
from annotator.engine.runtime.base import ModelSpec
from annotator.engine.runtime.compiled_cache import CompiledModelCache
from annotator.engine.runtime.select import Selection, SelfCheck
from annotator.engine.runtime.selfcheck import mask_agreement_check, phantom_slices

# Kept fp32 under "bf16mix": the patch embedding and the first transformer block (with the
# position embedding between them), by analogy with LiteMedSAM's stem, where bf16 in the first
# layers cost the box masks most (see onnx_split.py). No real SAM weights can be measured here.
FP32_STEM = ("patch_embed", "blocks.0")


def encoder_spec(engine: Any) -> ModelSpec:
    size = engine.img_size
    return ModelSpec(module=engine.torch_module.image_encoder, part=f"{engine.model_id}.encoder",
                     model_sha256=engine.model_sha256,
                     example_inputs=(np.zeros((1, 3, size, size), dtype=np.float32),),
                     input_names=("image",), output_names=("features",), fp32_scopes=FP32_STEM)


def encoder_self_check(engine: Any, count: int = 2) -> SelfCheck:
    """Masks from box prompts on phantom slices through the engine's own preprocessing and decoder.

    Two slices by default: a ViT-B encoder takes 10-25 s per slice on a laptop in torch fp32."""
    import torch

    from annotator.engine.api import ImageEmbedding

    phantoms = phantom_slices(count)
    prepared = []
    with torch.inference_mode():
        for image, _ in phantoms:
            x, input_size = engine._encoder_input(image)
            prepared.append((x.float().cpu().numpy(), input_size))

    def masks(index: int, features: np.ndarray) -> list[np.ndarray]:
        image, boxes = phantoms[index]
        embedding = ImageEmbedding(features=features, original_size=image.shape[:2],
                                   input_size=prepared[index][1], model_id=engine.model_id)
        return [engine.predict(embedding, box_xyxy=box, multimask=False).masks[0] for box in boxes]

    return mask_agreement_check([(x,) for x, _ in prepared], masks,
                                identity=f"sam-{engine.flavour}-phantom-boxes-{count}-v1")


def accelerate_sam(engine: Any, runtime: str = "auto", *, cache: CompiledModelCache | None = None,
                   check: SelfCheck | None = None, stored_only: bool = False,
                   require_faster: bool = True) -> Selection | None:
    """Select the encoder runner for a CPU SamEngine and install it with a fast prompt path (see
    accelerate.accelerate). GPU engines stay on torch (fp16 autocast, see SamEngine): None."""
    if engine.device != "cpu":
        return None
    return accelerate(engine, encoder_spec(engine), check or encoder_self_check(engine), runtime,
                      prompt_part=f"{engine.model_id}.prompt", cache=cache, stored_only=stored_only,
                      require_faster=require_faster)
