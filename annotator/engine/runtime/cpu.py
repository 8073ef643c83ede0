"""What the CPU can do fast (bf16 above all), read once, so runtimes are only offered where they help."""

from __future__ import annotations

import functools
import logging
import platform
from pathlib import Path

log = logging.getLogger(__name__)

# Instruction-set flags (Linux /proc/cpuinfo names) that give native bf16 matrix arithmetic.
# Without them bf16 is emulated and slower than fp32, so it is never offered.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux); empty where that file does not exist."""
    path = Path("/proc/cpuinfo")
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@functools.lru_cache(maxsize=1)
def cpu_model_name() -> str:
    """Human-readable CPU name ("Intel(R) Xeon(R) ..."), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def torch_cpu_capability() -> str:
    """torch's own view of the vector ISA it dispatches to ("AVX512", "AVX2", "DEFAULT", ...)."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


@functools.lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """True when bf16 matrix multiplication runs natively (AVX512-BF16 or AMX) on this CPU.

    /proc/cpuinfo decides on Linux. Elsewhere we ask torch's own CPUID probe
    (torch.cpu._is_avx512_bf16_supported / _is_amx_tile_supported), and say no if it cannot tell.
    """
    flags = cpu_flags()
    if flags:
        return any(flag in flags for flag in BF16_FLAGS)
    try:
        import torch

        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (ImportError, AttributeError, RuntimeError):
        return False


def machine_signature() -> dict[str, object]:
    """What a cached runtime choice depends on: the CPU model, its bf16 support and core count."""
    import os

    return {
        "cpu": cpu_model_name(),
        "bf16": cpu_supports_bf16(),
        "cores": os.cpu_count() or 1,
        "machine": platform.machine(),
        "system": platform.system(),
    }


def cpu_class(flags: frozenset[str] | None = None, machine: str | None = None) -> str:
    """The class a figure belongs to (BENCHMARKS.md, the README's laptop table): "AMX",
    "AVX-512-BF16", "AVX-512", "AVX2", "ARM64" or the bare machine name."""
    flags = cpu_flags() if flags is None else flags
    machine = (machine or platform.machine()).lower()
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX-512-BF16"
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags:
        return "AVX2"
    if machine in ("arm64", "aarch64"):
        return "ARM64"
    return machine or "unknown"


def native_variants(variants: list[str], bf16: bool | None = None) -> tuple[list[str], list[str]]:
    """(variants this CPU runs natively, the ones skipped): bf16 and bf16mix variants only where
    bf16 is native; emulated bf16 is slower than fp32 and can take a benchmark past its budget."""
    bf16 = cpu_supports_bf16() if bf16 is None else bf16
    kept: list[str] = []
    skipped: list[str] = []
    for variant in variants:
        precision = variant.partition("-")[2]
        (kept if bf16 or not precision.startswith("bf16") else skipped).append(variant)
    return kept, skipped
