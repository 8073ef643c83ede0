"""The 8-bit slice images exporters write beside their annotations, and their file names."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from annotator.core.atomic import atomic_path
from annotator.export.api import OutputExistsError


def write_png(image_u8: np.ndarray, path: Path, *, overwrite: bool) -> Path:
    """Lossless 8-bit PNG, written atomically."""
    import cv2

    if not overwrite and path.exists():
        raise OutputExistsError(path)
    # zlib level 1, run-length strategy, no PNG row filters: choosing filters per row cost more
    # than the deflate itself. On the shared 512x512 Philips CT: 0.6 ms vs 2.2 ms per slice with
    # libpng's adaptive filters, files 6% larger (16.9 vs 16.0 kB); still lossless.
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image_u8),
                               [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
                                cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE])
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(encoded.tobytes())
    return path


def slice_image_name(case_id: str, plane: str, index: int) -> str:
    return f"{case_id}_{plane}_{index:04d}.png"


# ---- exporter -----------------------------------------------------------------------------------
