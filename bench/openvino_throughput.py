"""Would batching slices help precompute/propagation? OpenVINO LATENCY (one slice at a time, what the
app does) against THROUGHPUT (several slices in flight on parallel streams), LiteMedSAM encoder (issue 8).

    .venv/bin/python bench/openvino_throughput.py [--slices 12]

The last line is JSON: ms per slice for each precision and mode.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=12)
    args = parser.parse_args()
    import openvino as ov

    from annotator.engine.lite_medsam.engine import LiteMedSamEngine
    from annotator.engine.runtime.compiled_cache import CompiledModelCache
    from annotator.engine.runtime.lite_medsam_runtime import encoder_spec
    from annotator.engine.runtime.onnx_runner import cached_onnx_path

    engine = LiteMedSamEngine.load(runtime="torch", device="cpu")
    core = ov.Core()
    inputs = [np.random.default_rng(i).random((1, 3, 256, 256), dtype=np.float32) for i in range(args.slices)]
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = str(cached_onnx_path(encoder_spec(engine), CompiledModelCache(Path(tmp))))
        for precision in ("f32", "bf16"):
            latency = core.compile_model(onnx_path, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                            "PERFORMANCE_HINT": "LATENCY"})
            request = latency.create_infer_request()
            request.infer([inputs[0]])
            start = time.perf_counter()
            for x in inputs:
                request.infer([x])
            result[f"{precision}_latency_ms_per_slice"] = round((time.perf_counter() - start) / len(inputs) * 1000, 1)
            throughput = core.compile_model(onnx_path, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                               "PERFORMANCE_HINT": "THROUGHPUT"})
            streams = throughput.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
            queue = ov.AsyncInferQueue(throughput, streams)
            queue.start_async([inputs[0]])
            queue.wait_all()
            start = time.perf_counter()
            for x in inputs:
                queue.start_async([x])
            queue.wait_all()
            result[f"{precision}_throughput_ms_per_slice"] = round((time.perf_counter() - start) / len(inputs) * 1000, 1)
            result[f"{precision}_throughput_requests"] = int(streams)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
