"""A clean-up step a plugin could contribute (tests): grow each label by N mm in-plane and through-plane."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from annotator.postprocess.operations import CleanupOperation


def _grow(mask, value, spacing, per_slice_axis, connectivity):
    return ndimage.distance_transform_edt(~np.asarray(mask, bool), sampling=spacing) <= value


GROW = CleanupOperation("grow", "Grow by", "--grow", _grow, "grow each label by this distance, e.g. 2mm",
                        unit="mm", default=1.0, maximum=10.0, step=0.5)
