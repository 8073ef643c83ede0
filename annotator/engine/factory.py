"""create_engine: one function that turns the user's choice (settings, command line) into a
PromptEngine, resolving heavy backends lazily and falling back to the classical engine for "auto"."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from annotator.engine.api import EngineError, PromptEngine

log = logging.getLogger(__name__)

LITE_MEDSAM_ENGINE = "annotator.engine.lite_medsam.engine:LiteMedSamEngine"


def engine_names() -> dict[str, str]:
    """name -> title of every engine the user may choose: "auto" and the plugin registry's engines."""
    from annotator.plugin_host.manager import get_registry

    return {"auto": "auto (LiteMedSAM, or classical without torch)", **get_registry().titles("engines")}


# ---- the builtin engines' loaders (annotator.builtins registers them) ------------------------

def load_classical(checkpoint: str | Path | None = None, device: str = "auto", runtime: str = "auto",
                   **_options: Any) -> PromptEngine:
    from annotator.engine.classical import ClassicalEngine

    return ClassicalEngine()


def load_sam(checkpoint: str | Path | None = None, device: str = "auto", runtime: str = "auto",
             sam_flavour: str = "auto", **_options: Any) -> PromptEngine:
    if checkpoint is None:
        raise EngineError("the 'sam' engine needs a checkpoint (a SAM ViT-B/L/H or MedSAM .pth file)")
    from annotator.engine.sam_engine import SamEngine

    return SamEngine.load(checkpoint, device=device, flavour=sam_flavour, runtime=runtime)


def load_lite_medsam(checkpoint: str | Path | None = None, device: str = "auto", runtime: str = "auto",
                     **_options: Any) -> PromptEngine:
    return _lite_medsam_class().load(checkpoint=checkpoint, device=device, runtime=runtime)


def _lite_medsam_class() -> Any:
    module_name, class_name = LITE_MEDSAM_ENGINE.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def engine_for_checkpoint(path: str | Path) -> str:
    """The engine a checkpoint file is for: the first registry engine whose loader claims its state
    dict (`load.claims_checkpoint(state) -> bool`, what a plugin engine may offer), else "sam" for a
    segment-anything ViT layout, else "lite-medsam". The file is read weights-only, once."""
    from annotator.engine.checkpoints import load_state_dict
    from annotator.plugin_host.manager import PluginError, get_registry

    state = load_state_dict(path)
    registry = get_registry()
    for name in registry.titles("engines"):
        try:
            load = registry.get("engines", name)
        except (PluginError, ImportError, AttributeError):
            continue
        claims = getattr(load, "claims_checkpoint", None)
        if claims is not None and claims(state):
            return name
    return "sam" if _is_sam_vit_state(state) else "lite-medsam"


def _is_sam_vit_state(state: dict[str, Any]) -> bool:
    return "image_encoder.patch_embed.proj.weight" in state and "image_encoder.pos_embed" in state


def create_engine(name: str = "auto", checkpoint: str | Path | None = None, runtime: str = "auto",
                  device: str = "auto", *, sam_flavour: str = "auto", server: str | None = None) -> PromptEngine:
    """The engine called `name`:

    - "classical": weights-free region growing (annotator.engine.classical), always available.
    - "sam": a SAM ViT-B/L/H or MedSAM checkpoint (required); `runtime` as for lite-medsam
      (SamEngine.load). `sam_flavour` ("auto", "sam", "medsam") picks the preprocessing; "auto" =
      catalogue (SHA-256), else "medsam" when the file name contains "medsam", else "sam".
    - "lite-medsam": LiteMedSamEngine.load(checkpoint=None -> bundled weights, device, runtime).
    - "auto": a given checkpoint decides (engine_for_checkpoint: a plugin engine that claims it,
      "sam" for the ViT layout, else "lite-medsam"); without
      one, lite-medsam when torch works; the classical engine when torch or the model is
      unavailable (logged as a warning, so the app still opens and segments).
    Raises EngineError with a one-line reason for an explicit choice that cannot be honoured.
    """
    from annotator.plugin_host.manager import get_registry

    name = (name or "auto").lower()
    if server and name == "auto":
        name = "remote"  # a server address decides: its model runs there
    names = engine_names()
    if name not in names:
        raise EngineError(f"unknown engine {name!r}; expected one of {', '.join(names)}")
    if name == "auto":
        return _create_auto(checkpoint, runtime, device, sam_flavour)
    try:
        load = get_registry().get("engines", name)
    except (ImportError, AttributeError) as exc:
        raise EngineError(f"engine {name!r} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    return load(checkpoint=checkpoint, device=device, runtime=runtime, sam_flavour=sam_flavour, server=server)


def _create_auto(checkpoint: str | Path | None, runtime: str, device: str, sam_flavour: str) -> PromptEngine:
    from annotator.engine.classical import ClassicalEngine
    from annotator.engine.device import torch_usable

    if not torch_usable():
        if checkpoint is not None:
            raise EngineError(f"{checkpoint}: cannot use this checkpoint: torch is not usable on this machine")
        log.warning("torch is not usable here; using the classical (weights-free) engine")
        return ClassicalEngine()
    if checkpoint is not None:
        name = engine_for_checkpoint(checkpoint)
        return create_engine(name, checkpoint=checkpoint, runtime=runtime, device=device, sam_flavour=sam_flavour)
    try:
        return _lite_medsam_class().load(checkpoint=None, device=device, runtime=runtime)
    except (ImportError, EngineError, OSError) as exc:
        log.warning("LiteMedSAM unavailable (%s); using the classical (weights-free) engine", exc)
        return ClassicalEngine()
