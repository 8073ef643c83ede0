"""Runs model parts (image encoder, prompt path) on torch, ONNX Runtime or OpenVINO, chosen per machine.

Import-light: the runtimes themselves are imported inside the functions that use them. Entry
points: select.select_runner (generic), accelerate.accelerate (an engine's encoder and prompt path),
lite_medsam.accelerate_lite_medsam and sam.accelerate_sam (per model),
prompt_path.select_prompt_runner (prompt encoder + mask decoder), malloc.tune_malloc.
"""

from annotator.engine.runtime.base import ModelRunner, ModelSpec, runner_name

__all__ = ["ModelRunner", "ModelSpec", "runner_name"]
