"""Pixels of a planned stack: each file decoded once (pydicom with pylibjpeg for compressed
syntaxes, or the raw fast path), frames and mosaic tiles cut out, and every frame's own rescale
applied in the smallest dtype that holds the values exactly."""

from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from annotator.core.errors import InputError
from annotator.io.dicom.frames import Frame
from annotator.io.dicom.raw import has_dicm_preamble, read_native_plane
from annotator.io.dicom.values import as_int


def decode_file(path: str) -> tuple[Any, np.ndarray]:
    """Dataset and decoded stored pixel values ((frames,) rows, cols[, samples]) in native byte order."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=not has_dicm_preamble(Path(path)))
    except Exception as exc:  # damaged file: say which and why
        raise InputError(path, f"DICOM file is truncated or corrupt ({type(exc).__name__}: {exc})") from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise InputError(path, "DICOM file has no pixel data (truncated?)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = ds.pixel_array
    except Exception as exc:  # decoder errors: missing plugin, truncated fragments, bad lengths
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        ts_name = f"{ts.name} ({ts})" if ts is not None else "unknown transfer syntax"
        raise InputError(path, f"pixel data cannot be decoded [{ts_name}]: {exc}") from exc
    if not pixels.dtype.isnative:
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))
    return ds, pixels


def to_grey(plane: np.ndarray) -> np.ndarray:
    if plane.ndim == 3:  # RGB (pydicom converts YBR to RGB)
        return (plane[..., 0] * 0.299 + plane[..., 1] * 0.587 + plane[..., 2] * 0.114).astype(np.float32)
    return plane


def read_planes(frames_by_volume_slice: list[Frame]) -> tuple[list[np.ndarray], list[str]]:
    """Stored (un-rescaled) 2-D planes in slice order, decoding each file once."""
    warnings_list: list[str] = []
    by_file: dict[str, list[int]] = defaultdict(list)
    for i, frame in enumerate(frames_by_volume_slice):
        by_file[frame.path].append(i)
    planes: list[np.ndarray | None] = [None] * len(frames_by_volume_slice)
    colour = False
    for path, indices in by_file.items():
        if len(indices) == 1 and frames_by_volume_slice[indices[0]].native_pixels is not None:
            plane = read_native_plane(frames_by_volume_slice[indices[0]])
            if plane is not None:
                planes[indices[0]] = plane
                continue
        ds, pixels = decode_file(path)
        samples = as_int(ds.get("SamplesPerPixel"), 1) or 1
        n_frames = as_int(ds.get("NumberOfFrames"), 1) or 1
        for i in indices:
            frame = frames_by_volume_slice[i]
            if frame.frame_index is not None and n_frames > 1:
                if frame.frame_index >= pixels.shape[0]:
                    raise InputError(path, f"frame {frame.frame_index + 1} is missing from the pixel data")
                plane = pixels[frame.frame_index]
            else:
                plane = pixels
            if frame.tile_index is not None:
                per_side = plane.shape[1] // frame.cols
                r, c = divmod(frame.tile_index, per_side)
                plane = plane[r * frame.rows:(r + 1) * frame.rows, c * frame.cols:(c + 1) * frame.cols]
            if samples > 1:
                colour = True
                plane = to_grey(plane)
            expected = (frame.rows, frame.cols)
            if plane.shape[:2] != expected:
                raise InputError(path, f"decoded image is {plane.shape[:2]}, header says {expected}")
            planes[i] = plane
    if colour:
        warnings_list.append("colour image converted to greyscale (luminance)")
    return planes, warnings_list  # type: ignore[return-value]


def rescaled_stack(frames: list[Frame], planes: list[np.ndarray]) -> np.ndarray:
    """(z, y, x) voxels after each frame's own rescale slope/intercept, in the smallest exact dtype."""
    shape = (len(planes), *planes[0].shape)
    identity = all(f.slope == 1.0 and f.intercept == 0.0 for f in frames)
    raw_dtype = np.result_type(*{p.dtype for p in planes})
    if identity:
        out = np.empty(shape, dtype=raw_dtype)
        for z, plane in enumerate(planes):
            out[z] = plane
        return out
    integral = all(float(f.slope).is_integer() and float(f.intercept).is_integer() for f in frames) \
        and raw_dtype.kind in "iub"
    if not integral:
        out = np.empty(shape, dtype=np.float32)
        for z, (frame, plane) in enumerate(zip(frames, planes, strict=True)):
            np.multiply(plane, np.float32(frame.slope), out=out[z], casting="unsafe")
            out[z] += np.float32(frame.intercept)
        return out
    # integer rescale (CT HU): exact, in the smallest signed type holding every rescaled value
    raw_ranges = [(int(p.min()), int(p.max())) for p in planes]
    ends = [v * int(f.slope) + int(f.intercept) for f, (a, b) in zip(frames, raw_ranges, strict=True) for v in (a, b)]
    lo, hi = min(ends), max(ends)
    target = next((np.dtype(t) for t in (np.int16, np.int32, np.int64)
                   if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max), np.dtype(np.float64))
    out = np.empty(shape, dtype=target)
    raw_lo, raw_hi = min(r[0] for r in raw_ranges), max(r[1] for r in raw_ranges)
    limits = np.iinfo(target.name) if target.kind == "i" else None
    fits = limits is not None and limits.min <= raw_lo and raw_hi <= limits.max
    if fits and all(f.slope == 1.0 for f in frames):
        # the common CT case: copy stored values, then add the intercept in place (no overflow:
        # both the stored and the rescaled ranges fit the target type)
        for z, plane in enumerate(planes):
            np.copyto(out[z], plane, casting="unsafe")
        intercepts = {int(f.intercept) for f in frames}
        if len(intercepts) == 1:
            out += target.type(intercepts.pop())
        else:
            for z, frame in enumerate(frames):
                out[z] += target.type(int(frame.intercept))
        return out
    for z, (frame, plane) in enumerate(zip(frames, planes, strict=True)):
        out[z] = plane.astype(np.int64) * int(frame.slope) + int(frame.intercept)
    return out


