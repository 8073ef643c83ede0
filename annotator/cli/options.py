"""Command-line values several commands share, parsed one way: intensity windows and label-name files."""

from __future__ import annotations

import json
from pathlib import Path

from annotator.core.errors import InputError
from annotator.core.geometry import CT_PRESETS, Window
from annotator.core.labels import LabelTable


def parse_window_option(text: str | None, option: str = "--window") -> Window | None:
    """CENTER,WIDTH or a CT preset name (spaces, '-' or '_' between words), None when not given."""
    if not text:
        return None
    preset = text.strip().lower().replace("-", " ").replace("_", " ")
    if preset in CT_PRESETS:
        return CT_PRESETS[preset]
    try:
        center, width = (float(v) for v in text.split(","))
    except ValueError:
        presets = ", ".join(p.replace(" ", "-") for p in CT_PRESETS)
        raise InputError(None, f"{option} {text!r}: expected CENTER,WIDTH or a preset ({presets})") from None
    if width <= 0:
        raise InputError(None, f"{option} {text!r}: width must be positive")
    return Window(center, width)


def read_label_names(path: str | None) -> LabelTable | None:
    """A label table from JSON: {"1": "liver"}, {"liver": 1}, our own list, or any of them under
    "labels" (a labels.json sidecar, an nnU-Net dataset.json); None when no path is given."""
    if not path:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "label table not found") from None
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read label names ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("labels"), dict | list):
        data = data["labels"]
    if not isinstance(data, dict | list):
        raise InputError(path, "not a label name table (expected an object or a list)")
    try:
        return LabelTable.from_json(data)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise InputError(path, f"not a label name table ({exc})") from None
