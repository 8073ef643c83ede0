"""3-D propagation between key slices: from the slices the user segmented (keys), segment the others
one after another, each prompted by its neighbour's mask, stop where the structure ends, never touch
a key, and land the whole result as one undoable LabelEdit (engine.propagation_edit). Qt-free; runs
on any thread.

Keys: every slice the user segmented or corrected for a label (an accepted box or clicks, a brush
or eraser stroke) is a key; an emptied key says "the structure is absent here". Outside the
outermost keys the mask is carried outwards until a stop rule fires; between two keys it is carried
from both sides and the two masks are blended by shape (signed-distance) interpolation weighted by
the distance to each key, so a correction pulls its neighbourhood towards it. Where the two runs
disagree (IoU < gap_agree_iou), at least one has drifted, and the keys' own shape interpolation is
taken there instead (measured: CT 3-D after 5 corrections 0.782 -> 0.800, CTA 0.594 -> 0.639),
unless one run holds the other and besides it only a piece apart: a piece that appears between
the keys, which the run from the key without it cannot find (CTA true lumen 0.81 -> 0.93), or
the keys do not overlap in-plane (their interpolation empties mid-way) and a run met the other
on slices only beyond this one: it was on the structure from its key up to there.
Slices between two non-empty keys that neither run reached are filled by shape interpolation
rather than left empty. A re-run that stops early keeps the label's earlier slices beyond its stop
where they continue its last mask (engine.propagation_edit, PropagationParams.keep_tail_iou).
Beyond the outermost keys, a re-propagation (the label already holds masks there) stops where its
mask joins the label's (PropagationParams.join_iou): a correction re-draws the band around it, up
to where the earlier masks agree with it, and leaves the slices further out as they were. Between
two keys both runs always go on to the other key: their blend and cross-check carry more than
the label's earlier masks there. But where only the run from a key older than the last
propagation reaches (the new key's run stopped short), the label keeps its masks: that run drew
them before, with the other's beside it.
A correction past an end reopens the structure there; that run goes on only while each slice's
mask leads back to the one before (the model, asked on the slice before with that mask's boxes,
finds the previous mask again) and stays within twice the structure's largest slice: past where an
earlier run stopped a box model follows a neighbour of the same tissue lying over the end, or the
larger vessel a branch runs into (PropagationParams.reopen_back_iou, reopen_max_growth).

One step, from the previous slice's mask to the next slice, and the measurements behind each of its
rules: engine.propagation_step's docstring.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from annotator.core.geometry import Window, slice_2d
from annotator.core.labels import LabelEdit, LabelMap
from annotator.core.volume import Volume
from annotator.engine.api import MaskPrediction
from annotator.engine.propagation_gaps import gap_masks, interpolate_gap, mask_iou
from annotator.engine.propagation_motion import steady_drift
from annotator.engine.propagation_pieces import pieces_to_follow
from annotator.engine.propagation_step import (
    MODEL_FRAME,
    IntensityModel,
    check_slice,
    leads_back,
    own_tissue,
    predict_step,
    structure_values,
)

if TYPE_CHECKING:
    from annotator.engine.executor import EngineExecutor, SliceRef


log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]  # (slices done, slices at most)


class SlicePredictor(Protocol):
    """What propagation needs from an engine, per slice of one volume along one axis."""

    def predict(self, index: int, window: Window, *, box_xyxy: np.ndarray) -> MaskPrediction:
        """Single-mask prediction on slice `index` embedded under `window` (embedded at most once, ever)."""
        ...

    def raw(self, index: int) -> np.ndarray:
        """The raw (H, W) slice in image units (HU for CT), for the intensity rule."""
        ...

    def prefetch(self, index: int, step: int, count: int, window: Window) -> None:
        """Start embedding slices index, index + step, ... (count of them) in the background."""
        ...


@dataclass(frozen=True)
class Key:
    """A slice the user decided: its mask ((H, W) bool; empty = absent here) and the model input window
    its mask was made in (propagation from this key uses it)."""

    index: int
    mask: np.ndarray = field(repr=False)
    window: Window


@dataclass(frozen=True)
class PropagationParams:
    """Defaults measured with `annotator evaluate --propagate` (this module's docstring and
    engine.propagation_step's)."""

    box_margins_256: tuple[float, ...] = (3.0, 8.0)  # candidate box margins, model-frame pixels
    growth_slope: float = 1.0        # in-plane growth per slice, in slice spacings
    min_area_ratio: float = 0.3      # stop when a slice keeps less than this of the previous area
    min_overlap: float = 0.5         # share of the new mask inside the previous one
    # The model's IoU estimate. Past a structure's end LiteMedSAM still segments whatever the box
    # holds, estimating it at about 0.5: 0.55 stops the gallbladder, duodenum and small bowel at
    # their ends (CT 3-D from one box 0.619 -> 0.632, after 5 corrections 0.818 -> 0.823, CTA
    # unchanged); 0.6 stops runs inside structures (after 5 corrections CT 0.806, CTA 0.695).
    min_score: float = 0.55
    max_intensity_z: float = 3.0     # median intensity vs the running value, in robust sds
    # A model mask this many robust sds from the structure's running intensity (twice the stop's)
    # is another tissue entirely: the model took the neighbour the box also held (a lung base's box
    # holds the liver dome it curves around). The slice then takes the structure's own tissue next
    # to the previous mask (propagation_step.own_tissue) when that passes the shape rules and is
    # no larger than the previous mask; a mask just past max_intensity_z is the structure ending
    # (partial volume, a vessel running into soft tissue) and the run stops. Measured over three
    # placements of the simulated user's boxes (as drawn / 1 px right / 1 px down): CT organs 3-D
    # from one box 0.658 / 0.630 / 0.663 -> 0.663 / 0.635 / 0.668 (right lower lobe 0.78 ->
    # 0.86-0.87), 3-D NoC85 3.71 -> 3.44 (mean); CTA from one box 0.651 / 0.622 / 0.655 -> 0.651 /
    # 0.622 / 0.667 (BENCHMARKS.md). At every intensity stop (threshold 0) it also carried vessels
    # past where they end in soft tissue (CTA celiac trunk 0.73 -> 0.06 after a correction). 0: off.
    neighbour_taken_z: float = 6.0
    intensity_min_sd_frac: float = 0.025  # floor of that sd, as a share of the key's window width
    intensity_adapt: float = 0.3     # how fast the running intensity follows accepted slices
    intensity_from: str = "keys"     # "keys": the structure's intensity pooled over every key; "own": the run's key
    min_pixels: int = 4              # a mask smaller than this counts as empty
    between_keys: str = "blend"      # "blend" (model from both keys, shape-blended) or "interpolate"
    interpolate_up_to: int = 2       # gaps of at most this many slices between keys: shape interpolation
    prefetch: int = 2                # slices embedded ahead of the current one
    # Two slices in one step where the shape barely changes: the mask two slices on, prompted by the
    # current one, is kept when it passes every stop rule and overlaps the current mask by at least
    # this IoU; the slice between is then filled by shape interpolation and never embedded. 0: off.
    skip_iou: float = 0.0
    # Between two keys, where the runs from both keys disagree (IoU below this), the model is not
    # to be trusted there and the keys' shape interpolation is taken instead. 0: always blend.
    gap_agree_iou: float = 0.5
    # A key on an end of the structure's current extent (propagate(extent=...)) lets the run go on
    # past it when True; False: only a key past an end moves it (a correction of the last slice is
    # a correction, not "it goes on": a left subclavian re-run from its end slice followed the
    # aortic arch for 77 slices, CTA 3-D after 5 corrections 0.639 -> 0.708 with False).
    key_on_end_reopens: bool = False
    # A re-propagation that stops before the label's current end keeps the label's slices beyond
    # where it stopped when they continue its last mask (IoU of that mask with the label's mask on
    # the next slice at least this): a correction inside the structure does not move its end, even
    # when the run from it stops early. Otherwise (a different structure there, or > 1) they are
    # cleared. (A left lower lobe corrected on slice 25 had its run stop at 24 and lost the earlier
    # run's good slices 23-24: CT 3-D after 5 corrections 0.800 -> 0.805.)
    keep_tail_iou: float = 0.5
    # A run reopened past the structure's current end (from a key beyond it) goes on only while each
    # slice's mask leads back: the model, given that mask's boxes on the slice before, finds the
    # previous mask again (IoU at least this; propagation_step.leads_back). A correction past an
    # end says "it goes on here", not how far, and a box model then follows a neighbour of the same
    # tissue lying over the end (a duodenum boxed one slice past where its run stopped ran on 15
    # slices through the bowel beside it: 3-D 0.66 -> 0.56 after that correction, 0.72 with the
    # rule). Only the model's own masks are asked (not the structure's own tissue, which is not the
    # model's answer). CT organs 3-D after 1..5 corrections, box as drawn, 0.711 0.768 0.784 0.799
    # 0.811 -> 0.721 0.780 0.796 0.801 0.816; the other two box placements and the CTA unchanged
    # (BENCHMARKS.md). On every run, the first from a box included, it stopped vessels where they
    # branch (CTA 3-D from one box 0.651 -> 0.551). 0: off.
    reopen_back_iou: float = 0.5
    # A reopened run stops where its mask grows past this many times the structure's largest slice
    # so far (its keys and the label before): past where the structure was judged to end it tapers
    # off; one that grows has taken a larger neighbour of the same tissue (CTA celiac trunk, box
    # 1 px right: a box on 8, past its end, ran 68 slices up the aorta, 3-D 0.66 -> 0.03; 0.29 with
    # it; nothing else moves in six runs, BENCHMARKS.md). 0: off.
    reopen_max_growth: float = 2.0
    # Between two non-empty keys, slices neither run reached take the shape interpolation of the
    # nearest masks on both sides (the structure is present at both keys); False: left empty.
    fill_unreached_gap: bool = True
    # A previous mask in pieces at least this many model-frame pixels square: each piece is also
    # followed with its own box (slice by slice; the two-slice step of skip_iou takes the whole).
    # A share of the whole mask instead (10 %, 20 %) lost the fading piece of a much larger one.
    # 0: off.
    min_piece_side_256: float = 8.0
    # The structure's motion (engine.propagation_step's docstring) from the run's last this many masks, each step at
    # least motion_min_step_px the same way (any wobble counted stopped the true lumen). 0, 1: off.
    motion_slices: int = 4
    motion_min_step_px: float = 0.5
    # A re-propagation (propagate(labelled=...)) beyond the outermost keys stops where its mask joins
    # the label's (IoU at least this, on a slice that is no key and holds the label), and the label
    # keeps its slices from there on (PropagationResult.kept): a fix re-draws the band around it,
    # not the far end (the CTA's false lumen, fixed 9 slices under its first key, lost 43 good
    # slices at the far end: 3-D 0.66 -> 0.59; 0.74 with it). Over three box placements the 3-D
    # loops score the same on average, at half the model calls per re-run (BENCHMARKS.md). 0: off.
    join_iou: float = 0.9
    # A re-propagation between two keys: slices that only the run from a key older than the last
    # propagation reached keep the label's masks (propagation_gaps.kept_where_an_old_run_is_alone);
    # a correction re-draws what its own run reaches. (Clicks on the colon's slice 3 under a key on
    # 22: the run from 3 stopped at 9 and the run from 22 alone re-drew 9..20, slice Dice 0.64-0.84
    # -> 0.2-0.4; the colon's 3-D Dice after 5 corrections 0.55 -> 0.69.)
    gap_keeps_label: bool = True


@dataclass
class PropagationResult:
    """Masks per slice index (keys included), the key indices, why each run stopped, and whether the
    run was cancelled (then nothing may be written)."""

    masks: dict[int, np.ndarray] = field(default_factory=dict)
    keys: frozenset[int] = frozenset()
    stops: dict[str, str] = field(default_factory=dict)
    cancelled: bool = False
    # (slice, model input window) the model was asked about: what the run cost in encoder calls
    # with an empty cache; masks beyond them were interpolated
    embedded: frozenset[tuple[int, tuple[float, float]]] = frozenset()
    # slices a run left to the label as it is, having joined it (PropagationParams.join_iou)
    kept: frozenset[int] = frozenset()

    @property
    def slice_range(self) -> tuple[int, int] | None:
        nonempty = [i for i, m in self.masks.items() if m.any()]
        if not nonempty:
            return None
        return min(nonempty), max(nonempty)


class PropagationCancelled(Exception):  # an outcome, like KeyboardInterrupt
    """Raised by propagate_label when the cancel event was set; the label map is untouched."""


class _Cancelled(Exception):  # internal unwinding of a cancelled run
    pass


# ---- runs ---------------------------------------------------------------------------------------

class _Chain(NamedTuple):
    """One run's masks, why it stopped, and the slice where it joined the label's mask (or None)."""
    masks: dict[int, np.ndarray]
    stop: str
    joined: int | None = None


@dataclass
class _Run:
    predictor: SlicePredictor
    params: PropagationParams
    reach_px: float
    total: int
    progress: ProgressFn | None
    cancel: threading.Event | None
    spacing_rc: tuple[float, float] = (1.0, 1.0)
    done: int = 0
    # the structure's voxel values on every non-empty key: what it looks like wherever the user said
    pooled: np.ndarray | None = None
    # the label's masks before this propagation, per slice (propagate(labelled=...)); keys excluded
    labelled: Mapping[int, np.ndarray] | None = None
    # the structure's largest slice so far, pixels (keys and the label before): caps a reopened run
    largest_px: int = 0

    def tick(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(min(self.done, self.total), self.total)

    def chain(self, key: Key, step: int, end: int, reopening: bool = False,
              join: bool = False) -> _Chain:
        """Masks from `key` towards `end` (inclusive), one slice per step, until a rule stops it or,
        with `join`, it joins the label's mask (that slice is not among the masks).
        `reopening`: the run goes on past the structure's current end from a key beyond it, and
        each slice must also lead back to the one before (PropagationParams.reopen_back_iou)."""
        joining = self.labelled if join else None
        masks: dict[int, np.ndarray] = {}
        if not key.mask.any():
            return _Chain(masks, "key is empty")
        if (end - key.index) * step <= 0:
            return _Chain(masks, "volume edge")
        values = self.pooled if self.params.intensity_from == "keys" and self.pooled is not None \
            else structure_values(self.predictor.raw(key.index), key.mask)
        intensity = IntensityModel(values, key.window, self.params)
        previous, index = key.mask, key.index
        recent = [previous]
        while index != end:
            if self.cancel is not None and self.cancel.is_set():
                raise _Cancelled
            if self.params.skip_iou > 0 and abs(end - index) >= 2:
                skipped = self._two_slices(key.window, previous, index, step, end, intensity, reopening)
                if skipped is not None and self._joins(joining, index + 2 * step, skipped[index + 2 * step]):
                    masks[index + step] = skipped[index + step]
                    return _Chain(masks, f"joined the labelled mask at slice {index + 2 * step}", index + 2 * step)
                if skipped is not None:
                    masks.update(skipped)
                    index += 2 * step
                    previous, recent = skipped[index], [skipped[index]]  # a two-slice step: motion restarts
                    continue
            index += step
            if self.params.prefetch > 0:
                remaining = abs(end - index)
                if remaining:
                    self.predictor.prefetch(index + step, step, min(self.params.prefetch, remaining), key.window)
            moving = steady_drift(recent, self.params.motion_min_step_px, self._piece_side(previous),
                                  self.reach_px) if self.params.motion_slices > 1 else (0, 0)
            mask, score = predict_step(self.predictor, index, key.window, previous, self.params, self.reach_px, moving)
            self.tick()
            raw = self.predictor.raw(index)
            reason = check_slice(mask, previous, score, self.params)
            if reason is None:
                drift, median = intensity.drift(raw, mask)
                if drift > self.params.max_intensity_z:
                    own = own_tissue(raw, previous, intensity, drift, self.reach_px, self.params)
                    if own is None:
                        reason = f"intensity left the structure's ({drift:.1f} sd)"
                    else:
                        mask, median = own  # the structure's own tissue: not the model's, nothing to ask back
                elif reopening:
                    reason = self._not_leading_back(index - step, key.window, mask, previous)
            if reason is None and reopening and self.params.reopen_max_growth > 0 and \
                    np.count_nonzero(mask) > self.params.reopen_max_growth * self.largest_px:
                reason = f"grew past {self.params.reopen_max_growth:g}x the structure's largest slice"
            if reason is not None:
                return _Chain(masks, f"{reason} at slice {index}")
            if self._joins(joining, index, mask):
                return _Chain(masks, f"joined the labelled mask at slice {index}", index)
            by_pieces = self._by_pieces(index, key.window, previous, raw, intensity, step if reopening else 0)
            if by_pieces is not None:
                mask, median = by_pieces, intensity.drift(raw, by_pieces)[1]
            intensity.follow(median)
            masks[index] = mask
            previous = mask
            recent = [*recent, mask][-max(self.params.motion_slices, 1):]
        return _Chain(masks, "volume edge")

    def _joins(self, labelled: Mapping[int, np.ndarray] | None, index: int, mask: np.ndarray) -> bool:
        """Whether `mask` agrees with the label's mask on slice `index` (PropagationParams.join_iou)."""
        if self.params.join_iou <= 0 or labelled is None:
            return False
        there = labelled.get(index)
        return there is not None and bool(there.any()) and mask_iou(mask, there) >= self.params.join_iou

    def _piece_side(self, mask: np.ndarray) -> float:
        """The side in slice pixels of the smallest piece followed on its own (min_piece_side_256)."""
        return max(self.params.min_piece_side_256 * max(mask.shape) / MODEL_FRAME, float(np.sqrt(self.params.min_pixels)))

    def _not_leading_back(self, back_index: int, window: Window, mask: np.ndarray, previous: np.ndarray,
                          slices: int = 1) -> str | None:
        """None if `mask` leads back to `previous` on slice `back_index`, `slices` away (or the rule
        is off), else the reason to stop."""
        if self.params.reopen_back_iou <= 0:
            return None
        back = leads_back(self.predictor, back_index, window, mask, previous, self.params, slices * self.reach_px)
        if back >= self.params.reopen_back_iou:
            return None
        return f"its mask does not lead back to the previous slice's (IoU {back:.2f})"

    def _by_pieces(self, index: int, window: Window, previous: np.ndarray, raw: np.ndarray,
                   intensity: IntensityModel, back_step: int = 0) -> np.ndarray | None:
        """The union of the masks that each piece of `previous` leads to on slice `index` and that
        pass every stop rule (with `back_step`, on a reopening run: each leads back to its piece on
        slice index - back_step); None when `previous` is one piece or no piece passes."""
        pieces = pieces_to_follow(previous, self._piece_side(previous)) if self.params.min_piece_side_256 > 0 else []
        kept = []
        for piece in pieces:
            mask, score = predict_step(self.predictor, index, window, piece, self.params, self.reach_px)
            if check_slice(mask, piece, score, self.params) is None and \
                    intensity.drift(raw, mask)[0] <= self.params.max_intensity_z and \
                    (not back_step or self._not_leading_back(index - back_step, window, mask, piece) is None):
                kept.append(mask)
        return np.logical_or.reduce(kept) if kept else None

    def _two_slices(self, window: Window, previous: np.ndarray, index: int, step: int, end: int,
                    intensity: IntensityModel, reopening: bool = False) -> dict[int, np.ndarray] | None:
        """Masks for index + step (interpolated) and index + 2 step (the model's), or None when the
        far mask fails a rule or the shape changed too much to skip (then a single step follows,
        and the far slice's embedding serves the step after it)."""
        from annotator.postprocess.interpolate import fill_between

        far = index + 2 * step
        if self.params.prefetch > 0 and abs(end - far):
            count = min(self.params.prefetch, abs(end - far) // 2)
            if count:
                self.predictor.prefetch(far + 2 * step, 2 * step, count, window)
        mask, score = predict_step(self.predictor, far, window, previous, self.params, 2 * self.reach_px)
        if check_slice(mask, previous, score, self.params) is not None or mask_iou(mask, previous) < self.params.skip_iou:
            return None
        if reopening and self._not_leading_back(index, window, mask, previous, slices=2) is not None:
            return None
        drift, median = intensity.drift(self.predictor.raw(far), mask)
        if drift > self.params.max_intensity_z:
            return None
        intensity.follow(median)
        self.tick()
        self.tick()
        middle = fill_between(previous, mask, 1, self.spacing_rc)[0] if step > 0 else \
            fill_between(mask, previous, 1, self.spacing_rc)[0]
        return {index + step: middle, far: mask}


def propagate(predictor: SlicePredictor, keys: Key | Sequence[Key], n_slices: int, *, direction: str = "both",
              index_range: tuple[int, int] | None = None, params: PropagationParams = PropagationParams(),
              slice_spacing_px: float = 1.0, spacing_rc: tuple[float, float] = (1.0, 1.0),
              extent: tuple[int, int] | None = None, labelled: Mapping[int, np.ndarray] | None = None,
              new_keys: Collection[int] = (), progress: ProgressFn | None = None,
              cancel: threading.Event | None = None) -> PropagationResult:
    """Masks for the slices around and between `keys` (see the module docstring).

    labelled: the label's masks per slice before this run (a re-propagation); a run that joins them
    stops there and the label keeps its slices from there on (PropagationParams.join_iou,
    PropagationResult.kept). new_keys: the keys made since the label's last propagation; between
    keys, slices only an older key's run reaches keep the label's masks (gap_keeps_label).

    extent: the structure's current (first, last) slice along the axis (what is labelled now, from
    an earlier propagation or painting). A correction inside it refines the structure without
    re-deciding where it ends: beyond an outermost key that lies inside the extent or on its end, the
    run stops at the extent's end. A key beyond an end (or an empty key there) moves that end.

    direction: "both", "up" (+1) or "down" (-1) beyond the outermost keys; index_range: inclusive
    (first, last) slice limits; slice_spacing_px: slice spacing over the in-plane pixel size (how far
    a surface may move in-plane per slice); spacing_rc: in-plane pixel size (shape blending). A set
    `cancel` event stops the run at the next slice and marks the result cancelled.
    """
    keys = [keys] if isinstance(keys, Key) else sorted(keys, key=lambda k: k.index)
    if not keys:
        raise ValueError("no key slice to propagate from")
    if len({k.index for k in keys}) != len(keys):
        raise ValueError("two keys on the same slice")
    if not any(k.mask.any() for k in keys):
        raise ValueError("every key slice is empty: nothing to propagate")
    if direction not in ("both", "up", "down"):
        raise ValueError(f"direction must be 'both', 'up' or 'down', got {direction!r}")
    if params.between_keys not in ("blend", "interpolate"):
        raise ValueError(f"between_keys must be 'blend' or 'interpolate', got {params.between_keys!r}")
    first, last = (0, n_slices - 1) if index_range is None else (max(0, index_range[0]), min(n_slices - 1, index_range[1]))
    for key in keys:
        if not first <= key.index <= last:
            raise ValueError(f"key slice {key.index} is outside the range {first}..{last}")
    low, high = keys[0], keys[-1]
    go_up, go_down = direction in ("both", "up"), direction in ("both", "down")
    total = (last - high.index if go_up and high.mask.any() else 0) + \
        (low.index - first if go_down and low.mask.any() else 0)
    for lower, upper in zip(keys, keys[1:], strict=False):
        total += (upper.index - lower.index - 1) * (int(lower.mask.any()) + int(upper.mask.any()))
    if params.intensity_from not in ("keys", "own"):
        raise ValueError(f"intensity_from must be 'keys' or 'own', got {params.intensity_from!r}")
    pooled = np.concatenate([structure_values(predictor.raw(k.index), k.mask) for k in keys if k.mask.any()])
    keyed = {k.index for k in keys}
    run = _Run(predictor, params, max(1.0, params.growth_slope * slice_spacing_px), max(total, 1), progress, cancel,
               spacing_rc=spacing_rc, pooled=pooled,
               labelled=None if labelled is None else {i: m for i, m in labelled.items() if i not in keyed})
    run.largest_px = max([int(np.count_nonzero(k.mask)) for k in keys] +
                         [int(np.count_nonzero(m)) for m in (labelled or {}).values()])
    run.predictor = recording = _Recording(predictor)
    result = PropagationResult(masks={k.index: k.mask.copy() for k in keys}, keys=frozenset(k.index for k in keys))
    up_end, down_end = last, first
    reopen_up = reopen_down = False  # a run from a key beyond an end of the structure's current extent
    if extent is not None:
        on_end_keeps = not params.key_on_end_reopens
        if high.index < extent[1] or (on_end_keeps and high.index == extent[1]):
            up_end = min(last, int(extent[1]))
        else:
            reopen_up = True
        if low.index > extent[0] or (on_end_keeps and low.index == extent[0]):
            down_end = max(first, int(extent[0]))
        else:
            reopen_down = True
    kept: set[int] = set()
    try:
        for go, sign, key, step, end, edge, reopen in ((go_up, "+", high, +1, up_end, last, reopen_up),
                                                        (go_down, "-", low, -1, down_end, first, reopen_down)):
            if not go:
                continue
            outward = run.chain(key, step, end, reopen, join=True)
            result.stops[sign] = outward.stop
            if outward.joined is not None:  # the label keeps its slices from there to the edge
                kept.update(range(min(outward.joined, edge), max(outward.joined, edge) + 1))
            elif end != edge and outward.stop == "volume edge":
                result.stops[sign] = f"kept to the structure's current end (slice {end})"
            result.masks.update(outward.masks)
        for lower, upper in zip(keys, keys[1:], strict=False):
            if upper.index - lower.index < 2:
                continue
            name = f"{lower.index}..{upper.index}"
            if params.between_keys == "interpolate" or upper.index - lower.index - 1 <= params.interpolate_up_to:
                result.masks.update(interpolate_gap(lower, upper, spacing_rc))
                result.stops[name] = "interpolated"
                continue
            # Between two keys both runs go on to the other key, joined or not (stopped where they
            # joined the label: CT organs 3-D after 5 corrections 0.834 -> 0.818; BENCHMARKS.md).
            up, up_stop, _ = run.chain(lower, +1, upper.index - 1)
            down, down_stop, _ = run.chain(upper, -1, lower.index + 1)
            result.masks.update(gap_masks(lower, upper, up, down, spacing_rc, agree_iou=params.gap_agree_iou,
                                          fill_unreached_gap=params.fill_unreached_gap, new_keys=new_keys,
                                          labelled=run.labelled if params.gap_keeps_label else None))
            result.stops[name] = f"up: {up_stop}; down: {down_stop}"
    except _Cancelled:
        result.cancelled = True
        result.stops["cancelled"] = "cancelled"
        return result
    finally:
        result.embedded = frozenset(recording.used)
        result.kept = frozenset(kept - keyed)
    if progress is not None:
        progress(run.total, run.total)
    return result


class _Recording:
    """A SlicePredictor that notes which (slice, window) the model was asked about."""

    def __init__(self, inner: SlicePredictor) -> None:
        self.inner = inner
        self.used: set[tuple[int, tuple[float, float]]] = set()

    def predict(self, index: int, window: Window, *, box_xyxy: np.ndarray) -> MaskPrediction:
        self.used.add((int(index), window.key()))
        return self.inner.predict(index, window, box_xyxy=box_xyxy)

    def raw(self, index: int) -> np.ndarray:
        return self.inner.raw(index)

    def prefetch(self, index: int, step: int, count: int, window: Window) -> None:
        self.inner.prefetch(index, step, count, window)


# ---- through the executor ---------------------------------------------------------------------------

class ExecutorSlices:
    """SlicePredictor through the EngineExecutor: every embedding goes through its EmbeddingService
    (memory + disk cache, so a slice is embedded at most once, ever) on the one engine thread, and
    prefetch queues the next slices there at low priority while this thread waits on predictions."""

    def __init__(self, executor: EngineExecutor, view: SliceRef) -> None:
        self.executor = executor
        self.view = view  # executor.SliceRef of any slice of the volume and axis

    def predict(self, index: int, window: Window, *, box_xyxy: np.ndarray) -> MaskPrediction:
        from annotator.engine.executor import PredictRequest, SliceRef

        ref = SliceRef(self.view.volume, self.view.axis, int(index), window)
        return self.executor.predict_result(
            PredictRequest(ref, box_xyxy=np.asarray(box_xyxy, dtype=np.float64), multimask=False))

    def raw(self, index: int) -> np.ndarray:
        return slice_2d(self.view.volume.array, self.view.axis, int(index))

    def prefetch(self, index: int, step: int, count: int, window: Window) -> None:
        from annotator.engine.executor import SliceRef

        if count <= 0:
            return
        n = int(self.view.volume.array.shape[self.view.axis])
        if 0 <= index < n:
            # Queued as index, index+1, index-1, ...: the slices behind are cached already (free).
            self.executor.prefetch(SliceRef(self.view.volume, self.view.axis, int(index), window), radius=count)


def spacing_for_axis(volume: Volume, axis: int) -> tuple[float, tuple[float, float]]:
    """(slice spacing over the smaller in-plane pixel size, in-plane (row, col) spacing in mm)."""
    from annotator.core.geometry import in_plane_axes

    spacing = tuple(float(s) for s in volume.spacing_zyx_mm)
    r_axis, c_axis = in_plane_axes(axis)
    in_plane = (spacing[r_axis], spacing[c_axis])
    return spacing[axis] / max(min(in_plane), 1e-6), in_plane


def propagate_volume(predictor: SlicePredictor, volume: Volume, axis: int, keys: Key | Sequence[Key],
                     **kwargs: Any) -> PropagationResult:
    """propagate() with the slice count and spacings taken from `volume` along `axis`."""
    ratio, spacing_rc = spacing_for_axis(volume, axis)
    return propagate(predictor, keys, int(volume.shape_zyx[axis]), slice_spacing_px=ratio,
                     spacing_rc=spacing_rc, **kwargs)


def propagate_label(executor: EngineExecutor, view: SliceRef, labels: LabelMap, label_id: int, *, keys: Sequence[Key] | None = None,
                    key_mask: np.ndarray | None = None, direction: str = "both",
                    index_range: tuple[int, int] | None = None, params: PropagationParams = PropagationParams(),
                    overwrite: bool = False, progress: ProgressFn | None = None,
                    cancel: threading.Event | None = None) -> tuple[LabelEdit | None, PropagationResult]:
    """Propagate `label_id` from its key slices and write the result into `labels` as one LabelEdit
    (push it onto the History). Without `keys`, the slice of `view` is the one key (its mask:
    `key_mask`, or the label's voxels there) in `view.window`.

    Raises PropagationCancelled, with `labels` untouched, when `cancel` is set during the run.
    """
    if keys is None:
        if key_mask is None:
            key_mask = slice_2d(labels.array, view.axis, view.index) == label_id
        if not np.any(key_mask):
            raise ValueError(f"label {label_id} has no voxels on slice {view.index} to propagate from")
        keys = [Key(int(view.index), np.asarray(key_mask, dtype=bool), view.window)]
    from annotator.engine.propagation_edit import propagation_edit

    try:
        result = propagate_volume(ExecutorSlices(executor, view), view.volume, view.axis, keys,
                                  direction=direction, index_range=index_range, params=params,
                                  progress=progress, cancel=cancel)
    finally:
        executor.cancel_prefetch()
    if result.cancelled:
        raise PropagationCancelled("propagation was cancelled; the label map was not changed")
    span = result.slice_range or (view.index, view.index)
    edit = propagation_edit(labels, result, view.axis, label_id, overwrite=overwrite, keep_tail_iou=params.keep_tail_iou,
                            description=f"propagate label {label_id} over slices {span[0]}-{span[1]}")
    log.info("propagated label %d over slices %s (stops: %s)", label_id, result.slice_range, result.stops)
    return edit, result
