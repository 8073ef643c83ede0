"""Small datasets with planted defects for the review tests: three cases of one image, one with an
island, one with a hole, one with a label missing, written as nnU-Net v2, MONAI datalist or CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from annotator.core.volume import Volume
from annotator.io import load_volume, write_volume
from annotator.postprocess.cleanup import CleanupOptions, clean_label_map

SHARED_CT = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "labelled" / "ct_totalseg_abdomen_3mm"
# TotalSegmentator values -> consecutive values for nnU-Net
CT_LABELS = {1: ("spleen", 1), 2: ("kidney_right", 2), 3: ("kidney_left", 3), 5: ("liver", 4)}


def shared_ct_case() -> tuple[Volume, np.ndarray, dict[int, str]]:
    """The shared CT with four organs renumbered 1..4 and cleaned (no islands, no holes)."""
    image = load_volume(SHARED_CT / "image.nii.gz")
    source = load_volume(SHARED_CT / "labels.nii.gz").array
    labels = np.zeros(source.shape, np.uint8)
    for old, (_, new) in CT_LABELS.items():
        labels[source == old] = new
    labels, _ = clean_label_map(labels, image.spacing_zyx_mm, CleanupOptions(fill_holes=True, largest=True))
    return image, labels, {new: name for name, new in CT_LABELS.values()}


def planted_cases(labels: np.ndarray, names: dict[int, str]) -> dict[str, tuple[np.ndarray, str]]:
    """case id -> (label array, what was planted). The island lands in background far from the
    label it belongs to; the hole is carved deep inside the largest label; the missing label is
    the smallest one."""
    from scipy import ndimage

    counts = {v: int(np.count_nonzero(labels == v)) for v in names}
    biggest, smallest = max(counts, key=counts.get), min(counts, key=counts.get)
    island = labels.copy()
    background = ndimage.binary_erosion(labels == 0, iterations=3)
    zc, yc, xc = np.argwhere(background)[len(np.argwhere(background)) // 3]
    island[zc - 1:zc + 2, yc - 1:yc + 2, xc - 1:xc + 2] = biggest
    hole = labels.copy()
    # padded: a label cut by the volume's edge is not deep there (a hole must be enclosed)
    depth = ndimage.distance_transform_edt(np.pad(labels == biggest, 1))[1:-1, 1:-1, 1:-1]
    zc, yc, xc = np.unravel_index(int(np.argmax(depth)), depth.shape)
    hole[zc - 1:zc + 2, yc - 1:yc + 2, xc - 1:xc + 2] = 0
    missing = labels.copy()
    missing[missing == smallest] = 0
    return {"case_001": (island, f"island:{biggest}"), "case_002": (hole, f"hole:{biggest}"),
            "case_003": (missing, f"missing:{smallest}")}


def write_dataset(root: Path, layout: str, image: Volume, cases: dict[str, np.ndarray],
                  names: dict[int, str]) -> Path:
    """Write the cases as `layout` (nnunet, datalist or csv) under root; returns what to open."""
    image_dir, label_dir = (root / "imagesTr", root / "labelsTr") if layout == "nnunet" else \
        (root / "images", root / "labels")
    image_dir.mkdir(parents=True)
    label_dir.mkdir(parents=True)
    entries = []
    for case_id, labels in cases.items():
        image_name = f"{case_id}_0000.nii.gz" if layout == "nnunet" else f"{case_id}.nii.gz"
        write_volume(image, image_dir / image_name)
        write_volume(image.with_array(labels.astype(np.uint8)), label_dir / f"{case_id}.nii.gz")
        entries.append((f"{image_dir.name}/{image_name}", f"{label_dir.name}/{case_id}.nii.gz", case_id))
    if layout == "nnunet":
        (root / "dataset.json").write_text(json.dumps({
            "channel_names": {"0": "CT"}, "labels": {"background": 0, **{n: v for v, n in names.items()}},
            "numTraining": len(cases), "file_ending": ".nii.gz"}, indent=1))
        return root
    if layout == "datalist":
        (root / "datalist.json").write_text(json.dumps({
            "labels": {str(v): n for v, n in names.items()},
            "training": [{"image": i, "label": lab} for i, lab, _ in entries]}, indent=1))
        return root
    with open(root / "pairs.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "labels", "case_id"])
        writer.writerows(entries)
    (root / "labels.json").write_text(json.dumps({"labels": {str(v): n for v, n in names.items()}}))
    return root / "pairs.csv"
