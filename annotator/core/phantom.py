"""A deterministic CT-like abdominal phantom, so `annotator --demo` and tests need no download.

Everything is built from ellipsoids and cylinders in patient millimetres (LPS) with typical
Hounsfield values, plus seeded noise; the same arguments always give the same voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotator.core.labels import LabelMap, LabelTable
from annotator.core.volume import Volume

DEMO_SHAPE_ZYX = (64, 256, 256)
DEMO_SPACING_ZYX_MM = (2.5, 0.8, 0.8)
# Voxel (0, 0, 0) sits at the patient's right, anterior, inferior corner of the field of view.
DEMO_ORIGIN_LPS_MM = (-102.0, -118.0, -260.0)

# Reference structures of the phantom: id -> (name, colour). The lesion lies inside the liver.
PHANTOM_LABELS: dict[int, tuple[str, tuple[int, int, int]]] = {
    1: ("liver", (220, 90, 60)),
    2: ("spleen", (150, 60, 200)),
    3: ("kidney_right", (240, 200, 40)),
    4: ("kidney_left", (230, 160, 40)),
    5: ("aorta", (230, 30, 30)),
    6: ("vertebra", (240, 240, 220)),
    7: ("liver_lesion", (40, 200, 90)),
}

# Typical unenhanced / portal-venous HU values.
HU_AIR = -1000
HU_LUNG = -850
HU_FAT = -100
HU_MUSCLE = 45
HU_LIVER = 60
HU_SPLEEN = 48
HU_KIDNEY = 32
HU_AORTA = 170  # contrast-enhanced blood
HU_BONE_CORTEX = 900
HU_BONE_MARROW = 250
HU_LESION = 15  # hypodense (cyst-like) lesion
HU_STOMACH_GAS = -900


@dataclass(frozen=True)
class Phantom:
    """The demo image and the label map of the structures it was built from (ground truth)."""

    volume: Volume
    truth: LabelMap


def _ellipsoid(x: np.ndarray, y: np.ndarray, z: np.ndarray, centre_mm: tuple[float, float, float],
               semi_axes_mm: tuple[float, float, float]) -> np.ndarray:
    cx, cy, cz = centre_mm
    ax, ay, az = semi_axes_mm
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + ((z - cz) / az) ** 2 <= 1.0


def make_phantom(shape_zyx: tuple[int, int, int] = DEMO_SHAPE_ZYX,
                 spacing_zyx_mm: tuple[float, float, float] = DEMO_SPACING_ZYX_MM,
                 origin_lps_mm: tuple[float, float, float] = DEMO_ORIGIN_LPS_MM,
                 noise_hu: float = 12.0, seed: int = 0) -> Phantom:
    """Build the phantom on the given grid (identity direction; index x -> L, y -> P, z -> S).

    Anatomy is placed in mm relative to the centre of the field of view, so other grids (a
    smaller one for fast tests) show the same body, only sampled differently.
    """
    nz, ny, nx = (int(n) for n in shape_zyx)
    if min(nz, ny, nx) < 4:
        raise ValueError(f"phantom grid too small: {shape_zyx}")
    sz, sy, sx = (float(s) for s in spacing_zyx_mm)
    # Coordinates in mm relative to the FOV centre; z measured from the bottom slice.
    x = ((np.arange(nx) - (nx - 1) / 2.0) * sx)[None, None, :]
    y = ((np.arange(ny) - (ny - 1) / 2.0) * sy)[None, :, None]
    z = (np.arange(nz) * sz - (nz - 1) * sz / 2.0)[:, None, None]
    half_fov_x, half_fov_y = nx * sx / 2.0, ny * sy / 2.0
    half_z = max((nz - 1) * sz / 2.0, 1.0)

    image = np.full((nz, ny, nx), HU_AIR, dtype=np.float32)
    truth = np.zeros((nz, ny, nx), dtype=np.uint16)

    # Body: an elliptic cylinder that widens slightly towards the feet, with a fat layer.
    body_a = 0.92 * half_fov_x * (1.0 - 0.05 * z / half_z)
    body_b = 0.70 * half_fov_y * (1.0 - 0.05 * z / half_z)
    body_r = (x / body_a) ** 2 + ((y - 0.05 * half_fov_y) / body_b) ** 2
    body = body_r <= 1.0
    inner = body_r <= (1.0 - 6.0 / float(np.min(body_b))) ** 2
    image[np.broadcast_to(body, image.shape)] = HU_FAT
    image[np.broadcast_to(inner, image.shape)] = -30  # mesenteric fat mixed with bowel
    # Abdominal wall muscle ring just inside the fat.
    wall = inner & (body_r >= (1.0 - 14.0 / float(np.min(body_b))) ** 2)
    image[np.broadcast_to(wall, image.shape)] = HU_MUSCLE

    def mm(fx: float, fy: float, fz: float) -> tuple[float, float, float]:
        return (fx * half_fov_x, fy * half_fov_y, fz * half_z)

    def axes(fx: float, fy: float, fz: float) -> tuple[float, float, float]:
        return (fx * half_fov_x, fy * half_fov_y, fz * half_z)

    # Lungs at the top of the field of view (lower thorax), behind the liver dome.
    for side in (-1.0, 1.0):
        lung = _ellipsoid(x, y, z, mm(0.42 * side, 0.12, 1.05), axes(0.30, 0.42, 0.35)) & inner
        image[lung] = HU_LUNG

    # Vertebra (cortex + marrow) with the spinal canal behind it, running the whole length.
    vert_c = (0.0, 0.42 * half_fov_y)
    vert_r2 = (x - vert_c[0]) ** 2 + (y - vert_c[1]) ** 2
    vert_radius = 0.14 * half_fov_x
    vertebra = np.broadcast_to(vert_r2 <= vert_radius**2, image.shape)
    image[vertebra] = HU_BONE_CORTEX
    image[np.broadcast_to(vert_r2 <= (0.75 * vert_radius) ** 2, image.shape)] = HU_BONE_MARROW
    truth[vertebra] = 6
    canal = (x**2 + (y - vert_c[1] - 1.35 * vert_radius) ** 2) <= (0.45 * vert_radius) ** 2
    image[np.broadcast_to(canal, image.shape)] = 10

    # Aorta: anterior-left of the vertebra.
    aorta = (x - 0.08 * half_fov_x) ** 2 + (y - 0.14 * half_fov_y) ** 2 <= (0.09 * half_fov_x) ** 2
    aorta = np.broadcast_to(aorta, image.shape)
    image[aorta] = HU_AORTA
    truth[aorta] = 5

    # Liver: large, on the patient's right (negative L), upper abdomen, with a lesion inside.
    liver = _ellipsoid(x, y, z, mm(-0.38, -0.08, 0.35), axes(0.42, 0.48, 0.62)) & inner & ~vertebra
    image[liver] = HU_LIVER
    truth[liver] = 1
    lesion = _ellipsoid(x, y, z, mm(-0.48, -0.15, 0.42), axes(0.11, 0.11, 0.16))
    lesion &= liver
    image[lesion] = HU_LESION
    truth[lesion] = 7

    # Spleen: patient's left, posterior, upper abdomen.
    spleen = _ellipsoid(x, y, z, mm(0.55, 0.22, 0.40), axes(0.18, 0.30, 0.35)) & inner
    image[spleen] = HU_SPLEEN
    truth[spleen] = 2

    # Stomach with an air-fluid level: anterior left, under the diaphragm.
    stomach = _ellipsoid(x, y, z, mm(0.28, -0.35, 0.45), axes(0.20, 0.18, 0.25)) & inner
    stomach &= truth == 0
    image[stomach] = 20
    image[stomach & (y < -0.42 * half_fov_y)] = HU_STOMACH_GAS

    # Kidneys beside the vertebra, the right one lower (as the liver pushes it down).
    for label_id, side, centre_z in ((3, -1.0, -0.30), (4, 1.0, -0.18)):
        kidney = _ellipsoid(x, y, z, mm(0.40 * side, 0.38, centre_z), axes(0.16, 0.20, 0.42)) & inner
        kidney &= truth == 0
        image[kidney] = HU_KIDNEY
        truth[kidney] = label_id

    rng = np.random.default_rng(seed)
    image += rng.normal(0.0, noise_hu, size=image.shape).astype(np.float32)
    image = np.clip(np.rint(image), -1024, 3071).astype(np.int16)

    table = LabelTable()
    for label_id, (name, colour) in PHANTOM_LABELS.items():
        table.add(name, colour, label_id=label_id)
    volume = Volume(
        image,
        spacing_zyx_mm=spacing_zyx_mm,
        origin_lps_mm=origin_lps_mm,
        modality="CT",
        metadata={"source_path": "demo phantom", "series_description": "Demo CT phantom (generated)",
                  "warnings": []},
    )
    return Phantom(volume=volume, truth=LabelMap(volume.shape_zyx, table, truth))


def demo_volume() -> Volume:
    """The bundled demo CT (256x256x64, 0.8x0.8x2.5 mm, non-zero origin)."""
    return make_phantom().volume
