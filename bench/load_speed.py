"""Load-speed benchmark: our loader (series discovery included) vs SimpleITK on one generated CT series.

Writes a 512x512x300 int16 CT-like series as DICOM (one file per slice, uncompressed) and as
.nii.gz into a temporary folder, then times, alternating, in this one process:
  ours  : annotator.io.load_volume(folder)          (discovery + sort + decode + rescale)
  sitk  : ImageSeriesReader with GetGDCMSeriesFileNames(folder) (its own discovery) + Execute
and the same for the .nii.gz (load_volume vs sitk.ReadImage). Prints JSON as the last line with
the median times and ratio = ours / sitk (goal: DICOM ratio <= 1.1).

Usage: python bench/load_speed.py [--slices 300] [--size 512] [--repeats 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def make_phantom(n_slices: int, size: int) -> np.ndarray:
    """CT-like stored values (HU + 1024): air, a body ellipse, organs and bone, varying with z."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    volume = np.empty((n_slices, size, size), dtype=np.int16)
    rng = np.random.default_rng(0)
    for z in range(n_slices):
        t = z / max(1, n_slices - 1)
        hu = np.full((size, size), -1000.0, np.float32)
        body = (xx / (0.42 - 0.05 * t)) ** 2 + (yy / 0.32) ** 2 < 1
        hu[body] = 40
        hu[((xx - 0.12) / 0.12) ** 2 + ((yy + 0.02) / 0.1) ** 2 < 1] = 60 + 20 * t  # liver-like
        hu[(xx / 0.05) ** 2 + ((yy - 0.2) / 0.05) ** 2 < 1] = 700  # spine
        hu += rng.normal(0, 8, hu.shape).astype(np.float32) * body
        volume[z] = np.clip(hu + 1024, 0, 4095).astype(np.int16)
    return volume


def write_dicom(folder: Path, stored: np.ndarray, spacing_mm=(0.7, 0.7, 1.25)) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    n = stored.shape[0]
    order = np.random.default_rng(1).permutation(n)  # file names do not follow slice order
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 2, k + 1
        ds.SeriesDescription = "benchmark phantom"
        ds.PatientName, ds.PatientID = "Bench^Phantom", "BENCH"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [-179.0, -179.0, -300.0 + spacing_mm[2] * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [spacing_mm[1], spacing_mm[0]]
        ds.SliceThickness = spacing_mm[2]
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = stored.shape[1], stored.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = stored[k].tobytes()
        ds.save_as(folder / f"IM{order[k]:05d}", enforce_file_format=True)


def time_it(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sitk-threads", type=int, default=0,
                        help="threads for SimpleITK (default 0: its own default, i.e. 'plain')")
    parser.add_argument("--keep", type=Path, help="write the data here and keep it (default: temp dir)")
    args = parser.parse_args()

    import nibabel as nib
    import SimpleITK as sitk

    from annotator.io import dicom as dicom_io
    from annotator.io import load_volume

    if args.sitk_threads:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.sitk_threads)
    tmp = tempfile.TemporaryDirectory() if args.keep is None else None
    root = Path(tmp.name) if tmp else args.keep
    folder = root / "dicom"
    nii = root / "ct.nii.gz"
    stored = make_phantom(args.slices, args.size)
    t0 = time.perf_counter()
    if not folder.exists():
        write_dicom(folder, stored)
    hu = (stored.astype(np.int32) - 1024).astype(np.int16)
    if not nii.exists():
        nib.save(nib.Nifti1Image(hu.T, np.diag([-0.7, -0.7, 1.25, 1.0])), nii)
    print(f"data written in {time.perf_counter() - t0:.1f} s to {root}")

    def ours_dicom():
        dicom_io.clear_cache()  # measure a cold discovery every time
        volume = load_volume(folder)
        assert volume.shape_zyx == stored.shape

    def sitk_dicom():
        reader = sitk.ImageSeriesReader()
        names = reader.GetGDCMSeriesFileNames(str(folder))
        reader.SetFileNames(names)
        image = reader.Execute()
        array = sitk.GetArrayViewFromImage(image)
        assert array.shape == stored.shape

    def ours_nifti():
        load_volume(nii)

    def sitk_nifti():
        sitk.GetArrayViewFromImage(sitk.ReadImage(str(nii)))

    # correctness first: both readers give the same voxels
    ours = load_volume(folder).array
    theirs = sitk.GetArrayFromImage(sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))))
    if not np.array_equal(ours, hu) or not np.array_equal(theirs.astype(np.int32), hu.astype(np.int32)):
        raise SystemExit("readers disagree with the written voxels")

    times: dict[str, list[float]] = {k: [] for k in ("ours_dicom", "sitk_dicom", "ours_nifti", "sitk_nifti")}
    for _ in range(args.repeats):  # alternate so drift (other processes, page cache) hits both
        times["ours_dicom"].append(time_it(ours_dicom))
        times["sitk_dicom"].append(time_it(sitk_dicom))
        times["ours_nifti"].append(time_it(ours_nifti))
        times["sitk_nifti"].append(time_it(sitk_nifti))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:11s} median {med[k]:.3f} s  runs {', '.join(f'{t:.3f}' for t in v)}")
    result = {
        "benchmark": "load_speed",
        "shape_zyx": list(stored.shape),
        "repeats": args.repeats,
        "sitk_threads": sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(),
        "dicom": {"ours_s": round(med["ours_dicom"], 4), "sitk_s": round(med["sitk_dicom"], 4),
                  "ratio": round(med["ours_dicom"] / med["sitk_dicom"], 3)},
        "nifti_gz": {"ours_s": round(med["ours_nifti"], 4), "sitk_s": round(med["sitk_nifti"], 4),
                     "ratio": round(med["ours_nifti"] / med["sitk_nifti"], 3)},
    }
    result["ratio"] = result["dicom"]["ratio"]
    result["goal_met"] = result["ratio"] <= 1.1
    if tmp:
        tmp.cleanup()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
