"""DICOM header values as plain Python: numbers, lists, times, orientation cosines and image
types that tolerate the vendor quirks of real files (empty strings, multi-values, 5-decimal cosines)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def float_list(value: Any, n: int) -> list[float] | None:
    if value is None:
        return None
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return values if len(values) == n and all(math.isfinite(v) for v in values) else None


def as_float(value: Any, default: float | None = None) -> float | None:
    if value is None or value == "":
        return default
    if not isinstance(value, (str, bytes, int, float)) and hasattr(value, "__getitem__"):
        value = value[0] if len(value) else None  # multi-valued (pydicom MultiValue, list): first
        if value is None:
            return default
    try:
        number = float(value)
    except (TypeError, ValueError, IndexError):
        return default
    return number if math.isfinite(number) else default


def as_int(value: Any, default: int | None = None) -> int | None:
    number = as_float(value)
    return default if number is None else int(number)


def seconds_of_time(value: Any) -> float | None:
    """DICOM TM 'HHMMSS.ffffff' (or DT 'YYYYMMDDHHMMSS.ffffff') -> seconds, for ordering only."""
    if not value:
        return None
    text = str(value).strip()
    if len(text) >= 14 and text[:8].isdigit():  # DT: keep the date so midnight does not reorder
        days = int(text[:8])
        text = text[8:]
    else:
        days = 0
    try:
        hours = int(text[0:2] or 0)
        minutes = int(text[2:4] or 0)
        seconds = float(text[4:] or 0)
    except ValueError:
        return None
    return days * 86400.0 + hours * 3600.0 + minutes * 60.0 + seconds


def valid_iop(iop: list[float] | None) -> list[float] | None:
    """Row/column cosines renormalised (scanners write 5-6 decimals), or None when degenerate."""
    if iop is None:
        return None
    row, col = np.asarray(iop[:3]), np.asarray(iop[3:])
    row_norm, col_norm = np.linalg.norm(row), np.linalg.norm(col)
    if row_norm < 0.9 or col_norm < 0.9 or row_norm > 1.1 or col_norm > 1.1:
        return None
    row, col = row / row_norm, col / col_norm
    if abs(float(row @ col)) > 0.01:  # not perpendicular: no usable orientation
        return None
    return [*row.tolist(), *col.tolist()]


def positive_spacing(spacing: list[float] | None) -> list[float] | None:
    return spacing if spacing and all(v > 0 for v in spacing) else None


def sequence_item(dataset: Any, keyword: str) -> Any:
    seq = dataset.get(keyword) if dataset is not None else None
    return seq[0] if seq else None


def fg_item(per_frame: Any, shared: Any, keyword: str) -> Any:
    """A functional group macro item: per-frame first, else shared."""
    return sequence_item(per_frame, keyword) or sequence_item(shared, keyword)


def image_type(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip().upper() for v in value.split("\\"))
    return tuple(str(v).strip().upper() for v in value)


# ImageType values (3rd on) that name what a classic image shows. Only these split a series:
# other values (vendor processing flags) may differ between slices of one volume.
_KIND_OF_TOKEN = {
    "M": "magnitude", "MAGNITUDE": "magnitude", "P": "phase", "PHASE": "phase", "PHASE MAP": "phase",
    "R": "real", "REAL": "real", "I": "imaginary", "IMAGINARY": "imaginary",
    "B0 MAP": "field map", "FIELD_MAP": "field map", "FIELDMAP": "field map", "B0": "field map",
    "LOCALIZER": "localizer", "ADC": "adc", "TRACEW": "trace", "FA": "fa", "VELOCITY": "velocity",
}
_KIND_OF_PREFIX = {"M_": "magnitude", "P_": "phase", "R_": "real", "I_": "imaginary"}  # Philips M_FFE...


def image_kind(image_type: tuple[str, ...]) -> tuple[str, ...]:
    """What a classic image shows (magnitude, phase, localizer, ...) from its ImageType."""
    kinds = set()
    for token in image_type[2:]:
        kind = _KIND_OF_TOKEN.get(token) or _KIND_OF_PREFIX.get(token[:2])
        if kind:
            kinds.add(kind)
    return tuple(sorted(kinds))


