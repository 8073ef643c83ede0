"""The clean-up operations as plugin contributions: each step `annotator clean` and the clean-up
panel offer is one CleanupOperation that the plugin registry lists (postprocessors), so a plugin adds
a step everywhere by registering one more; the builtins register these four."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from annotator.postprocess import cleanup

log = logging.getLogger(__name__)
Spacing = Sequence[float]


@dataclass(frozen=True)
class CleanupOperation:
    """One clean-up step on one label's boolean mask.

    run(mask, value, spacing_zyx_mm, per_slice_axis, connectivity) -> mask; `value` is the step's
    number in `unit` (1.0 for an on/off step, unit None). `flag` is the command-line option, `title`
    the panel's check box; default/maximum/step shape the panel's number field."""

    id: str
    title: str
    flag: str
    run: Callable[[np.ndarray, float, Spacing, int | None, int | None], np.ndarray]
    help: str
    unit: str | None = None
    default: float = 0.0
    maximum: float = 0.0
    step: float = 1.0


FILL_HOLES = CleanupOperation(
    "fill-holes", "Fill holes", "--fill-holes",
    lambda m, v, sp, axis, conn: cleanup.fill_holes(m, per_slice_axis=axis), "fill enclosed holes")
REMOVE_ISLANDS = CleanupOperation(
    "remove-islands", "Remove islands below", "--min-size",
    lambda m, v, sp, axis, conn: cleanup.remove_small_islands(m, v, sp, per_slice_axis=axis, connectivity=conn),
    "remove pieces smaller than this, e.g. 50mm3 (mm2 per slice)", unit="mm3", default=50.0, maximum=1e6, step=10.0)
KEEP_LARGEST = CleanupOperation(
    "largest", "Keep the largest piece only", "--largest",
    lambda m, v, sp, axis, conn: cleanup.keep_largest_component(m, per_slice_axis=axis, connectivity=conn),
    "keep only the largest piece of each label")
SMOOTH = CleanupOperation(
    "smooth", "Smooth, sigma", "--smooth",
    lambda m, v, sp, axis, conn: cleanup.smooth(m, v, sp, per_slice_axis=axis),
    "Gaussian smoothing with this sigma, e.g. 1mm", unit="mm", default=1.0, maximum=20.0, step=0.5)


BUILTIN_OPERATIONS: tuple[CleanupOperation, ...] = (FILL_HOLES, REMOVE_ISLANDS, KEEP_LARGEST, SMOOTH)


def cleanup_operations(contributions: Iterable[object]) -> list[CleanupOperation]:
    """The clean-up steps among the registry's resolved postprocessor contributions, in order
    (callers: `get_registry().resolved("postprocessors")`); anything else is logged and left out."""
    out = []
    for op in contributions:
        if isinstance(op, CleanupOperation):
            out.append(op)
        else:
            log.warning("postprocessor %r is not a CleanupOperation; left out", op)
    return out
