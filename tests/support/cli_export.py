"""Builders for CLI export/clean/validate tests: NIfTI image + label files with known content."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from annotator.core.volume import Volume

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def make_case(folder: Path, name: str, *, seed: int = 0, spacing=(2.0, 0.8, 0.7),
              direction=None, label_spacing=None, float_image: bool = False,
              empty: bool = False) -> tuple[Path, Path, Volume, np.ndarray]:
    """Write {name}.nii.gz (CT-like image) and {name}_labels.nii.gz; returns paths, volume, labels."""
    from annotator.io import write_volume

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    array = rng.integers(-1000, 1000, size=(5, 16, 18)).astype(np.float32 if float_image else np.int16)
    volume = Volume(array, spacing_zyx_mm=spacing, origin_lps_mm=(-5.0, 7.5, 12.0),
                    direction_lps=np.eye(3) if direction is None else direction, modality="CT")
    labels = np.zeros(volume.shape_zyx, np.uint8)
    if not empty:
        labels[1, 2:6, 3:9] = 1
        labels[3, 8:12, 8:14] = 2
        labels[3, 1:3, 1:3] = 2
    image_path, label_path = folder / f"{name}.nii.gz", folder / f"{name}_labels.nii.gz"
    write_volume(volume, image_path)
    label_volume = volume.with_array(labels)
    if label_spacing is not None:
        label_volume = label_volume.with_array(labels, spacing_zyx_mm=label_spacing)
    write_volume(label_volume, label_path)
    return image_path, label_path, volume, labels


def write_pairs_csv(path: Path, rows: list[tuple[Path, Path, str]]) -> Path:
    lines = ["image,labels,case_id"] + [f"{i.name},{lab.name},{cid}" for i, lab, cid in rows]
    path.write_text("\n".join(lines) + "\n")
    return path
