"""Seeded mutation of real and synthetic image headers, each fed to our readers: every result must be
a Volume or an InputError, nothing else, and no allocation beyond a stated cap.

Run as a child process (`python -m support.fuzz_readers SEEDS_DIR OUT_JSON N SEED`) so that an
address-space limit can hold the whole process to the cap and a hang can be cut by an alarm.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import struct
import sys
import time
import traceback
from pathlib import Path

# The readers may decode at most this much per volume (ANNOTATOR_MAX_VOLUME_GB); the process
# gets this plus a margin for the interpreter and libraries, and no more.
CAP_GB = 0.25
MARGIN_BYTES = 1536 << 20
PER_FILE_SECONDS = 20

EXTREMES = [0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 0x7FFFFFFFFFFFFFFF, 2**63, 2**64 - 1]


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """One of: flipped bytes, an extreme integer over a field, or the file cut short (header region)."""
    buf = bytearray(data)
    region = min(len(buf), 2048)
    kind = rng.choice(["flip", "flip", "field", "field", "cut"])
    if kind == "flip" and region:
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(region)] = rng.randrange(256)
    elif kind == "field" and region > 8:
        width = rng.choice([2, 4, 8])
        pos = rng.randrange(0, region - width) & ~(width - 1)
        value = rng.choice(EXTREMES) & ((1 << (8 * width)) - 1)
        buf[pos:pos + width] = value.to_bytes(width, rng.choice(["little", "big"]))
    else:
        buf = buf[: rng.randrange(0, max(1, len(buf)))]
    return bytes(buf)


def mutate_nrrd_text(data: bytes, rng: random.Random) -> bytes:
    """Edit one header line of an NRRD/MetaImage text header to an absurd value."""
    end = data.find(b"\n\n") if data.startswith(b"NRRD") else data.find(b"ElementDataFile")
    if end < 0:
        return mutate_bytes(data, rng)
    lines = data[:end].split(b"\n")
    i = rng.randrange(len(lines))
    key = lines[i].split(b":")[0].split(b"=")[0]
    sep = b": " if data.startswith(b"NRRD") else b" = "
    value = rng.choice([b"60000 50000 40000", b"-1 5 4", b"0 0 0", b"4294967296 1 1", b"gzip", b"bzip2", b"ascii",
                        b"double", b"9", b"nan nan nan", b"LIST", b"../../etc/passwd", b""])
    lines[i] = key.rstrip() + sep + value
    return b"\n".join(lines) + data[end:]


def mutate_dicom(path: Path, out: Path, rng: random.Random) -> bool:
    """Structured: a size-bearing attribute set to an extreme (pydicom writes it consistently)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True)
        choice = rng.choice(["frames", "rows", "cols", "bits", "samples", "pixels", "mosaic"])
        if choice == "frames":
            ds.NumberOfFrames = rng.choice([2**31 - 1, 10**9, 65535, 0, -5])
        elif choice == "rows":
            ds.Rows = rng.choice([65535, 0, 1])
        elif choice == "cols":
            ds.Columns = rng.choice([65535, 0, 1])
        elif choice == "bits":
            ds.BitsAllocated = rng.choice([0, 1, 7, 64, 65535])
        elif choice == "samples":
            ds.SamplesPerPixel = rng.choice([0, 3, 65535])
        elif choice == "pixels" and "PixelData" in ds:
            ds.PixelData = ds.PixelData[: rng.randrange(0, max(1, len(ds.PixelData)))]
        else:
            ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "MOSAIC"]
            ds.add_new((0x0019, 0x0010), "LO", "SIEMENS MR HEADER")
            ds.add_new((0x0019, 0x100A), "US", rng.choice([65535, 4096, 2]))
        ds.save_as(out, enforce_file_format=False)
        return True
    except Exception:  # noqa: BLE001 - the seed itself may not round-trip through pydicom; skip it
        return False


def run(seeds_dir: Path, out_json: Path, count: int, seed: int) -> None:
    os.environ["ANNOTATOR_MAX_VOLUME_GB"] = str(CAP_GB)
    from annotator.core.errors import InputError
    from annotator.io import discover_series, load_volume

    seeds = sorted(p for p in seeds_dir.iterdir() if p.is_file())
    work = out_json.parent / "mutants"
    work.mkdir(exist_ok=True)
    # Every module the readers use is imported now, before the limit: a lazy import must not fail
    # for want of address space and be mistaken for a reader's fault.
    for warm in seeds:
        try:
            load_volume(warm)
        except Exception:  # noqa: BLE001 - warming up only; the fuzzing below judges
            pass
    baseline = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    cap_bytes = int(CAP_GB * (1 << 30))
    limit = baseline + cap_bytes + MARGIN_BYTES
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    def on_alarm(signum, frame):
        raise TimeoutError(f"reader took over {PER_FILE_SECONDS} s")

    signal.signal(signal.SIGALRM, on_alarm)
    rng = random.Random(seed)
    results = {"volumes": 0, "input_errors": 0, "failures": [], "per_format": {}, "limit_bytes": limit,
               "cap_bytes": cap_bytes}
    start = time.perf_counter()
    for n in range(count):
        source = seeds[n % len(seeds)]
        suffix = "".join(source.suffixes) or ".dcm"
        target = work / f"m{n:04d}{suffix}"
        data = source.read_bytes()
        if suffix == ".dcm" and rng.random() < 0.5:
            if not mutate_dicom(source, target, rng):
                target.write_bytes(mutate_bytes(data, rng))
        elif suffix in (".nrrd", ".mha") and rng.random() < 0.5:
            target.write_bytes(mutate_nrrd_text(data, rng))
        else:
            target.write_bytes(mutate_bytes(data, rng))
        # a native crash (a decoder library faulting) ends the process: this names the file that did it
        (out_json.parent / "current.txt").write_text(f"{target}\n{source.name}\n")
        counts = results["per_format"].setdefault(suffix, 0)
        results["per_format"][suffix] = counts + 1
        for step in ("discover", "load"):
            signal.alarm(PER_FILE_SECONDS)
            try:
                if step == "discover":
                    discover_series(target)
                else:
                    load_volume(target)
                    results["volumes"] += 1
            except InputError:
                results["input_errors"] += 1
            except BaseException as exc:  # noqa: BLE001 - exactly what this fuzzing looks for
                kept = out_json.parent / f"failure_{n:04d}{suffix}"
                shutil.copy(target, kept)
                results["failures"].append({"file": str(kept), "seed": source.name, "step": step,
                                            "error": f"{type(exc).__name__}: {exc}"[:300],
                                            "trace": traceback.format_exc(limit=6)[-1500:]})
            finally:
                signal.alarm(0)
        target.unlink()
    results["seconds"] = time.perf_counter() - start
    # VmHWM is this process image's own peak; ru_maxrss would include the parent's (pytest's) size
    # at fork, which Linux carries across exec
    status = Path("/proc/self/status").read_text()
    results["peak_rss_bytes"] = next(int(line.split()[1]) * 1024 for line in status.splitlines()
                                     if line.startswith("VmHWM:"))
    out_json.write_text(json.dumps(results, indent=1))


def synthetic_seeds(folder: Path) -> list[Path]:
    """Small valid files of every format the readers take (no shared data needed)."""
    import nibabel as nib
    import numpy as np
    import SimpleITK as sitk

    from support.dicom_factory import write_enhanced_mr, write_series

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    array = rng.integers(-1000, 1000, size=(6, 12, 10)).astype(np.int16)
    affine = np.diag([0.8, 0.7, 2.5, 1.0])
    nib.save(nib.Nifti1Image(array.T, affine), folder / "n1.nii")
    nib.save(nib.Nifti1Image(array.T.astype(np.float32), affine), folder / "n1f.nii.gz")
    nib.save(nib.Nifti2Image(array.T, affine), folder / "n2.nii")
    nib.save(nib.Nifti2Image(array.T, affine), folder / "n2.nii.gz")
    image = sitk.GetImageFromArray(array)
    sitk.WriteImage(image, str(folder / "raw.nrrd"), False)
    sitk.WriteImage(image, str(folder / "gz.nrrd"), True)
    sitk.WriteImage(image, str(folder / "raw.mha"), False)
    sitk.WriteImage(image, str(folder / "z.mha"), True)
    series = write_series(folder / "series", array[:2])
    shutil.copy(series[0], folder / "classic.dcm")
    write_enhanced_mr(folder / "enhanced.dcm", array[:3].astype(np.uint16) + 1000,
                      frame_types=[("ORIGINAL", "PRIMARY", "M", "NONE")] * 3,
                      positions=[(0.0, 0.0, 2.5 * k) for k in range(3)], slopes=[1.0] * 3, intercepts=[0.0] * 3)
    shutil.rmtree(folder / "series")
    return sorted(p for p in folder.iterdir() if p.is_file())


def real_seeds(folder: Path, shared: Path, max_bytes: int = 2 << 20) -> list[Path]:
    """Small real files from ../shared/data (every vendor quirk there), when it is present."""
    folder.mkdir(parents=True, exist_ok=True)
    picked = []
    for path in sorted(shared.glob("dicom/*/dcm/*")) + sorted(shared.glob("nifti/*.nii*")):
        if path.is_file() and path.stat().st_size <= max_bytes:
            picked.append(path)
    by_case: dict[str, Path] = {}
    for path in picked:  # one file per case folder (and every NIfTI): variety over volume
        key = path.parent.parent.name if path.parent.name == "dcm" else path.name
        if path.suffix == ".dcm" and "nema" in key:
            key = path.name  # each NEMA file is another transfer syntax
        by_case.setdefault(key, path)
    out = []
    for i, path in enumerate(by_case.values()):
        target = folder / f"real{i:02d}{''.join(path.suffixes) or '.dcm'}"
        shutil.copy(path, target)
        out.append(target)
    return out


def pack_nifti2_huge(path: Path) -> None:
    """The issue's case: a NIfTI-2 header claiming 2e15 voxels over a few bytes of data."""
    import nibabel as nib
    import numpy as np

    header = bytearray(nib.Nifti2Image(np.zeros((2, 2, 2), np.int16), np.eye(4)).header.binaryblock)
    header[16:80] = struct.pack("<8q", 3, 200000, 100000, 100000, 1, 1, 1, 1)
    path.write_bytes(bytes(header) + b"\0" * 68)


if __name__ == "__main__":
    run(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    sys.exit(0)
