"""Does torch.compile speed up the LiteMedSAM encoder on this CPU, and how long does it take to start? (issue 8)

    .venv/bin/python bench/torch_compile.py

Eager vs torch.compile (default inductor backend), fp32 and bf16 autocast, warm medians of 5 runs on
one 256x256 input, plus the compile time of the first call. The last line is JSON.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def median_ms(fn, reps: int = 5) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 1)


def main() -> int:
    import torch

    from annotator.engine.lite_medsam.engine import LiteMedSamEngine

    encoder = LiteMedSamEngine.load(runtime="torch", device="cpu").torch_module.image_encoder.eval()
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    result = {}
    with torch.inference_mode():
        reference = encoder(x)
        for precision in ("fp32", "bf16"):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                result[f"eager_{precision}_ms"] = median_ms(lambda: encoder(x))
                start = time.perf_counter()
                compiled = torch.compile(encoder, dynamic=False)
                out = compiled(x)
                result[f"compile_{precision}_s"] = round(time.perf_counter() - start, 1)
                result[f"compiled_{precision}_ms"] = median_ms(lambda c=compiled: c(x))
                result[f"compiled_{precision}_relative_error"] = float(
                    (out.float() - reference).norm() / reference.norm())
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
