"""The engine behind an HTTP API (FastAPI): a client uploads a windowed slice once (by its content
address), the server embeds it and keeps the embedding, and every prompt after that is one small
request. The prompt path runs here, beside the embedding (BENCHMARKS.md gives the numbers that
chose it): a click sends a few numbers and gets back a compressed mask.

Every request needs a bearer token; each token sees only the embeddings made with it. Bodies are
.npz + JSON (annotator.engine.wire), bounded in size before and after decompression.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from annotator.engine.api import EngineError, ImageEmbedding, PromptEngine
from annotator.engine.wire import API_VERSION, WireError, embedding_id, pack, unpack

MEDIA_TYPE = "application/x-annotator-npz"


class EmbeddingStore:
    """Embeddings per token namespace, least recently used dropped beyond `max_bytes` in all."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], ImageEmbedding] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, namespace: str, eid: str) -> ImageEmbedding | None:
        with self._lock:
            item = self._items.get((namespace, eid))
            if item is not None:
                self._items.move_to_end((namespace, eid))
            return item

    def put(self, namespace: str, eid: str, embedding: ImageEmbedding) -> None:
        with self._lock:
            old = self._items.pop((namespace, eid), None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[(namespace, eid)] = embedding
            self._bytes += embedding.nbytes
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes


def _namespace(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def _array(arrays: dict[str, np.ndarray], name: str, shape_tail: tuple[int, ...], dtype_kind: str,
           *, max_rows: int = 64) -> np.ndarray | None:
    value = arrays.get(name)
    if value is None:
        return None
    if value.dtype.kind not in dtype_kind:
        raise HTTPException(422, f"'{name}' must hold {'numbers' if 'f' in dtype_kind else 'integers'}, "
                                 f"got {value.dtype}")
    if shape_tail and (value.ndim != len(shape_tail) + 1 or value.shape[1:] != shape_tail):
        raise HTTPException(422, f"'{name}' must have shape (N, {', '.join(map(str, shape_tail))}), got {value.shape}")
    if value.shape and value.shape[0] > max_rows:
        raise HTTPException(422, f"'{name}' has {value.shape[0]} rows, at most {max_rows} are accepted")
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        raise HTTPException(422, f"'{name}' holds NaN or infinite values")
    return value


def create_app(engine: PromptEngine, tokens: Sequence[str], *, max_request_bytes: int = 64 << 20,
               cache_bytes: int = 4 << 30, cache_dir: str | None = None) -> FastAPI:
    """The server app for one loaded engine. `tokens`: the accepted bearer tokens (at least one).
    `cache_dir`: a content-addressed embedding folder shared with `annotator precompute
    --for-server` (annotator.engine.slice_store); an uploaded slice found there is not encoded
    again. Only an upload of the slice itself reaches that folder: asking by id sees this token's
    embeddings only, so the shared folder tells nobody what others have opened."""
    if not tokens or any(len(t) < 16 for t in tokens):
        raise ValueError("the server needs at least one token of 16 or more characters")
    app = FastAPI(title="annotator engine server", version=str(API_VERSION), docs_url=None, redoc_url=None)
    store = EmbeddingStore(cache_bytes)
    shared = None
    if cache_dir is not None:
        from annotator.engine.slice_store import open_slice_store

        shared = open_slice_store(cache_dir)
    counters = {"encoder_calls": 0, "shared_hits": 0}
    # the low-res logits of recent predictions, so a corrective click refers to them by id instead
    # of sending 256 KB back (the click strategy feeds the previous logits into every next click)
    recent_logits: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
    recent_lock = threading.Lock()
    model_lock = threading.Lock()  # one model, one request at a time on it (as the local executor)
    # one long-lived thread runs the model, as in the window (engine.executor): torch's thread team
    # and caches stay warm; anyio's pool would hand each request to whichever thread is free
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="annotator-model")

    async def on_model_thread(fn: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(model_thread, fn)
    accepted = [t.encode() for t in tokens]

    def namespace(request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(value.encode(), t) for t in accepted):
            raise HTTPException(401, "missing or wrong token (send 'Authorization: Bearer <token>'; the token is "
                                     "ANNOTATOR_SERVER_TOKEN or the server's token file)")
        return _namespace(value)

    @app.middleware("http")
    async def limit_size(request: Request, call_next: Any) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_request_bytes):
            return JSONResponse({"detail": f"request body of {length} bytes is larger than the "
                                           f"{max_request_bytes} bytes this server accepts"}, status_code=413)
        return await call_next(request)

    async def body(request: Request) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        data = await request.body()
        if len(data) > max_request_bytes:
            raise HTTPException(413, f"request body larger than {max_request_bytes} bytes")
        try:
            return unpack(data, max_bytes=max_request_bytes * 4)
        except WireError as exc:
            raise HTTPException(400, str(exc)) from exc

    @app.get("/v1/info")
    def info(ns: str = Depends(namespace)) -> dict[str, Any]:
        return {"api_version": API_VERSION, "model_id": engine.model_id, "model_sha256": engine.model_sha256,
                "preprocess_version": engine.preprocess_version, "device": engine.device,
                "runtime": engine.runtime, "prompt_kind": getattr(engine, "prompt_kind", "points"), **counters}

    @app.get("/v1/embeddings/{eid}")
    def has_embedding(eid: str, ns: str = Depends(namespace)) -> dict[str, Any]:
        found = store.get(ns, eid)
        if found is None:
            raise HTTPException(404, f"no embedding {eid} for this token")
        return {"id": eid, "original_size": list(found.original_size), "input_size": list(found.input_size)}

    @app.post("/v1/embeddings")
    async def embed(request: Request, ns: str = Depends(namespace)) -> dict[str, Any]:
        arrays, meta = await body(request)
        image = arrays.get("image")
        if image is None or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 \
                or not (8 <= image.shape[0] <= 4096 and 8 <= image.shape[1] <= 4096):
            raise HTTPException(422, "'image' must be a (H, W, 3) uint8 slice, 8..4096 pixels a side")
        eid = embedding_id(image, engine.model_sha256, engine.preprocess_version)
        if meta.get("id") not in (None, eid):
            raise HTTPException(422, "the given id is not the content address of this image")
        embedding = store.get(ns, eid)
        meta_out = {"embed_ms": 0.0}
        if embedding is None:
            start = time.perf_counter()

            def run_embed() -> tuple[ImageEmbedding, bool]:
                if shared is not None:
                    from annotator.engine.slice_store import lookup, slice_key

                    found = lookup(shared, engine, eid)
                    if found is not None:
                        return found, False
                with model_lock:
                    made = engine.embed(image)
                if shared is not None:
                    shared.put(slice_key(engine, eid), made)
                return made, True

            embedding, encoded = await on_model_thread(run_embed)
            counters["encoder_calls" if encoded else "shared_hits"] += 1
            store.put(ns, eid, embedding)
            meta_out = {"embed_ms": round((time.perf_counter() - start) * 1000, 1)}
        return {"id": eid, "original_size": list(embedding.original_size),
                "input_size": list(embedding.input_size), **meta_out}

    @app.post("/v1/predict")
    async def predict(request: Request, ns: str = Depends(namespace)) -> Response:
        arrays, meta = await body(request)
        eid = meta.get("id")
        if not isinstance(eid, str):
            raise HTTPException(422, "'id' (the slice's embedding id) is required")
        embedding = store.get(ns, eid)
        if embedding is None:
            raise HTTPException(404, f"no embedding {eid} for this token (upload the slice first)")
        points = _array(arrays, "points_xy", (2,), "fiu")
        labels = _array(arrays, "point_labels", (), "iub")
        box = _array(arrays, "box_xyxy", (), "fiu", max_rows=4)
        mask_input = arrays.get("mask_input")
        ref = meta.get("mask_ref")
        if ref is not None:
            if not (isinstance(ref, list) and len(ref) == 2 and isinstance(ref[0], str) and isinstance(ref[1], int)):
                raise HTTPException(422, "'mask_ref' must be [prediction id, candidate index]")
            with recent_lock:
                logits = recent_logits.get((ns, ref[0]))
                if logits is not None:
                    recent_logits.move_to_end((ns, ref[0]))
            if logits is None or not 0 <= ref[1] < len(logits):
                raise HTTPException(404, "the referenced earlier prediction is no longer here (send mask_input)")
            mask_input = logits[ref[1]: ref[1] + 1]
        if (points is None) != (labels is None) or (points is not None and labels is not None
                                                    and len(points) != len(labels)):
            raise HTTPException(422, "points_xy and point_labels go together, one label per point")
        if box is not None and box.shape != (4,):
            raise HTTPException(422, f"'box_xyxy' must be 4 numbers, got shape {box.shape}")
        if mask_input is not None and (mask_input.dtype.kind != "f" or mask_input.ndim != 3
                                       or mask_input.shape[0] != 1 or mask_input.size > 1 << 20):
            raise HTTPException(422, "'mask_input' must be (1, h, w) float logits of an earlier prediction")
        if points is None and box is None:
            raise HTTPException(422, "a prompt needs points or a box")
        multimask = meta.get("multimask", True)
        if not isinstance(multimask, bool):
            raise HTTPException(422, "'multimask' must be true or false")
        def run_predict() -> Any:
            with model_lock:
                return engine.predict(embedding, points_xy=points, point_labels=labels, box_xyxy=box,
                                      mask_input=mask_input, multimask=multimask)

        try:
            pred = await on_model_thread(run_predict)
        except (EngineError, ValueError) as exc:
            raise HTTPException(422, f"the engine refused the prompt: {exc}") from exc
        pid = hashlib.sha256(f"{eid}:{time.perf_counter_ns()}:{id(pred)}".encode()).hexdigest()[:24]
        with recent_lock:
            recent_logits[(ns, pid)] = np.asarray(pred.low_res_logits, np.float32)
            while len(recent_logits) > 512:  # ~130 MB of LiteMedSAM logits at most
                recent_logits.popitem(last=False)
        masks = np.asarray(pred.masks, bool)
        # bits, not bytes, for the masks, and logits as float16 (the client sends a reference back,
        # the server keeps its float32 ones); uncompressed: deflate would cost more than the wire
        out = pack({"masks_bits": np.packbits(masks, axis=-1), "scores": pred.scores.astype(np.float32),
                    "low_res_logits": pred.low_res_logits.astype(np.float16)},
                   {"prediction_id": pid, "mask_shape": list(masks.shape)}, compress=False)
        return Response(out, media_type=MEDIA_TYPE)

    return app
