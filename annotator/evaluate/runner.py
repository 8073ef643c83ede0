"""Run the evaluation protocol on one labelled volume with one engine and build the report dict
(the JSON schema of issue 7: {"summary": {"all": S, "organs": S}, "items": [...]})."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from annotator.engine import click_strategy
from annotator.engine.api import ImageEmbedding, MaskPrediction, PromptEngine
from annotator.evaluate import protocol

log = logging.getLogger(__name__)

VARIANTS = ("plain", "refine", "app")
# (done, total, what) for the terminal's progress bar
EvalProgress = Callable[[int, int, str], None]


@dataclass
class EngineMeter:
    """Embeddings of the evaluation's slices (each encoded at most once) and timings of every call."""

    engine: PromptEngine
    slices_u8: np.ndarray            # windowed (z, y, x) uint8 volume
    axis: int
    embeddings: dict[int, ImageEmbedding] = field(default_factory=dict)
    encoder_ms: dict[int, float] = field(default_factory=dict)
    decoder_ms: list[float] = field(default_factory=list)

    def image(self, index: int) -> np.ndarray:
        return protocol.plane_slice(self.slices_u8, self.axis, index)

    def embedding(self, index: int) -> ImageEmbedding:
        if index not in self.embeddings:
            gray = self.image(index)
            start = time.perf_counter()
            self.embeddings[index] = self.engine.embed(np.repeat(gray[:, :, None], 3, axis=2))
            self.encoder_ms[index] = (time.perf_counter() - start) * 1000.0
        return self.embeddings[index]

    def predictor(self, index: int) -> Callable[..., MaskPrediction]:
        return partial(self._predict, self.embedding(index))

    def _predict(self, embedding: ImageEmbedding, **prompts) -> MaskPrediction:
        prompts.setdefault("multimask", False)
        start = time.perf_counter()
        pred = self.engine.predict(embedding, **prompts)
        self.decoder_ms.append((time.perf_counter() - start) * 1000.0)
        return pred


def _run_variant(predict, truth: np.ndarray, box: np.ndarray, first: MaskPrediction, variant: str,
                 max_clicks: int, image_hw: np.ndarray, prompt_kind: str) -> dict:
    """Dice after the box and after each simulated click for one variant."""
    mask = first.best_mask.astype(bool)
    logits = first.low_res_logits[first.best_index: first.best_index + 1]
    outcome = click_strategy.ClickOutcome(mask, box.astype(np.float64), (), logits, 1)
    dices = [protocol.dice(mask, truth)]
    clicks: list[list[int]] = []
    for _ in range(max_clicks):
        click = protocol.next_click(mask, truth)
        if click is None:  # perfect: the remaining steps keep this Dice
            dices.append(dices[-1])
            continue
        x, y, positive = click
        clicks.append([x, y, int(positive)])
        if variant == "app":
            outcome = click_strategy.add_click(predict, prompt_kind, outcome,
                                               click_strategy.Click(x, y, positive), image_hw)
            mask = outcome.mask
        else:
            pts = np.array([[c[0], c[1]] for c in clicks], dtype=np.float64)
            labels = np.array([c[2] for c in clicks], dtype=np.int64)
            pred = predict(box_xyxy=box, points_xy=pts, point_labels=labels,
                           mask_input=logits if variant == "refine" else None)
            mask = pred.best_mask.astype(bool)
            logits = pred.low_res_logits[pred.best_index: pred.best_index + 1]
        dices.append(protocol.dice(mask, truth))
    return {"dice": dices, "clicks_xy_label": clicks}


def _variant_summary(items: list[dict], variant: str, max_clicks: int) -> dict:
    per_step = np.array([it[variant]["dice"] for it in items], dtype=np.float64)
    return {
        "mean_dice_final": float(per_step[:, -1].mean()),
        "mean_dice_per_step": [float(v) for v in per_step.mean(axis=0)],
        "noc85": float(np.mean([protocol.clicks_to_reach(it[variant]["dice"], 0.85, max_clicks) for it in items])),
        "noc90": float(np.mean([protocol.clicks_to_reach(it[variant]["dice"], 0.90, max_clicks) for it in items])),
    }


def summarise(items: list[dict], max_clicks: int, propagate: bool, propagate_calls: dict | None = None) -> dict:
    """S of the JSON schema for a group of items."""
    if not items:
        return {"n_items": 0}
    slices = {it["slice"]: it["encoder_ms"] for it in items}
    summary = {
        "n_items": len(items),
        "mean_dice_box": float(np.mean([it["plain"]["dice"][0] for it in items])),
        **{v: _variant_summary(items, v, max_clicks) for v in VARIANTS},
        "mean_encoder_ms": float(np.mean(list(slices.values()))),
        "mean_decoder_ms": float(sum(it["decoder_ms"] for it in items) / max(1, sum(it["decoder_calls"] for it in items))),
        "encoder_calls": len(slices),
        "decoder_calls": int(sum(it["decoder_calls"] for it in items)),
    }
    if propagate:
        with_3d = [it["propagate"]["dice_3d"] for it in items if "propagate" in it]
        summary["propagate"] = {"n_items": len(with_3d),
                                "mean_dice_3d": float(np.mean(with_3d)) if with_3d else None,
                                **(propagate_calls or {})}
    return summary


def evaluate_volume(array_zyx: np.ndarray, labels_zyx: np.ndarray, names: dict[int, str], engine: PromptEngine, *,
                    modality: str = "", plane: str = "axial", max_clicks: int = 5, propagate: bool = False,
                    progress: EvalProgress | None = None, meter: EngineMeter | None = None) -> dict:
    """The full report for one labelled volume (see module docstring)."""
    if array_zyx.shape != labels_zyx.shape:
        raise ValueError(f"image grid {array_zyx.shape} and label grid {labels_zyx.shape} differ")
    if plane not in protocol.PLANE_AXIS:
        raise ValueError(f"plane must be one of {sorted(protocol.PLANE_AXIS)}, got {plane!r}")
    axis = protocol.PLANE_AXIS[plane]
    slices_u8, window = protocol.windowed_volume_u8(array_zyx, modality)
    if meter is None:
        meter = EngineMeter(engine, slices_u8, axis)
    items, skipped = protocol.select_items(labels_zyx, names, plane)
    prompt_kind = getattr(engine, "prompt_kind", "points")
    total = len(items) + (sum(1 for it in items if it.organ) if propagate else 0)
    reports = []
    for n, item in enumerate(items):
        if progress is not None:
            progress(n, total, f"{item.name} (slice {item.slice_index})")
        truth = protocol.plane_slice(labels_zyx, axis, item.slice_index) == item.label
        box = protocol.tight_box_xyxy(truth)
        calls_before, ms_before = len(meter.decoder_ms), sum(meter.decoder_ms)
        predict = meter.predictor(item.slice_index)
        first = predict(box_xyxy=box.astype(np.float64))
        image = meter.image(item.slice_index)
        report = {
            "label": item.label, "name": item.name, "plane": plane, "slice": item.slice_index,
            "pixels": item.pixels, "organ": item.organ, "box_xyxy": [int(v) for v in box],
            "slice_shape": list(truth.shape),
        }
        for variant in VARIANTS:
            report[variant] = _run_variant(predict, truth, box, first, variant, max_clicks, image, prompt_kind)
        report["encoder_ms"] = meter.encoder_ms.get(item.slice_index, 0.0)
        report["decoder_ms"] = sum(meter.decoder_ms) - ms_before
        report["decoder_calls"] = len(meter.decoder_ms) - calls_before
        reports.append(report)
    propagate_calls = None
    if propagate:
        from annotator.evaluate.propagation import evaluate_propagation

        encoder_before, decoder_before = len(meter.encoder_ms), len(meter.decoder_ms)
        done = len(items)
        for item, report in zip(items, reports, strict=True):
            if not item.organ:
                continue
            if progress is not None:
                progress(done, total, f"propagate {item.name}")
            done += 1
            report["propagate"] = evaluate_propagation(meter, labels_zyx, item, axis)
        # Slices embedded for propagation only (the items' slices were embedded already), all
        # propagation runs sharing them.
        propagate_calls = {"encoder_calls": len(meter.encoder_ms) - encoder_before,
                           "decoder_calls": len(meter.decoder_ms) - decoder_before}
    if progress is not None:
        progress(total, total, "done")
    organs = [r for r in reports if r["organ"]]
    return {
        "summary": {"all": summarise(reports, max_clicks, propagate, propagate_calls),
                    "organs": summarise(organs, max_clicks, propagate, propagate_calls)},
        "items": reports,
        "skipped": skipped,
        "protocol": {"plane": plane, "axis": axis, "max_clicks": max_clicks,
                     "min_pixels": protocol.MIN_ITEM_PIXELS, "window": list(window)},
        "model": {"model_id": engine.model_id, "model_sha256": engine.model_sha256,
                  "runtime": getattr(engine, "runtime", ""), "device": getattr(engine, "device", ""),
                  "prompt_kind": prompt_kind},
    }
