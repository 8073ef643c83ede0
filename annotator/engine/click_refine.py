"""Clicks beyond the model: where a box-trained model cannot follow a click (thin, low-contrast or
touching structures), the mask is refined by a random walker on the image (scikit-image; the region
seen in its own contrast, not the model's input window), seeded by every click so far, the mask's
confident core and the clear background around it; the change is taken only near the new click
(within 3x its distance to the mask's edge, at least 3 px of a 128-px slice, more on a larger one:
pixel_lengths), so a click fixes what it points at and leaves a good mask elsewhere alone; of what a
positive click adds, only tissue more like the clicked than like the rest outside stays
(additions_like_the_click), no further from the mask than twice the click's distance from it
(addition_reach), and a negative click never leaves the mask larger than it was
(negative_never_grows); on a slice finer than the reference it leaves no hole or crumb smaller
than a reference pixel (speck_side_px). One exception: a negative click in the core of a mask
that is one compact piece, on tissue like the rest of it, rejects the whole mask (the model took
the neighbour the box also held), and the next positive click starts afresh (rejects_mask,
looks_like_the_mask); in a mask of several pieces it rejects its piece (rejected_piece).

Measured with `annotator evaluate` (organs, mean Dice after the box and 1..5 clicks in the app's
input window): shared CT 0.710 -> 0.751 0.782 0.798 0.827 0.824, CTA 0.819 -> 0.870 0.887 0.899
0.916 0.919 (with the whole-mask rejection and the far-click rule of click_strategy: CT 0.861,
CTA 0.919; since the first box gets its training margin, with a reach of 3 px: CT 0.748 -> 0.869,
CTA 0.903 -> 0.911; since the walker sees the region in its own contrast (contrast_percentile):
CT 0.748 -> 0.890, CTA 0.903 -> 0.921; since additions must look like the clicked tissue:
CT 0.748 -> 0.895, CTA 0.903 -> 0.934); the box-growing/cutting strategy before it reached 0.750
and 0.885. Variants that scored lower are listed in BENCHMARKS.md (issue 19 section): the random
walker's whole mask lowered good masks at the first click (spleen 0.93 -> 0.83), a positive click
that may only add reached 0.787 on the CT, other seeded cores 0.67-0.83.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from annotator.engine.mask_specks import speck_px, without_specks
from annotator.engine.pixel_lengths import length_scale

FOREGROUND, BACKGROUND = 1, 2

# The lengths in pixels below (RefineParams' *_px, click_strategy.ClickParams' *_px) are those of a
# slice of engine.pixel_lengths' reference side and grow with a larger slice, as far as the object's
# size allows (length_scale): on the labelled CT resampled to 0.75 mm in-plane (488-pixel slices),
# mean Dice after five clicks 0.829 with fixed lengths, 0.797 grown with the matrix alone, 0.856
# capped by the object (BENCHMARKS.md).
@dataclass(frozen=True)
class RefineParams:
    beta: float = 130.0             # random walker edge weight (image scaled to 0..1)
    core_share: float = 0.7         # mask pixels deeper than this share of its maximum depth seed "inside"
    min_core_px: float = 1.5        # ... and never shallower than this
    background_share: float = 0.5   # outside pixels further than this x sqrt(area) seed "outside"
    min_background_px: float = 2.0
    margin_px: int = 4              # the refined region: the box and the clicks, plus this margin
    reach_min_px: float = 3.0       # the new click changes the mask within this radius of it ... (6 until the
                                    # first box got its training margin: clicks on its better masks then
                                    # re-drew good edges, CT organs after five clicks 0.828 against 0.869)
    reach_per_error: float = 3.0    # ... or this many times its distance to the mask's edge
    click_radius_px: float = 1.0    # each click seeds a disk of this radius
    clear_radius_px: float = 3.0    # ... and clears opposite seeds within this radius (clearing as far
                                    # as the click is from the mask's edge scored lower: CT organs
                                    # 0.775 against 0.856 after five clicks)
    # The clicked tissue's grey level: the median of the square of this half-size around the click
    # (a 3x3 square at 1).
    sample_radius_px: float = 1.0
    max_side_px: int = 160          # larger regions are refined at reduced resolution (compute, not scaled)
    # The walker sees the refined region in a window from this percentile of its grey levels to
    # (100 - it), not in the model's input window: a wide window chosen for the model (the bone
    # window a vertebra's box gets) leaves the walker little contrast between the object and its
    # neighbours (a filled spinal canal, a vessel wall). Measured over three placements of the
    # simulated user's boxes, mean Dice after five clicks, all items: shared CT 0.833 / 0.835 /
    # 0.842 -> 0.864 / 0.865 / 0.853, CTA 0.907 / 0.903 / 0.912 -> 0.923 / 0.918 / 0.927
    # (percentiles 1, 2, 5, 10, 25, 30, 35 all scored between; BENCHMARKS.md). 0: the input window as is.
    contrast_percentile: float = 20.0
    # ... never narrower than this many grey levels, so the noise of a flat region does not become
    # edges (a guard, not tuned: the narrowest window on the labelled CTs was 16).
    contrast_min_width: float = 8.0
    # A negative click in the core of a mask of one compact piece (as deep as its core seeds, and no
    # part further from the click than reject_spread x its depth) rejects the whole mask: the model
    # took the neighbour the box also held (the liver dome under a lung lobe's box). The mask then
    # seeds nothing and the next positive click starts afresh. In a mask of several pieces, such a
    # click rejects its piece (a vessel taken beside a thin piece of pancreas, which two negative
    # clicks only trimmed). False: such a click trims locally.
    reject_whole_mask: bool = True
    reject_spread: float = 2.5
    # ... and only where the clicked pixels look like the mask (within this many robust sd of its
    # median grey level): a click on something unlike the rest points at a wrong part inside it (a
    # vertebra mask that filled the spinal canal, 0.81 -> 0.00 when rejected whole), not at a
    # wrong object. Every such test of the evaluation (both labelled CTs and their finer copies,
    # three placements of the boxes, the 2-D rows and the 3-D loops): clicks on a wrong object
    # or piece lay 0.00-0.90 sd from the mask's median, clicks on a filled canal 1.64-12.5 (its
    # share of the mask and the bone's spread set it: 2.02 on the shared CT, 1.64 on its finer
    # copy). The limit lies between the two; at 2 the finer copy's T12 was rejected whole at its
    # first click (0.80 -> 0.00, 0.81 after five; now 0.84, 0.93), with nothing else changed
    # (BENCHMARKS.md).
    reject_like_sd: float = 1.25
    # Of what a positive click adds, keep only the pixels whose grey level is nearer the clicked
    # tissue's than that of the outside (what the walker left out): its probability runs on past a
    # faint edge into the neighbour, and a click says "this tissue", not "this place". Measured over
    # three placements of the simulated user's boxes (as drawn / 1 px right / 1 px down), mean Dice
    # after five clicks, all items: shared CT 0.867 / 0.867 / 0.862 -> 0.873 / 0.868 / 0.871, CTA
    # 0.923 / 0.918 / 0.927 -> 0.935 / 0.931 / 0.936; 3-D after five corrections CT 0.807 -> 0.804,
    # CTA 0.774 -> 0.786 (means; BENCHMARKS.md). Compared in the region's clipped 20..80 percentile
    # window instead, noise on a region of one tissue became "unlike" (a large missed part kept 62 %).
    # The same test on what a negative click removes (nearer the tissue kept than the clicked one)
    # lowered the CT (0.875 -> 0.864; colon, costal cartilages: masks of mixed tissue); not kept.
    additions_like_the_click: bool = True
    # A negative click whose refinement leaves the mask larger than before it is cut to the mask
    # before it: the walker re-draws the region within the click's reach, and an earlier positive
    # click's seed beside the new negative one can grow the very tissue the user just said is not
    # the structure (the CT's pancreas, slice 14: its fifth click, negative, took the mask 0.83 ->
    # 0.78 while growing the piece it pointed at). A negative click that reshapes and shrinks the
    # mask keeps the walker's answer (cutting every negative click to the mask before it scored
    # lower: CT all items after five clicks 0.856 against 0.873; colon, portal vein). Measured
    # over three placements of the simulated user's boxes (as drawn / 1 px right / 1 px down),
    # organs after five clicks: CT 0.895 / 0.891 / 0.891 -> 0.900 / 0.891 / 0.891, CTA unchanged
    # (BENCHMARKS.md). False: the walker's answer as is.
    negative_never_grows: bool = True
    # What a positive click adds reaches no further from the mask before it than this many times the
    # click's own distance from it: a click marks the middle of what was missed, so the missed part
    # ends about as far beyond it as the mask's edge lies before it. The walker's answer runs on
    # past a faint edge into a touching neighbour of like grey level, where additions_like_the_click
    # cannot tell them apart (the CT's thin pancreas: each click on its 1 px missed rim added a
    # piece of the neighbour above, 3-4 px out). Measured over three placements of the simulated
    # user's boxes (as drawn / 1 px right / 1 px down), mean Dice after five clicks, all items:
    # shared CT 0.878 / 0.868 / 0.871 -> 0.880 / 0.868 / 0.874, CTA 0.935 / 0.931 / 0.936 -> 0.939 /
    # 0.934 / 0.941, no step lower in any placement; 3-D after five corrections CT 0.836 -> 0.836,
    # CTA 0.785 -> 0.780 (means; the false lumen's fifth correction went to another slice).
    # Factor 1.5: CT 0.875; 2.5 and 3 barely act (0.877, 0.878) (BENCHMARKS.md). 0: no limit but
    # the click's reach.
    addition_reach: float = 2.0
    # The refinement leaves no speck in the region it re-drew: a hole or an island of fewer pixels
    # than a square of this side (a pixel of the reference slice, grown with the matrix as the other
    # lengths are) that holds no click is filled or dropped. The walker and additions_like_the_click
    # decide pixel by pixel, and on a fine, noisy matrix they leave pinholes and crumbs finer than
    # anything the rules were measured at: on the labelled CT resampled to 0.75 mm with 20 HU of
    # noise, 2.98 holes and 1.50 extra islands per mask after five clicks (the truth 0.05 and 0.17),
    # 0.45 and 0.68 with the rule, mean Dice after five clicks 0.845 either way (the smooth copy
    # 1.43 -> 0.33 holes, 0.860 either way; the CTA copies alike). On a slice no finer than the
    # reference nothing is cleared: a pixel there can be anatomy (filling holes below a click's seed
    # disk there filled the shared CT's right renal sinus, 0.97 -> 0.93 after five clicks in every
    # box placement; BENCHMARKS.md). The box's first mask is cleared the same way
    # (slice_segmentation.first_prompt; noisy CT copy 0.75 -> 0.12 holes per mask, Dice unchanged).
    # 0: the refinement's and the model's answers as they are.
    speck_side_px: float = 1.0

    def scaled(self, factor: float) -> RefineParams:
        """These parameters with their pixel lengths (not max_side_px, a compute cap) times `factor`."""
        if factor == 1.0:
            return self
        return replace(self, min_core_px=self.min_core_px * factor, min_background_px=self.min_background_px * factor,
                       margin_px=int(round(self.margin_px * factor)), reach_min_px=self.reach_min_px * factor,
                       click_radius_px=self.click_radius_px * factor, clear_radius_px=self.clear_radius_px * factor,
                       sample_radius_px=self.sample_radius_px * factor, speck_side_px=self.speck_side_px * factor)


def _region(shape: tuple[int, int], box_xyxy: np.ndarray | None, points_rc: Sequence[tuple[int, int]],
            margin: int) -> tuple[slice, slice]:
    h, w = shape
    rows: list[float] = [r for r, _ in points_rc]
    cols: list[float] = [c for _, c in points_rc]
    if box_xyxy is not None:
        x0, y0, x1, y1 = (float(v) for v in box_xyxy)
        rows += [y0, y1]
        cols += [x0, x1]
    r0, r1 = int(max(0, np.floor(min(rows)) - margin)), int(min(h - 1, np.ceil(max(rows)) + margin))
    c0, c1 = int(max(0, np.floor(min(cols)) - margin)), int(min(w - 1, np.ceil(max(cols)) + margin))
    return slice(r0, r1 + 1), slice(c0, c1 + 1)


def seeds_for(mask: np.ndarray, clicks_rc: Sequence[tuple[int, int, bool]], params: RefineParams) -> np.ndarray:
    """int32 seeds (0 unknown, 1 inside, 2 outside) for a mask crop and clicks in crop pixels."""
    from scipy.ndimage import distance_transform_edt

    seeds = np.zeros(mask.shape, dtype=np.int32)
    if mask.any():
        depth = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        seeds[depth >= max(params.min_core_px, params.core_share * float(depth.max()))] = FOREGROUND
        distance_out = distance_transform_edt(~mask)
        far = max(params.min_background_px, params.background_share * float(np.sqrt(mask.sum())))
        seeds[distance_out >= far] = BACKGROUND
    seeds[0, :] = seeds[-1, :] = BACKGROUND
    seeds[:, 0] = seeds[:, -1] = BACKGROUND
    rr, cc = np.ogrid[: mask.shape[0], : mask.shape[1]]
    for row, col, positive in clicks_rc:
        near = (rr - row) ** 2 + (cc - col) ** 2
        opposite = BACKGROUND if positive else FOREGROUND
        seeds[(near <= params.clear_radius_px ** 2) & (seeds == opposite)] = 0
        seeds[near <= params.click_radius_px ** 2] = FOREGROUND if positive else BACKGROUND
    return seeds


def refine_with_clicks(image_hw_u8: np.ndarray, mask_hw: np.ndarray, clicks_rc: Sequence[tuple[int, int, bool]],
                       box_xyxy: np.ndarray | None = None, params: RefineParams = RefineParams()) -> np.ndarray:
    """The mask after the newest click (the last of `clicks_rc`, all (row, col, positive) in slice
    pixels): a random walker over the box and clicks, taken near that click only (module
    docstring). Every click ends on its side. Pixel lengths in `params` are the reference slice's
    (pixel_lengths.length_scale: grown with the matrix, not past the object's size)."""
    from scipy.ndimage import distance_transform_edt
    from skimage.segmentation import random_walker

    mask = np.asarray(mask_hw, dtype=bool)
    if not clicks_rc:
        return mask.copy()
    params = params.scaled(length_scale(mask.shape, _object_area(mask, box_xyxy)))
    rows, cols = _region(mask.shape, box_xyxy, [(r, c) for r, c, _ in clicks_rc], params.margin_px)
    grey = np.asarray(image_hw_u8)
    rejected = params.reject_whole_mask and rejects_mask(mask, clicks_rc[-1], params) and \
        looks_like_the_mask(grey, mask, clicks_rc[-1], params)
    piece = None if rejected else rejected_piece(grey, mask, clicks_rc[-1], params)
    if piece is not None:
        out = mask & ~piece
        for row, col, positive in clicks_rc:
            out[row, col] = positive
        return out
    crop_mask = np.zeros_like(mask[rows, cols]) if rejected else mask[rows, cols]
    grey_crop = grey[rows, cols].astype(np.float64)
    image = local_contrast(grey_crop, params.contrast_percentile, params.contrast_min_width)
    local = [(r - rows.start, c - cols.start, p) for r, c, p in clicks_rc]
    scale = min(1.0, params.max_side_px / max(crop_mask.shape))
    if scale < 1.0:
        image, crop_mask, local = _shrink(image, crop_mask, local, scale)
    seeds = seeds_for(crop_mask, local, params.scaled(scale))
    out = mask.copy()
    if (seeds == FOREGROUND).any() and (seeds == BACKGROUND).any():
        with warnings.catch_warnings():
            # Its "probability outside [0, 1] within tolerance" note is expected on flat images.
            warnings.simplefilter("ignore", UserWarning)
            prob = random_walker(image, seeds, beta=params.beta, mode="cg_j", tol=1e-3,
                                 return_full_prob=True)[FOREGROUND - 1]
        if scale < 1.0:
            prob = _grow(prob, (rows.stop - rows.start, cols.stop - cols.start))
        out[rows, cols] = prob > 0.5
        # distance to the mask, for a positive click: its reach and how far its additions may go
        outside = distance_transform_edt(~mask) if clicks_rc[-1][2] and mask.any() else None
        out = np.where(_reach(mask, clicks_rc[-1], params, outside), out, mask)
        if params.additions_like_the_click and clicks_rc[-1][2]:
            out[rows, cols] = additions_like_the_click(grey_crop, mask[rows, cols], out[rows, cols], prob <= 0.5,
                                                       (clicks_rc[-1][0] - rows.start, clicks_rc[-1][1] - cols.start),
                                                       params.sample_radius_px)
        if params.addition_reach > 0 and outside is not None:
            out &= mask | (outside <= params.addition_reach * float(outside[clicks_rc[-1][0], clicks_rc[-1][1]]))
        below = speck_px(params.speck_side_px)
        if below > 1:
            out[rows, cols] = without_specks(out, clicks_rc, below)[rows, cols]
    elif rejected:
        out[:] = False  # nothing left says any of it belongs
    if params.negative_never_grows and not clicks_rc[-1][2] and out.sum() > mask.sum():
        out &= mask
    for row, col, positive in clicks_rc:
        out[row, col] = positive
    return out


def _object_area(mask: np.ndarray, box_xyxy: np.ndarray | None) -> float | None:
    """The object's area in pixels as the click finds it: the mask's, or the box's when the mask is empty."""
    if mask.any():
        return float(np.count_nonzero(mask))
    if box_xyxy is not None:
        x0, y0, x1, y1 = (float(v) for v in box_xyxy)
        return max(1.0, (x1 - x0 + 1.0) * (y1 - y0 + 1.0))
    return None


def local_contrast(image: np.ndarray, percentile: float, min_width: float = 8.0) -> np.ndarray:
    """The region's 8-bit grey levels mapped to 0..1 by a window from its `percentile` to its
    (100 - percentile) percentile, at least `min_width` grey levels wide, clipped (percentile 0:
    the 0..255 range as is)."""
    image = np.asarray(image, dtype=np.float64)
    if percentile <= 0:
        return image / 255.0
    lo, hi = (float(v) for v in np.percentile(image, [percentile, 100.0 - percentile]))
    half = max(hi - lo, min_width, 1e-6) / 2.0
    centre = (lo + hi) / 2.0
    return np.clip((image - (centre - half)) / (2.0 * half), 0.0, 1.0)


def additions_like_the_click(grey: np.ndarray, before: np.ndarray, after: np.ndarray, walker_outside: np.ndarray,
                             click_rc: tuple[int, int], sample_radius_px: float = 1.0) -> np.ndarray:
    """`after` less the pixels a positive click added whose grey level lies nearer the median of the
    outside (what the walker left out and the mask did not hold) than the clicked tissue's
    (clicked_grey). All arrays are the refined region's crop; `grey` in any linear scale (the
    comparison does not depend on it)."""
    image = np.asarray(grey, dtype=np.float64)
    outside = walker_outside & ~before
    added = after & ~before
    if not outside.any() or not added.any():
        return after.copy()
    clicked = clicked_grey(image, click_rc, sample_radius_px)
    rest = float(np.median(image[outside]))
    return after & ~(added & (np.abs(image - clicked) > np.abs(image - rest)))


def rejects_mask(mask: np.ndarray, click: tuple[int, int, bool], params: RefineParams) -> bool:
    """True when a negative click says the whole mask is the wrong object: the mask is one piece,
    the click lies in its core, and the piece is compact around the click. A negative click near an
    edge, or on a mask that reaches far beyond it (a vessel with a wrong end), trims instead."""
    from scipy.ndimage import distance_transform_edt, label

    row, col, positive = click
    if positive or not mask[row, col]:
        return False
    _, pieces = label(mask, structure=np.ones((3, 3), dtype=bool))
    if pieces != 1:
        return False
    depth = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    here = float(depth[row, col])
    if here < max(params.min_core_px, params.core_share * float(depth.max())):
        return False
    rows, cols = np.nonzero(mask)
    farthest = float(np.sqrt(((rows - row) ** 2 + (cols - col) ** 2).max()))
    return farthest <= params.reject_spread * here


def rejected_piece(image_hw: np.ndarray, mask: np.ndarray, click: tuple[int, int, bool],
                   params: RefineParams) -> np.ndarray | None:
    """The piece of a mask in several pieces that a negative click rejects, as rejects_mask and
    looks_like_the_mask judge a whole mask: the click lies in the core of its (8-connected) piece,
    the piece is compact around it and the clicked tissue is like the piece's. None otherwise, and
    for a mask of one piece (that is rejects_mask's case)."""
    from scipy.ndimage import label

    row, col, positive = click
    if positive or not params.reject_whole_mask or not mask[row, col]:
        return None
    labelled, pieces = label(mask, structure=np.ones((3, 3), dtype=bool))
    if pieces < 2:
        return None
    piece = labelled == labelled[row, col]
    if rejects_mask(piece, click, params) and looks_like_the_mask(image_hw, piece, click, params):
        return piece
    return None


def looks_like_the_mask(image_hw: np.ndarray, mask: np.ndarray, click: tuple[int, int, bool],
                        params: RefineParams) -> bool:
    """True when the grey level around the click (clicked_grey) lies within reject_like_sd robust sd
    (1.4826 MAD, at least 2 grey levels) of the mask's median."""
    row, col, _ = click
    grey = image_hw if image_hw.ndim == 2 else image_hw[..., 0]
    values = grey[mask].astype(np.float64)
    if values.size == 0:
        return True
    median = float(np.median(values))
    sd = max(1.4826 * float(np.median(np.abs(values - median))), 2.0)
    here = clicked_grey(grey, (row, col), params.sample_radius_px)
    return abs(here - median) <= params.reject_like_sd * sd


def clicked_grey(image_hw: np.ndarray, click_rc: tuple[int, int], radius_px: float = 1.0) -> float:
    """The median grey level of the square of half-size round(radius_px) (at least 1) around the click."""
    row, col = click_rc
    half = max(1, int(round(radius_px)))
    return float(np.median(image_hw[max(0, row - half): row + half + 1, max(0, col - half): col + half + 1]))


def _reach(mask: np.ndarray, click: tuple[int, int, bool], params: RefineParams,
           outside: np.ndarray | None) -> np.ndarray:
    """Where the newest click may change the mask: a disk around it, larger the further the click
    is from the mask's edge (how wrong the mask is there). `outside`: the distance to the mask
    (distance_transform_edt(~mask)) for a positive click, None when the mask is empty."""
    from scipy.ndimage import distance_transform_edt

    row, col, positive = click
    if positive:
        error = float(outside[row, col]) if outside is not None else np.inf
    else:
        error = float(distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1][row, col])
    radius = max(params.reach_min_px, params.reach_per_error * error)
    rr, cc = np.ogrid[: mask.shape[0], : mask.shape[1]]
    return (rr - row) ** 2 + (cc - col) ** 2 <= radius ** 2


def _shrink(image: np.ndarray, mask: np.ndarray, clicks: list[tuple[int, int, bool]],
            scale: float) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, bool]]]:
    import cv2

    h, w = mask.shape
    size = (max(2, int(round(w * scale))), max(2, int(round(h * scale))))
    small_image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5
    sy, sx = size[1] / h, size[0] / w
    small_clicks = [(min(size[1] - 1, int(r * sy)), min(size[0] - 1, int(c * sx)), p) for r, c, p in clicks]
    return small_image, small_mask, small_clicks


def _grow(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(prob.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
