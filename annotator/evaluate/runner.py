"""Run the evaluation protocol on one labelled volume with one engine and build the report dict
({"summary": {"all": S, "organs": S}, "items": [...]}; the fields are listed in docs/evaluate.md)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from annotator.core.geometry import PLANES, Window, apply_window, plane_array_axis
from annotator.core.volume import Volume
from annotator.engine import click_strategy, slice_segmentation
from annotator.engine.api import EmbeddingKey, ImageEmbedding, MaskPrediction, PromptEngine
from annotator.engine.embedding_cache import EmbeddingCache
from annotator.engine.input_window import candidate_windows
from annotator.engine.propagate import PropagationParams
from annotator.evaluate import protocol

log = logging.getLogger(__name__)

VARIANTS = ("plain", "refine", "app")
# (done, total, what) for the terminal's progress bar
EvalProgress = Callable[[int, int, str], None]


@dataclass
class EngineMeter:
    """Embeddings of the evaluation's slice images (each distinct 8-bit image encoded at most once:
    the reference window and the app's windows share a slice's embedding when they give the same
    image) and timings of every call. `cache`, when given, is an EmbeddingCache keyed by the image
    content (re-runs then skip the encoder; the counts show only what was encoded)."""

    engine: PromptEngine
    volume: Volume
    axis: int
    reference_u8: np.ndarray          # the protocol's windowed (z, y, x) uint8 volume
    cache: EmbeddingCache | None = None
    embeddings: dict[bytes, ImageEmbedding] = field(default_factory=dict)
    encoder_ms: dict[bytes, float] = field(default_factory=dict)
    decoder_ms: list[float] = field(default_factory=list)

    def reference_image(self, index: int) -> np.ndarray:
        return protocol.plane_slice(self.reference_u8, self.axis, index)

    def raw(self, index: int) -> np.ndarray:
        return protocol.plane_slice(self.volume.array, self.axis, index)

    def window_image(self, index: int, window: Window) -> np.ndarray:
        return apply_window(self.raw(index), window)

    def embedding(self, gray: np.ndarray) -> ImageEmbedding:
        digest = hashlib.sha256(np.ascontiguousarray(gray).tobytes() + str(gray.shape).encode()).digest()
        if digest not in self.embeddings:
            key = self._cache_key(digest)
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is None:
                start = time.perf_counter()
                hit = self.engine.embed(np.repeat(gray[:, :, None], 3, axis=2))
                self.encoder_ms[digest] = (time.perf_counter() - start) * 1000.0
                if self.cache is not None:
                    self.cache.put(key, hit)
            self.embeddings[digest] = hit
        return self.embeddings[digest]

    def _cache_key(self, digest: bytes) -> EmbeddingKey:
        return EmbeddingKey(content_id="u8-" + digest.hex(), plane="image", slice_index=0, window=(0.0, 255.0),
                            model_id=self.engine.model_id, model_sha256=self.engine.model_sha256,
                            preprocess_version=int(self.engine.preprocess_version),
                            runtime=getattr(self.engine, "runtime", "torch-fp32"))

    def predictor(self, gray: np.ndarray) -> Callable[..., MaskPrediction]:
        """engine.predict bound to the embedding of this 8-bit slice image."""
        return partial(self._predict, self.embedding(gray))

    def reference_predictor(self, index: int) -> Callable[..., MaskPrediction]:
        return self.predictor(self.reference_image(index))

    def predict_in(self, index: int) -> Callable[[Window], Callable[..., MaskPrediction]]:
        """slice_segmentation.PredictIn for slice `index`: the app's windows."""
        return lambda window: self.predictor(self.window_image(index, window))

    def image_in(self, index: int) -> Callable[[Window], np.ndarray]:
        return lambda window: self.window_image(index, window)

    def _predict(self, embedding: ImageEmbedding, **prompts: Any) -> MaskPrediction:
        prompts.setdefault("multimask", False)
        start = time.perf_counter()
        pred = self.engine.predict(embedding, **prompts)
        self.decoder_ms.append((time.perf_counter() - start) * 1000.0)
        return pred


def _run_reference_variant(predict: Callable[..., MaskPrediction], truth: np.ndarray, box: np.ndarray, first: MaskPrediction, variant: str,
                           max_clicks: int) -> dict:
    """`plain` / `refine`: the box, then every click so far sent to the model as SAM points (with
    the previous low-res logits for `refine`), in the protocol's fixed window: LiteMedSAM's own
    pipeline, kept exactly so parity with it stays provable."""
    mask = first.best_mask.astype(bool)
    logits = first.low_res_logits[first.best_index: first.best_index + 1]
    dices = [protocol.dice(mask, truth)]
    clicks: list[list[int]] = []
    for _ in range(max_clicks):
        click = protocol.next_click(mask, truth)
        if click is None:  # perfect: the remaining steps keep this Dice
            dices.append(dices[-1])
            continue
        x, y, positive = click
        clicks.append([x, y, int(positive)])
        pts = np.array([[c[0], c[1]] for c in clicks], dtype=np.float64)
        labels = np.array([c[2] for c in clicks], dtype=np.int64)
        pred = predict(box_xyxy=box, points_xy=pts, point_labels=labels,
                       mask_input=logits if variant == "refine" else None)
        mask = pred.best_mask.astype(bool)
        logits = pred.low_res_logits[pred.best_index: pred.best_index + 1]
        dices.append(protocol.dice(mask, truth))
    return {"dice": dices, "clicks_xy_label": clicks}


def app_candidates(meter: EngineMeter, index: int, box: np.ndarray) -> list[Window]:
    return candidate_windows(meter.volume, meter.raw(index), box)


def app_first_prompt(meter: EngineMeter, index: int, box: np.ndarray, prompt_kind: str) -> slice_segmentation.SliceOutcome:
    """What the app does with a box on slice `index`: window chosen per prompt, then the model."""
    return slice_segmentation.first_prompt(meter.predict_in(index), prompt_kind, meter.raw(index).shape,
                                           app_candidates(meter, index, box), box_xyxy=box)


def _run_app_variant(meter: EngineMeter, index: int, truth: np.ndarray, box: np.ndarray, max_clicks: int,
                     prompt_kind: str) -> dict:
    """`app`: the app's first prompt (input window chosen for the box), then the click strategy in
    that window, as the window runs them (engine.slice_segmentation)."""
    current = app_first_prompt(meter, index, box, prompt_kind)
    dices = [protocol.dice(current.mask, truth)]
    shapes = [mask_pieces_and_holes(current.mask)]
    clicks: list[list[int]] = []
    for _ in range(max_clicks):
        click = protocol.next_click(current.mask, truth)
        if click is None:
            dices.append(dices[-1])
            shapes.append(shapes[-1])
            continue
        x, y, positive = click
        clicks.append([x, y, int(positive)])
        current = slice_segmentation.add_click(meter.predict_in(index), prompt_kind, current,
                                               click_strategy.Click(x, y, positive), meter.image_in(index))
        dices.append(protocol.dice(current.mask, truth))
        shapes.append(mask_pieces_and_holes(current.mask))
    return {"dice": dices, "clicks_xy_label": clicks, "window": list(current.window.key()),
            "windows_tried": [list(w.key()) for w in app_candidates(meter, index, box)],
            "extra_pieces": [p for p, _ in shapes], "holes": [h for _, h in shapes]}


def mask_pieces_and_holes(mask: np.ndarray) -> tuple[int, int]:
    """(pieces beside the largest, enclosed holes) of a slice mask, as postprocess.findings counts
    them for a label: what a reviewer sees as crumbs and pinholes, which Dice hardly weighs."""
    from annotator.postprocess.findings import label_stats

    stats = label_stats(np.asarray(mask, dtype=np.uint8), (1.0, 1.0), [1])[0]
    return stats.islands, stats.holes


def _variant_summary(items: list[dict], variant: str, max_clicks: int) -> dict:
    per_step = np.array([it[variant]["dice"] for it in items], dtype=np.float64)
    return {
        "mean_dice_final": float(per_step[:, -1].mean()),
        "mean_dice_per_step": [float(v) for v in per_step.mean(axis=0)],
        "noc85": float(np.mean([protocol.clicks_to_reach(it[variant]["dice"], 0.85, max_clicks) for it in items])),
        "noc90": float(np.mean([protocol.clicks_to_reach(it[variant]["dice"], 0.90, max_clicks) for it in items])),
    }


def _propagation_summary(items: list[dict], calls: dict | None) -> dict:
    entries = [it["propagate"] for it in items if "propagate" in it]
    if not entries:
        return {"n_items": 0, "mean_dice_3d": None, **(calls or {})}
    steps = np.array([e["corrections"] for e in entries], dtype=np.float64)
    stop_errors = [d for e in entries for d in e["stop_error_slices"].values() if d is not None]
    k = steps.shape[1] - 1
    return {
        "n_items": len(entries),
        "mean_dice_3d": float(steps[:, 0].mean()),
        "corrections": [float(v) for v in steps.mean(axis=0)],
        "noc85_3d": float(np.mean([protocol.clicks_to_reach(e["corrections"], 0.85, k) for e in entries])),
        "noc90_3d": float(np.mean([protocol.clicks_to_reach(e["corrections"], 0.90, k) for e in entries])),
        "stops_within_3_slices": float(np.mean([d <= 3 for d in stop_errors])) if stop_errors else None,
        "stop_error_slices": sorted(stop_errors),
        # encoder calls of one structure's first propagation with an empty cache (mean per item)
        "mean_slices_embedded": float(np.mean([e.get("slices_embedded", [0])[0] for e in entries])),
        **(calls or {}),
    }


def summarise(items: list[dict], max_clicks: int, propagate: bool, propagate_calls: dict | None = None) -> dict:
    """S of the JSON schema for a group of items."""
    if not items:
        return {"n_items": 0}
    decoder_calls = sum(it["decoder_calls"] for it in items)
    summary: dict[str, Any] = {
        "n_items": len(items),
        "mean_dice_box": float(np.mean([it["plain"]["dice"][0] for it in items])),
        **{v: _variant_summary(items, v, max_clicks) for v in VARIANTS},
        # the labelled masks' own, to read the app's against
        "truth_mean_extra_pieces": float(np.mean([it["truth_extra_pieces"] for it in items])),
        "truth_mean_holes": float(np.mean([it["truth_holes"] for it in items])),
        "mean_encoder_ms": float(sum(it["encoder_ms"] for it in items) / max(1, sum(it["encoder_calls"] for it in items))),
        "mean_decoder_ms": float(sum(it["decoder_ms"] for it in items) / max(1, decoder_calls)),
        "encoder_calls": int(sum(it["encoder_calls"] for it in items)),
        "decoder_calls": int(decoder_calls),
    }
    for key in ("extra_pieces", "holes"):  # the app's masks only: the reference rows stay as they were
        summary["app"][f"mean_{key}_per_step"] = [float(v) for v in np.mean([it["app"][key] for it in items], axis=0)]
    if propagate:
        summary["propagate"] = _propagation_summary(items, propagate_calls)
        summary["corrections"] = summary["propagate"].get("corrections")
    return summary


def evaluate_volume(volume: Volume, labels_zyx: np.ndarray, names: dict[int, str], engine: PromptEngine, *,
                    plane: str = "axial", max_clicks: int = 5, propagate: bool = False, corrections: int = 5,
                    progress: EvalProgress | None = None, cache: EmbeddingCache | None = None,
                    propagation_params: PropagationParams | None = None) -> dict:
    """The full report for one labelled volume (see module docstring)."""
    array_zyx = volume.array
    if array_zyx.shape != labels_zyx.shape:
        raise ValueError(f"image grid {array_zyx.shape} and label grid {labels_zyx.shape} differ")
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {', '.join(PLANES)}, got {plane!r}")
    axis = plane_array_axis(volume, plane)  # from the direction matrix, as the window's views
    slices_u8, window = protocol.windowed_volume_u8(array_zyx, volume.modality)
    meter = EngineMeter(engine, volume, axis, slices_u8, cache)
    items, skipped = protocol.select_items(labels_zyx, names, axis, plane)
    prompt_kind = getattr(engine, "prompt_kind", "points")
    total = len(items) + (sum(1 for it in items if it.organ) if propagate else 0)
    reports = []
    for n, item in enumerate(items):
        if progress is not None:
            progress(n, total, f"{item.name} (slice {item.slice_index})")
        truth = protocol.plane_slice(labels_zyx, axis, item.slice_index) == item.label
        box = protocol.tight_box_xyxy(truth)
        calls_before, ms_before = len(meter.decoder_ms), sum(meter.decoder_ms)
        encoder_before = set(meter.encoder_ms)
        predict = meter.reference_predictor(item.slice_index)
        first = predict(box_xyxy=box.astype(np.float64))
        report = {
            "label": item.label, "name": item.name, "plane": plane, "slice": item.slice_index,
            "pixels": item.pixels, "organ": item.organ, "box_xyxy": [int(v) for v in box],
            "slice_shape": list(truth.shape),
        }
        report["truth_extra_pieces"], report["truth_holes"] = mask_pieces_and_holes(truth)
        for variant in ("plain", "refine"):
            report[variant] = _run_reference_variant(predict, truth, box, first, variant, max_clicks)
        report["app"] = _run_app_variant(meter, item.slice_index, truth, box.astype(np.float64), max_clicks,
                                         prompt_kind)
        new = [d for d in meter.encoder_ms if d not in encoder_before]
        report["encoder_calls"] = len(new)
        report["encoder_ms"] = float(sum(meter.encoder_ms[d] for d in new))  # total of this item's new ones
        report["decoder_ms"] = sum(meter.decoder_ms) - ms_before
        report["decoder_calls"] = len(meter.decoder_ms) - calls_before
        reports.append(report)
    propagate_calls = None
    if propagate:
        from annotator.evaluate.propagation import evaluate_propagation

        encoder_count, decoder_count = len(meter.encoder_ms), len(meter.decoder_ms)
        done = len(items)
        for item, report in zip(items, reports, strict=True):
            if not item.organ:
                continue
            if progress is not None:
                progress(done, total, f"propagate {item.name}")
            done += 1
            report["propagate"] = evaluate_propagation(meter, labels_zyx, item, axis, params=propagation_params,
                                                       corrections=corrections)
        # Slice images embedded for propagation only (the items' slices were embedded already), all
        # runs sharing them.
        propagate_calls = {"encoder_calls": len(meter.encoder_ms) - encoder_count,
                           "decoder_calls": len(meter.decoder_ms) - decoder_count}
    if progress is not None:
        progress(total, total, "done")
    organs = [r for r in reports if r["organ"]]
    return {
        "summary": {"all": summarise(reports, max_clicks, propagate, propagate_calls),
                    "organs": summarise(organs, max_clicks, propagate, propagate_calls)},
        "items": reports,
        "skipped": skipped,
        "protocol": {"plane": plane, "axis": axis, "max_clicks": max_clicks, "corrections": corrections,
                     "min_pixels": protocol.MIN_ITEM_PIXELS, "window": list(window)},
        "model": {"model_id": engine.model_id, "model_sha256": engine.model_sha256,
                  "runtime": getattr(engine, "runtime", ""), "device": getattr(engine, "device", ""),
                  "prompt_kind": prompt_kind},
    }
