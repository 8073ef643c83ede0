"""Click -> mask through `annotator serve` on loopback against the same model in-process, on a
512x512 CT-like slice (the demo phantom resampled): median ms per click (box + 1 point, with the
previous logits fed back, as the click strategy does), bytes on the wire per click and per slice.

Run: .venv/bin/python bench/remote_latency.py [--clicks 30]
Prints JSON as its last line: local_ms, remote_ms, ratio (goal <= 1.3), request/response bytes.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path


def main() -> None:
    import argparse
    import tempfile

    import numpy as np
    from scipy.ndimage import zoom

    from annotator.core.geometry import CT_PRESETS, apply_window
    from annotator.core.phantom import make_phantom
    from annotator.engine.factory import create_engine
    from annotator.engine.remote import RemoteEngine
    from annotator.engine.runtime.cpu import cpu_class
    from annotator.engine.wire import pack
    from annotator.server.local import start_local_server

    parser = argparse.ArgumentParser()
    parser.add_argument("--clicks", type=int, default=30)
    args = parser.parse_args()
    phantom = make_phantom()
    z = phantom.volume.shape_zyx[0] // 2
    raw = zoom(phantom.volume.array[z].astype(np.float32), 2, order=1)
    truth = zoom(phantom.truth.array[z] == 1, 2, order=0)
    image = np.repeat(apply_window(raw, CT_PRESETS["soft tissue"])[..., None], 3, axis=2)
    rows, cols = np.nonzero(truth)
    box = np.array([cols.min(), rows.min(), cols.max(), rows.max()], float)
    rng = np.random.default_rng(0)
    inside = np.argwhere(truth)
    with tempfile.TemporaryDirectory() as home:
        token = "bench-" + "t" * 24
        url, proc = start_local_server(Path(home), token, args=("--engine", "lite-medsam", "--runtime", "torch"))
        try:
            local = create_engine("lite-medsam", runtime="torch")
            remote = RemoteEngine(url, token)
            results = {}
            for name, engine in (("local", local), ("remote", remote)):
                embedding = engine.embed(image)
                first = engine.predict(embedding, box_xyxy=box, multimask=False)
                times = []
                for _ in range(args.clicks):
                    r, c = inside[rng.integers(len(inside))]
                    start = time.perf_counter()
                    engine.predict(embedding, box_xyxy=box, points_xy=np.array([[c, r]], float),
                                   point_labels=np.array([1]), mask_input=first.low_res_logits[:1], multimask=False)
                    times.append((time.perf_counter() - start) * 1000)
                results[name] = statistics.median(times)
                print(f"{name}: median {results[name]:.1f} ms per click", flush=True)
            # what a corrective click sends and gets back (annotator.engine.remote / annotator.server.app)
            # four windows clicking at once on the one server (each its own slice and connection)
            import threading

            def client(n: int, out: list[float]) -> None:
                engine = RemoteEngine(url, token)
                shifted = np.roll(image, 7 * (n + 1), axis=1)
                emb = engine.embed(shifted)
                first_n = engine.predict(emb, box_xyxy=box, multimask=False)
                ready.wait()  # everyone embedded: time the clicks only
                for _ in range(args.clicks):
                    r, c = inside[rng.integers(len(inside))]
                    t0 = time.perf_counter()
                    engine.predict(emb, box_xyxy=box, points_xy=np.array([[c, r]], float),
                                   point_labels=np.array([1]), mask_input=first_n.low_res_logits[:1],
                                   multimask=False)
                    out.append((time.perf_counter() - t0) * 1000)
                engine.close()

            per_client: list[list[float]] = [[] for _ in range(4)]
            ready = threading.Barrier(5)
            threads = [threading.Thread(target=client, args=(n, per_client[n])) for n in range(4)]
            for t in threads:
                t.start()
            ready.wait()
            t_start = time.perf_counter()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - t_start
            all_clicks = [v for lst in per_client for v in lst]
            concurrent = {"clients": 4, "clicks_per_s": round(len(all_clicks) / elapsed, 1),
                          "median_ms": round(statistics.median(all_clicks), 1)}
            print(f"4 clients: {concurrent}", flush=True)
            request = pack({"box_xyxy": box, "points_xy": np.array([[1.0, 2.0]]), "point_labels": np.array([1])},
                           {"id": "x" * 64, "multimask": False, "mask_ref": ["y" * 24, 0]}, compress=False)
            response = pack({"masks_bits": np.packbits(truth[None], axis=-1), "scores": np.zeros(1, np.float32),
                             "low_res_logits": first.low_res_logits.astype(np.float16)},
                            {"prediction_id": "y" * 24, "mask_shape": [1, 512, 512]}, compress=False)
            slice_upload = pack({"image": image})
            features = local.embed(image).features
            remote.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    gbit = 125e6  # bytes per second on 1 Gbit/s
    print(json.dumps({
        "bench": "remote_latency", "cpu": cpu_class(), "cores": os.cpu_count(), "slice": [512, 512],
        "local_ms": round(results["local"], 1), "remote_ms": round(results["remote"], 1),
        "ratio": round(results["remote"] / results["local"], 2), "concurrent": concurrent,
        "click_request_bytes": len(request), "click_response_bytes": len(response),
        "slice_upload_bytes": len(slice_upload), "embedding_bytes_fp16": int(features.astype(np.float16).nbytes),
        "server_side_click_wire_ms_1gbit": round((len(request) + len(response)) / gbit * 1000, 2),
        "client_side_embedding_wire_ms_1gbit": round(features.astype(np.float16).nbytes / gbit * 1000, 2)}))


if __name__ == "__main__":
    main()
