"""The prompt path (prompt encoder + mask decoder) on ONNX Runtime/OpenVINO, with multimask on and off.

segment-anything's SamOnnxModel picks the best of the multimask outputs for box and one-point
prompts, so it cannot do multimask off as asked; and it upsamples inside the graph, where the
exporter freezes the crop size (torch 2.13). Our graph returns the low-res logits and IoU of
all mask tokens; the caller slices them exactly as MaskDecoder.forward does (token 0 for
multimask off, tokens 1.. for on) and crops/upsamples outside the graph.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from annotator.core.overlap import dice
from annotator.engine.runtime.base import ModelRunner, ModelSpec, runner_name
from annotator.engine.runtime.compiled_cache import CompiledModelCache

log = logging.getLogger(__name__)
# Point label meanings in the graph (SamOnnxModel's convention): -1 padding point, 0 negative,
# 1 positive, 2 box top-left, 3 box bottom-right.
PAD_LABEL, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT = -1, 2, 3


def prompt_path_module(prompt_encoder: Any, mask_decoder: Any) -> Any:
    """A torch module: (features, point_coords, point_labels, mask_input, has_mask_input) ->
    (low_res_logits (1, T, h, w), iou (1, T)) over all T mask tokens. Coordinates are in the
    model's input frame (already resized), shape (1, N, 2); labels (1, N) as above."""
    import torch

    class PromptPath(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.prompt_encoder = prompt_encoder
            self.mask_decoder = mask_decoder

        def forward(self, image_embeddings: Any, point_coords: Any, point_labels: Any, mask_input: Any,
                    has_mask_input: Any) -> Any:
            pe = self.prompt_encoder
            # PromptEncoder._embed_points/_embed_boxes: shift to pixel centres, normalise by the
            # input size (x by width, y by height), random-Fourier encode, add the label's embedding.
            height, width = pe.input_image_size
            coords = point_coords + 0.5
            coords = torch.stack([coords[..., 0] / width, coords[..., 1] / height], dim=-1)
            sparse = pe.pe_layer._pe_encoding(coords)
            labels = point_labels.unsqueeze(-1)
            sparse = sparse * (labels != PAD_LABEL) + pe.not_a_point_embed.weight * (labels == PAD_LABEL)
            for i in range(pe.num_point_embeddings):
                sparse = sparse + pe.point_embeddings[i].weight * (labels == i)
            dense = has_mask_input * pe.mask_downscaling(mask_input) + (
                1 - has_mask_input) * pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
            return self.predict_masks(image_embeddings, pe.get_dense_pe(), sparse, dense)

        def predict_masks(self, image_embeddings: Any, image_pe: Any, sparse: Any, dense: Any) -> Any:
            # MaskDecoder.predict_masks for one prompt set, written for the exported graph: no
            # repeat_interleave over a batch of one (two Tile copies of 4 MB) and LayerNorm2d as
            # one fused LayerNormalization over channels instead of ReduceMean/Sub/Pow/Sqrt/Div
            # (bench/encoder_speed.py, prompt path). Equal to MaskDecoder's to float rounding (tested).
            decoder = self.mask_decoder
            output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
            tokens = torch.cat((output_tokens.unsqueeze(0), sparse), dim=1)
            src = image_embeddings + dense
            b, c, h, w = src.shape
            hs, src = decoder.transformer(src, image_pe, tokens)
            iou_token_out = hs[:, 0, :]
            mask_tokens_out = hs[:, 1: (1 + decoder.num_mask_tokens), :]
            upscaled = _upscale(decoder.output_upscaling, src.transpose(1, 2).reshape(b, c, h, w))
            hyper_in = torch.stack([mlp(mask_tokens_out[:, i, :])
                                    for i, mlp in enumerate(decoder.output_hypernetworks_mlps)], dim=1)
            b, c, h, w = upscaled.shape
            masks = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
            return masks, decoder.iou_prediction_head(iou_token_out)

    return PromptPath().eval()


def _upscale(layers: Any, x: Any) -> Any:
    """output_upscaling (ConvT, LayerNorm2d, act, ConvT, act) with LayerNorm2d as F.layer_norm."""
    import torch.nn.functional as F

    for layer in layers:
        if type(layer).__name__ == "LayerNorm2d":
            x = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), layer.weight, layer.bias,
                             layer.eps).permute(0, 3, 1, 2)
        else:
            x = layer(x)
    return x


def prompt_arrays(points_xy: np.ndarray | None, point_labels: np.ndarray | None,
                  box_xyxy: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(1, N, 2) float32 coords and (1, N) float32 labels in the order PromptEncoder uses:
    points first, then the box corners; a padding point only when there is no box."""
    coords, labels = [], []
    if points_xy is not None and len(points_xy):
        coords.append(np.asarray(points_xy, dtype=np.float32).reshape(-1, 2))
        labels.append(np.asarray(point_labels if point_labels is not None else np.ones(len(coords[0])),
                                 dtype=np.float32).reshape(-1))
    if box_xyxy is not None:
        coords.append(np.asarray(box_xyxy, dtype=np.float32).reshape(2, 2))
        labels.append(np.array([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], dtype=np.float32))
    else:
        coords.append(np.zeros((1, 2), dtype=np.float32))
        labels.append(np.array([PAD_LABEL], dtype=np.float32))
    return np.concatenate(coords)[None], np.concatenate(labels)[None]


@dataclass
class PromptRunner:
    """Runs the prompt path on one runner; predict() mirrors MaskDecoder.forward's outputs."""

    runner: ModelRunner
    mask_input_hw: tuple[int, int]

    @property
    def name(self) -> str:
        return self.runner.name

    def predict(self, features: np.ndarray, *, points_xy: np.ndarray | None = None,
                point_labels: np.ndarray | None = None, box_xyxy: np.ndarray | None = None,
                mask_input: np.ndarray | None = None, multimask: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
        """(1, C, h, w) low-res logits and (1, C) IoU; prompts in the model's input frame."""
        coords, labels = prompt_arrays(points_xy, point_labels, box_xyxy)
        if mask_input is None:
            mask = np.zeros((1, 1, *self.mask_input_hw), dtype=np.float32)
            has_mask = np.zeros(1, dtype=np.float32)
        else:
            mask = np.asarray(mask_input, dtype=np.float32).reshape(1, 1, *self.mask_input_hw)
            has_mask = np.ones(1, dtype=np.float32)
        logits, iou = self.runner(np.asarray(features, dtype=np.float32), coords, labels, mask, has_mask)
        tokens = slice(1, None) if multimask else slice(0, 1)
        return logits[:, tokens], iou[:, tokens]


class TorchPromptReference:
    """The prompt path through segment-anything's own PromptEncoder.forward and MaskDecoder.forward
    (not our export wrapper): what every other runner is checked against."""

    name = "torch-fp32"

    def __init__(self, prompt_encoder: Any, mask_decoder: Any) -> None:
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder

    def predict(self, features: np.ndarray, *, points_xy: np.ndarray | None = None,
                point_labels: np.ndarray | None = None, box_xyxy: np.ndarray | None = None,
                mask_input: np.ndarray | None = None, multimask: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.inference_mode():
            points = None
            if points_xy is not None and len(points_xy):
                labels = point_labels if point_labels is not None else np.ones(len(points_xy))
                points = (torch.as_tensor(np.asarray(points_xy, dtype=np.float32).reshape(1, -1, 2)),
                          torch.as_tensor(np.asarray(labels).reshape(1, -1), dtype=torch.int64))
            boxes = None if box_xyxy is None else torch.as_tensor(
                np.asarray(box_xyxy, dtype=np.float32).reshape(1, 1, 4))
            masks = None if mask_input is None else torch.as_tensor(
                np.asarray(mask_input, dtype=np.float32).reshape(1, 1, *np.shape(mask_input)[-2:]))
            sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=masks)
            logits, iou = self.mask_decoder(
                image_embeddings=torch.from_numpy(np.asarray(features, dtype=np.float32)),
                image_pe=self.prompt_encoder.get_dense_pe(), sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense, multimask_output=multimask)
        return logits.float().numpy(), iou.float().numpy()


def prompt_spec(prompt_encoder: Any, mask_decoder: Any, *, part: str, model_sha256: str,
                embedding_shape: tuple[int, ...]) -> ModelSpec:
    """Export spec of the prompt path; the number of points is dynamic."""
    mask_hw = tuple(4 * int(n) for n in prompt_encoder.image_embedding_size)
    coords, labels = prompt_arrays(np.array([[10.0, 20.0]]), np.array([1]), np.array([5.0, 6.0, 50.0, 60.0]))
    example = (np.zeros(embedding_shape, dtype=np.float32), coords, labels,
               np.zeros((1, 1, *mask_hw), dtype=np.float32), np.ones(1, dtype=np.float32))
    return ModelSpec(module=prompt_path_module(prompt_encoder, mask_decoder), part=part,
                     model_sha256=model_sha256, example_inputs=example,
                     input_names=("image_embeddings", "point_coords", "point_labels", "mask_input",
                                  "has_mask_input"),
                     output_names=("low_res_logits", "iou_predictions"),
                     dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
                     export_version=2)  # 2: own predict_masks (no Tile, fused LayerNorm)


def _check_cases(spec: ModelSpec, seed: int = 0) -> list[dict]:
    """Prompt sets covering box, points, box + points and mask_input, on fixed random features."""
    rng = np.random.default_rng(seed)
    features = rng.normal(0, 1, spec.example_inputs[0].shape).astype(np.float32)
    size = 4 * spec.example_inputs[0].shape[-1]
    low_res = rng.normal(0, 4, (1, *spec.example_inputs[3].shape[-2:])).astype(np.float32)
    box = np.array([0.2, 0.25, 0.7, 0.8]) * size
    points = np.array([[0.4, 0.5], [0.6, 0.3]]) * size
    return [dict(features=features, box_xyxy=box),
            dict(features=features, points_xy=points[:1], point_labels=np.array([1])),
            dict(features=features, points_xy=points, point_labels=np.array([1, 0]), box_xyxy=box),
            dict(features=features, box_xyxy=box, mask_input=low_res)]


def check_prompt_runner(candidate: Any, reference: Any, cases: list[dict]
                        ) -> tuple[bool, float, float]:
    """(passes, min mask Dice, max |logit difference|) of candidate against reference, multimask on+off."""
    worst_dice, worst_diff = 1.0, 0.0
    for case in cases:
        for multimask in (False, True):
            ref_logits, ref_iou = reference.predict(**case, multimask=multimask)
            logits, iou = candidate.predict(**case, multimask=multimask)
            worst_diff = max(worst_diff, float(np.abs(logits - ref_logits).max()),
                             float(np.abs(iou - ref_iou).max()))
            worst_dice = min(worst_dice, dice(logits > 0, ref_logits > 0))
    return worst_dice >= 0.999 and worst_diff <= 1e-2, worst_dice, worst_diff


def _decision_key(spec: ModelSpec, variants: list[str]) -> str:
    """Key of the stored prompt-path choice: model, shapes, candidates, machine, runtime versions."""
    import hashlib
    import json

    import torch

    from annotator.engine.runtime.cpu import machine_signature
    from annotator.engine.runtime.onnx_runner import onnxruntime_version
    from annotator.engine.runtime.openvino_runner import openvino_version

    payload = {"v": 1, "check": "prompt-cases-v1", "part": spec.part, "sha": spec.model_sha256,
               "shapes": spec.input_shapes(), "export": spec.export_version, "variants": variants,
               "machine": machine_signature(), "torch": torch.__version__,
               "onnxruntime": onnxruntime_version(), "openvino": openvino_version()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=list).encode()).hexdigest()


def select_prompt_runner(prompt_encoder: Any, mask_decoder: Any, *, part: str, model_sha256: str,
                         embedding_shape: tuple[int, ...], runtime: str = "auto",
                         cache: CompiledModelCache | None = None) -> PromptRunner:
    """The fastest prompt-path runner whose masks match torch's (fp32 only: clicks must not drift).

    Cheap enough to time every candidate (a few ms each); runtime forces one as in select_runner.
    The choice is stored like the encoder's, so later starts load it without checking again.
    """
    from annotator.engine.runtime.select import (
        _read_decision,
        _write_decision,
        build_runner,
        installed_runtimes,
    )

    cache = cache or CompiledModelCache()
    spec = prompt_spec(prompt_encoder, mask_decoder, part=part, model_sha256=model_sha256,
                       embedding_shape=embedding_shape)
    mask_hw = tuple(spec.example_inputs[3].shape[-2:])
    reference = TorchPromptReference(prompt_encoder, mask_decoder)
    installed = installed_runtimes()
    variants = [v for v in ("onnxruntime-fp32", "openvino-fp32", "torch-fp32")
                if v.split("-")[0] in installed and (runtime == "auto" or v.startswith(runtime + "-"))]
    if not variants:
        raise ValueError(f"prompt path: runtime {runtime!r} is not installed or unknown")
    key = _decision_key(spec, variants)
    decided = _read_decision(cache, key)
    if decided in variants:
        try:
            return PromptRunner(build_runner(decided, spec, cache), mask_hw)
        except Exception as exc:  # noqa: BLE001 - a stored choice that no longer loads is re-checked
            log.warning("%s: stored runtime choice %s failed (%s); checking again", part, decided, exc)
    cases = _check_cases(spec)
    timings: dict[str, float] = {}
    runners: dict[str, PromptRunner] = {}
    for variant in variants:
        try:
            candidate = PromptRunner(build_runner(variant, spec, cache), mask_hw)
            passed, min_dice, diff = check_prompt_runner(candidate, reference, cases)
        except Exception as exc:  # noqa: BLE001 - a runtime that cannot run this graph is skipped
            log.warning("%s: %s unavailable (%s: %s)", part, variant, type(exc).__name__, exc)
            continue
        if not passed:
            log.warning("%s: %s disagrees with torch (min Dice %.4f, max diff %.2g); not used",
                        part, variant, min_dice, diff)
            continue
        times = []
        for _ in range(5):
            start = time.perf_counter()
            candidate.predict(**cases[2])
            times.append(time.perf_counter() - start)
        timings[variant] = statistics.median(times)
        runners[variant] = candidate
    if not runners:
        raise ValueError(f"prompt path: no runner of {variants} matches torch")  # not even torch: a bug
    chosen = min(timings, key=timings.__getitem__)
    _write_decision(cache, key, chosen, [])
    log.info("%s runs on %s (%s)", part, chosen,
             ", ".join(f"{v} {1000 * t:.1f} ms" for v, t in timings.items()))
    return runners[chosen]


__all__ = ["PromptRunner", "TorchPromptReference", "prompt_arrays", "prompt_path_module", "runner_name", "select_prompt_runner"]
