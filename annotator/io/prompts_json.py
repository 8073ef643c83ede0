"""The prompts file of `annotator segment` (docs/prompts-json.md): objects with points and boxes in
voxel or world (LPS/RAS) coordinates, validated against the volume they prompt."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from annotator.core.errors import InputError
from annotator.core.geometry import PLANES, in_plane_axes, plane_array_axis
from annotator.core.prompts import BoxPrompt, PointPrompt, PromptSet
from annotator.core.volume import Volume

FRAMES = ("voxel", "world-lps", "world-ras")


@dataclass(frozen=True)
class ObjectPrompts:
    """One structure to segment: its label, the plane's array axis and, per slice, the prompts."""

    label: int
    name: str
    plane: str
    axis: int
    prompts_by_slice: dict[int, PromptSet] = field(hash=False)


def _positions_to_index_zyx(positions: np.ndarray, frame: str, volume: Volume) -> np.ndarray:
    if frame == "voxel":
        return positions[:, ::-1].astype(np.float64)  # [x, y, z] -> (z, y, x)
    if frame == "world-lps":
        return volume.world_lps_to_index_zyx(positions)
    return volume.world_ras_to_index_zyx(positions)


def parse_prompts(path: str | Path, volume: Volume) -> list[ObjectPrompts]:
    """Read and validate a prompts file against `volume`; InputError names the file and object."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "prompts file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read prompts file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("objects"), list) or not data["objects"]:
        raise InputError(path, "expected an object with a non-empty 'objects' list (see docs/prompts-json.md)")
    if data.get("version", 1) != 1:
        raise InputError(path, f"unsupported prompts version {data.get('version')!r} (expected 1)")
    default_frame = data.get("coordinates", "voxel")
    objects = []
    for number, item in enumerate(data["objects"], start=1):
        objects.append(_parse_object(path, number, item, default_frame, volume))
    return objects


def _parse_object(path: Path, number: int, item: Any, default_frame: str, volume: Volume) -> ObjectPrompts:
    where = f"object {number}"
    if isinstance(item, dict) and item.get("name"):
        where += f" ({item['name']})"

    def fail(problem: str) -> InputError:
        return InputError(path, f"{where}: {problem}")

    if not isinstance(item, dict):
        raise fail("must be a JSON object")
    label = item.get("label")
    if not isinstance(label, int) or isinstance(label, bool) or not 1 <= label <= 65535:
        raise fail(f"'label' must be an integer 1..65535, got {label!r}")
    frame = item.get("coordinates", default_frame)
    if frame not in FRAMES:
        raise fail(f"unknown coordinates {frame!r}; expected one of {', '.join(FRAMES)}")
    plane = item.get("plane", "axial")
    if plane not in PLANES:
        raise fail(f"unknown plane {plane!r}; expected one of {', '.join(PLANES)}")
    axis = plane_array_axis(volume, plane)
    row_axis, col_axis = in_plane_axes(axis)
    shape = volume.shape_zyx

    def to_index(position: Any, what: str) -> np.ndarray:
        if not isinstance(position, list) or len(position) != 3 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in position):
            raise fail(f"{what} must be three numbers, got {position!r}")
        index = _positions_to_index_zyx(np.array([position], dtype=np.float64), frame, volume)[0]
        if any(index[a] < -0.5 or index[a] > shape[a] - 0.5 for a in range(3)):
            raise fail(f"{what} {position} ({frame}) lies outside the volume (voxel z,y,x {np.round(index, 1).tolist()}, "
                       f"shape {list(shape)})")
        return index

    points_raw = item.get("points", [])
    if not isinstance(points_raw, list):
        raise fail("'points' must be a list")
    points: list[tuple[int, PointPrompt]] = []
    for i, point in enumerate(points_raw, start=1):
        if not isinstance(point, dict) or "position" not in point:
            raise fail(f"point {i} must be an object with a 'position'")
        positive = point.get("positive", True)
        if not isinstance(positive, bool):
            raise fail(f"point {i}: 'positive' must be true or false")
        index = to_index(point["position"], f"point {i}")
        points.append((int(round(index[axis])), PointPrompt(float(index[col_axis]), float(index[row_axis]), positive)))

    box_slices: tuple[int, int] | None = None
    box: BoxPrompt | None = None
    if item.get("box") is not None:
        raw = item["box"]
        if not isinstance(raw, dict) or "min" not in raw or "max" not in raw:
            raise fail("'box' must be an object with 'min' and 'max' corners")
        a, b = to_index(raw["min"], "box min"), to_index(raw["max"], "box max")
        box = BoxPrompt.from_corners(float(a[col_axis]), float(a[row_axis]), float(b[col_axis]), float(b[row_axis]))
        s0, s1 = sorted((int(round(a[axis])), int(round(b[axis]))))
        box_slices = (s0, s1)

    if not any(p.positive for _, p in points) and box is None:
        raise fail("needs at least one positive point or a box")
    prompts_by_slice: dict[int, PromptSet] = {}
    if box_slices is not None and box_slices[0] != box_slices[1]:
        if points:
            raise fail("points cannot be combined with a box spanning several slices")
        for s in range(box_slices[0], box_slices[1] + 1):
            prompts_by_slice[s] = PromptSet(box=box)
    else:
        slices = {s for s, _ in points} | ({box_slices[0]} if box_slices else set())
        if len(slices) != 1:
            raise fail(f"all points (and the box) must lie on one {plane} slice, got slices {sorted(slices)}")
        (s,) = slices
        prompts_by_slice[s] = PromptSet(tuple(p for _, p in points), box)
    return ObjectPrompts(label=label, name=str(item.get("name") or f"label {label}"), plane=plane, axis=axis,
                         prompts_by_slice=prompts_by_slice)


