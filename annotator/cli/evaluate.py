"""`annotator evaluate IMAGE LABELS`: measure a prompt engine on a labelled scan with a simulated user
(box, then corrective clicks; optionally 3-D propagation) before trusting it on your own data.

The protocol is fixed so results compare across tools and versions (see annotator/evaluate/protocol.py).
Exit codes: 0 evaluated; 2 bad input or usage; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from annotator.cli.options import read_label_names
from annotator.core.errors import InputError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="simulate box + clicks (and propagation) on a labelled scan; Dice, NoC85/90",
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes: 0 evaluated, 2 bad input or usage, 130 interrupted")
    parser.add_argument("image", metavar="IMAGE", help="image file or DICOM folder")
    parser.add_argument("labels", metavar="LABELS", help="label map on the image's grid (any orientation)")
    parser.add_argument("--labels-table", metavar="JSON", help="label names ({'1': 'liver', ...} or {'labels': {...}})")
    parser.add_argument("--model", default="lite-medsam",
                        help="engine name (lite-medsam, sam, classical, auto) or a checkpoint file")
    parser.add_argument("--server", metavar="URL",
                        help="run the model on this `annotator serve` (its model, device and runtime; token from "
                             "ANNOTATOR_SERVER_TOKEN or the token file); --model, --device, --runtime then do not apply")
    parser.add_argument("--plane", choices=("axial", "coronal", "sagittal"), default="axial")
    parser.add_argument("--max-clicks", type=int, default=5, metavar="K", help="corrective clicks per item (default 5)")
    parser.add_argument("--propagate", action="store_true",
                        help="also propagate each organ in 3-D from its box, then correct it --corrections times")
    parser.add_argument("--corrections", type=int, default=5, metavar="K",
                        help="with --propagate: corrective boxes on the worst slice, each followed by "
                             "re-propagation between the keys (default 5)")
    parser.add_argument("--embedding-cache", action="store_true",
                        help="reuse (and fill) the app's on-disk embedding cache: re-runs skip the encoder, "
                             "so the encoder counts and times show only what was encoded this time")
    parser.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    parser.add_argument("--runtime", default="auto",
                        help="auto (what the app uses: the fastest that passes its check), torch (the fp32 "
                             "reference), onnxruntime, openvino, or an exact variant such as openvino-bf16mix")
    parser.add_argument("--series-uid", help="DICOM SeriesInstanceUID when IMAGE is a folder with several series")
    parser.add_argument("--json", metavar="OUT", help="write the full report as JSON")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    parser.set_defaults(func=run)


def _label_names(path: str | None, fallback: dict[int, str]) -> dict[int, str]:
    table = read_label_names(path)
    return fallback if table is None else {label.id: label.name for label in table}


def _engine(model: str, device: str, runtime: str, server: str | None = None) -> Any:
    from annotator.engine.api import EngineError
    from annotator.engine.factory import create_engine, engine_names

    if server:
        try:
            return create_engine("remote", server=server)
        except EngineError as exc:
            raise InputError(server, str(exc)) from None
    try:
        if model in engine_names():
            return create_engine(model, device=device, runtime=runtime)
        if not Path(model).is_file():
            raise InputError(model, f"not an engine name ({', '.join(engine_names())}) nor a checkpoint file")
        return create_engine("auto", checkpoint=model, device=device, runtime=runtime)
    except EngineError as exc:
        raise InputError(model, str(exc)) from None


def format_table(report: dict) -> str:
    """The terminal table: one row per item, then the summaries."""
    lines = []
    k = len(report["items"][0]["plain"]["dice"]) - 1 if report["items"] else 0
    propagate = any("propagate" in it for it in report["items"])
    corrections = report.get("protocol", {}).get("corrections", 0)
    head = (f"{'label':>5}  {'name':<28} {'slice':>5} {'pixels':>6}  {'box':>5}  {'plain':>5}  {'refine':>6}  "
            f"{'app1':>5}  {'app':>5}")
    lines.append(head + (f"  {'3D':>6}  {f'3D+{corrections}':>6}" if propagate else ""))
    for it in report["items"]:
        row = (f"{it['label']:>5}  {it['name'][:28]:<28} {it['slice']:>5} {it['pixels']:>6}  "
               f"{it['plain']['dice'][0]:5.3f}  {it['plain']['dice'][-1]:5.3f}  {it['refine']['dice'][-1]:6.3f}  "
               f"{it['app']['dice'][0]:5.3f}  {it['app']['dice'][-1]:5.3f}")
        if propagate:
            row += (f"  {it['propagate']['dice_3d']:6.3f}  {it['propagate']['corrections'][-1]:6.3f}"
                    if "propagate" in it else "")
        lines.append(row)
    lines.append("")
    lines.append(f"after the box and {k} clicks (mean Dice; NoC85 / NoC90):")
    for group, s in report["summary"].items():
        if not s.get("n_items"):
            continue
        parts = [f"{group:<6} n={s['n_items']:<3} box {s['mean_dice_box']:.3f}"]
        for v in ("plain", "refine", "app"):
            parts.append(f"{v} {s[v]['mean_dice_final']:.3f} ({s[v]['noc85']:.2f}/{s[v]['noc90']:.2f})")
        lines.append("  ".join(parts) + f"  app first prompt {s['app']['mean_dice_per_step'][0]:.3f}")
        if "mean_holes_per_step" in s["app"]:
            holes, pieces = s["app"]["mean_holes_per_step"], s["app"]["mean_extra_pieces_per_step"]
            lines.append(f"{'':<6} app masks per item, after the box / after {k} clicks: holes {holes[0]:.2f} / "
                         f"{holes[-1]:.2f}, pieces beside the largest {pieces[0]:.2f} / {pieces[-1]:.2f} "
                         f"(the labels: {s['truth_mean_holes']:.2f}, {s['truth_mean_extra_pieces']:.2f})")
        p = s.get("propagate") or {}
        if p.get("mean_dice_3d") is not None:
            steps = " ".join(f"{v:.3f}" for v in p["corrections"])
            within = p.get("stops_within_3_slices")
            lines.append(f"{'':<6} 3D n={p['n_items']:<3} from one box {p['mean_dice_3d']:.3f}; after 0..{len(p['corrections']) - 1} "
                         f"corrections {steps}; NoC85/90 3D {p['noc85_3d']:.2f}/{p['noc90_3d']:.2f}"
                         + (f"; stops within 3 slices of the label's end: {within:.0%}" if within is not None else ""))
    s = report["summary"]["all"]
    if s.get("n_items"):
        model = report.get("model", {})
        lines.append(f"encoder {s['mean_encoder_ms']:.0f} ms x {s['encoder_calls']}, "
                     f"decoder {s['mean_decoder_ms']:.1f} ms x {s['decoder_calls']}"
                     + (f"; {model.get('model_id')} on {model.get('runtime')} ({model.get('device')})"
                        if model.get("runtime") else ""))
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from annotator.core.atomic import atomic_write_text
    from annotator.evaluate.runner import evaluate_volume
    from annotator.io import load_volume, read_labels_onto

    if args.max_clicks < 0:
        raise InputError(None, f"--max-clicks must be 0 or more, got {args.max_clicks}")
    if args.corrections < 0:
        raise InputError(None, f"--corrections must be 0 or more, got {args.corrections}")
    if args.json and Path(args.json).exists() and not args.overwrite:
        raise InputError(args.json, "already exists (use --overwrite to replace it)")
    volume = load_volume(args.image, series_uid=args.series_uid)
    label_map = read_labels_onto(volume, args.labels)
    fallback = {lab.id: lab.name for lab in label_map.table}
    names = _label_names(args.labels_table, fallback)
    engine = _engine(args.model, args.device, args.runtime, args.server)
    cache = None
    if args.embedding_cache:
        from annotator.engine.embedding_cache import EmbeddingCache

        cache = EmbeddingCache.from_settings()
    progress = _progress_bar()
    try:
        report = evaluate_volume(volume, label_map.array, names, engine, plane=args.plane,
                                 max_clicks=args.max_clicks, propagate=args.propagate,
                                 corrections=args.corrections, progress=progress, cache=cache)
    finally:
        progress.close()
    report["inputs"] = {"image": str(args.image), "labels": str(args.labels), "labels_table": args.labels_table}
    sys.stdout.write(format_table(report))
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(report, indent=1) + "\n", overwrite=args.overwrite)
        sys.stdout.write(f"wrote {args.json}\n")
    return 0


class _progress_bar:  # used like a function
    """tqdm on stderr (only when it is a terminal), fed by the runner's (done, total, what) calls."""

    def __init__(self) -> None:
        self._bar: Any = None  # tqdm, created on the first call

    def __call__(self, done: int, total: int, what: str) -> None:
        if not sys.stderr.isatty():
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="item", file=sys.stderr, leave=False)
        self._bar.n = done
        self._bar.set_description_str(what[:40])
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
