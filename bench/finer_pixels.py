"""A labelled case on an in-plane grid N times finer (slices kept): the same anatomy on a larger
matrix, as a 512-matrix CT is against the small labelled crops, to check that the app does the
same there (lengths in pixels that should follow the anatomy). Run on purpose, not in CI:

    .venv/bin/python bench/finer_pixels.py ../shared/data/labelled/ct_totalseg_abdomen_3mm /tmp/ct4 --factor 4
    .venv/bin/annotator evaluate /tmp/ct4/image.nii.gz /tmp/ct4/labels.nii.gz --labels-table /tmp/ct4/labels.json

The image is resampled with a B-spline (smoother than a scan acquired that fine: a proxy for
pixel-size effects, not for noise), the label map with nearest neighbour; the physical extent,
direction and slice axis stay as they are. `--noise-sd` adds what the B-spline lacks: Gaussian
noise of that sd (image units, HU for CT), correlated in-plane over `--noise-correlation-px` fine
pixels as a reconstruction kernel correlates it. A rule tuned on smooth copies must hold on a noisy
one too: a scan acquired that fine is noisier per pixel, not smoother (BENCHMARKS.md, twenty-first
stop). The evaluation's item selection has a pixel-count floor, so the finer copy lists more small
structures: compare the items both runs hold.

    .venv/bin/python bench/finer_pixels.py ../shared/data/labelled/ct_totalseg_abdomen_3mm /tmp/ct4n20 --factor 4 --noise-sd 20
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case", type=Path, help="folder with image.nii.gz, labels.nii.gz, labels.json")
    parser.add_argument("out", type=Path, help="folder for the finer copy (created)")
    parser.add_argument("--factor", type=float, default=4.0, help="in-plane pixels per original pixel, per axis")
    parser.add_argument("--slice-axis", type=int, default=2, choices=(0, 1, 2),
                        help="the image axis (SimpleITK x, y, z order) left as it is; z for axial slices")
    parser.add_argument("--noise-sd", type=float, default=0.0, help="added noise sd, image units (0: none)")
    parser.add_argument("--noise-correlation-px", type=float, default=1.0,
                        help="in-plane Gaussian sigma of the noise's correlation, fine pixels")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (the copy is reproducible)")
    args = parser.parse_args()

    import numpy as np
    import SimpleITK as sitk

    if args.factor <= 0:
        parser.error("--factor must be positive")
    if args.noise_sd < 0 or args.noise_correlation_px < 0:
        parser.error("--noise-sd and --noise-correlation-px must not be negative")
    image = sitk.ReadImage(str(args.case / "image.nii.gz"))
    labels = sitk.ReadImage(str(args.case / "labels.nii.gz"))
    factor = np.full(3, args.factor)
    factor[args.slice_axis] = 1.0
    spacing = np.array(image.GetSpacing()) / factor
    size = [int(round(n * f)) for n, f in zip(image.GetSize(), factor, strict=True)]
    direction = np.array(image.GetDirection()).reshape(3, 3)
    # the first voxel's centre moves by half the change of the voxel size: the same physical extent
    origin = np.array(image.GetOrigin()) + direction @ ((spacing - np.array(image.GetSpacing())) / 2.0)
    minimum = float(sitk.GetArrayViewFromImage(image).min())

    def resampled(volume: sitk.Image, interpolator: int, fill: float) -> sitk.Image:
        return sitk.Resample(volume, size, sitk.Transform(), interpolator, origin.tolist(), spacing.tolist(),
                             image.GetDirection(), fill, volume.GetPixelID())

    args.out.mkdir(parents=True, exist_ok=True)
    fine = resampled(image, sitk.sitkBSpline, minimum)
    if args.noise_sd > 0:
        fine = with_noise(fine, args.noise_sd, args.noise_correlation_px, args.slice_axis, args.seed)
    sitk.WriteImage(fine, str(args.out / "image.nii.gz"))
    sitk.WriteImage(resampled(labels, sitk.sitkNearestNeighbor, 0), str(args.out / "labels.nii.gz"))
    shutil.copy(args.case / "labels.json", args.out / "labels.json")
    print(f"{args.case}: {list(image.GetSize())} -> {size} voxels, spacing {list(image.GetSpacing())} -> "
          f"{spacing.tolist()} mm; wrote {args.out}")
    return 0


def with_noise(image, sd: float, correlation_px: float, slice_axis: int, seed: int):
    """`image` plus Gaussian noise of standard deviation `sd`, smoothed in-plane by a Gaussian of
    `correlation_px` (then rescaled to `sd`), independent between slices; cast back to its pixel type."""
    import numpy as np
    import SimpleITK as sitk
    from scipy.ndimage import gaussian_filter

    array = sitk.GetArrayFromImage(image)          # (z, y, x): SimpleITK axis a is numpy axis 2 - a
    noise = np.random.default_rng(seed).normal(0.0, 1.0, array.shape)
    if correlation_px > 0:
        sigma = [correlation_px] * 3
        sigma[2 - slice_axis] = 0.0
        noise = gaussian_filter(noise, sigma)
    noise *= sd / max(float(noise.std()), 1e-12)
    out = array.astype(np.float64) + noise
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        out = np.clip(np.round(out), info.min, info.max)
    noisy = sitk.GetImageFromArray(out.astype(array.dtype))
    noisy.CopyInformation(image)
    return noisy


if __name__ == "__main__":
    sys.exit(main())
