"""A PromptEngine whose model runs in `annotator serve` on another machine (httpx over HTTP/TLS).

embed() uploads the windowed slice once, under its content address (nothing when the server
already has it), and returns a handle that keeps the slice too: if the server restarted and lost
the embedding, predict() uploads it again by itself. predict() sends only the prompts; the masks
come back compressed. The window, the propagation and the evaluation use it like a local engine.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np

from annotator.engine.api import EngineError, ImageEmbedding, MaskPrediction, ProgressFn
from annotator.engine.wire import API_VERSION, WireError, embedding_id, pack, unpack

MAX_RESPONSE_BYTES = 256 << 20


class RemoteEngine:
    def __init__(self, url: str, token: str, *, timeout_s: float = 120.0, retry_after_s: float = 0.5,
                 transport: Any = None) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.retry_after_s = retry_after_s
        self._client = httpx.Client(base_url=self.url, timeout=timeout_s, transport=transport,
                                    headers={"Authorization": f"Bearer {token}"})
        info = self._json("GET", "/v1/info")
        if info.get("api_version") != API_VERSION:
            raise EngineError(f"{self.url}: server speaks API {info.get('api_version')}, this client {API_VERSION}")
        self.model_id = str(info["model_id"])
        self.model_sha256 = str(info["model_sha256"])
        self.preprocess_version = int(info["preprocess_version"])
        self.prompt_kind = str(info.get("prompt_kind", "points"))
        self.device = f"{info['device']} on {self.url}"
        self.runtime = f"remote-{info['runtime']}"
        self.server_runtime = str(info["runtime"])
        # digest of each candidate's logits as this client returned them -> (prediction id, index)
        self._logit_refs: dict[bytes, tuple[str, int]] = {}

    # ---- HTTP --------------------------------------------------------------------------------
    def _request(self, method: str, path: str, content: bytes | None = None) -> Any:
        import httpx

        headers = {"Content-Type": "application/x-annotator-npz"} if content else None
        try:
            response = self._client.request(method, path, content=content, headers=headers)
        except httpx.TransportError:
            # one retry: a dropped connection or a server restarting. Every request is safe to
            # repeat (uploads are content-addressed, predictions change nothing on the server)
            time.sleep(self.retry_after_s)
            try:
                response = self._client.request(method, path, content=content, headers=headers)
            except httpx.HTTPError as exc:
                raise EngineError(f"server {self.url} unreachable (tried twice): {type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise EngineError(f"server {self.url} unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            error = EngineError(f"server {self.url}: {detail}")
            error.status_code = response.status_code  # type: ignore[attr-defined]
            raise error
        return response

    def _json(self, method: str, path: str, content: bytes | None = None) -> dict[str, Any]:
        data = self._request(method, path, content).json()
        if not isinstance(data, dict):
            raise EngineError(f"server {self.url}: unexpected answer to {path}")
        return data

    def close(self) -> None:
        self._client.close()

    # ---- PromptEngine ------------------------------------------------------------------------
    def embed(self, image_hw3_u8: np.ndarray, *, cancel: threading.Event | None = None,
              progress: ProgressFn | None = None) -> ImageEmbedding:
        image = np.ascontiguousarray(image_hw3_u8, dtype=np.uint8)
        eid = embedding_id(image, self.model_sha256, self.preprocess_version)
        try:
            found = self._json("GET", f"/v1/embeddings/{eid}")
        except EngineError as exc:
            if getattr(exc, "status_code", None) != 404:
                raise
            found = self._json("POST", "/v1/embeddings", pack({"image": image}, {"id": eid}))
        # the handle: the id as bytes, and the slice itself so a lost embedding can be made again
        return ImageEmbedding(features=np.frombuffer(eid.encode(), np.uint8).copy(),
                              original_size=tuple(found["original_size"]),
                              input_size=tuple(found["input_size"]),
                              model_id=self.model_id, extras={"image": image})

    def predict(self, embedding: ImageEmbedding, *, points_xy: np.ndarray | None = None,
                point_labels: np.ndarray | None = None, box_xyxy: np.ndarray | None = None,
                mask_input: np.ndarray | None = None, multimask: bool = True) -> MaskPrediction:
        if embedding.model_id != self.model_id:
            raise EngineError(f"embedding of {embedding.model_id} given to {self.model_id}")
        eid = bytes(np.asarray(embedding.features, np.uint8)).decode()
        prompts = {k: np.asarray(v) for k, v in (("points_xy", points_xy), ("point_labels", point_labels),
                                                   ("box_xyxy", box_xyxy)) if v is not None}
        meta: dict[str, Any] = {"id": eid, "multimask": bool(multimask)}

        def full() -> bytes:  # with the logits themselves (256 KB for LiteMedSAM): only when needed
            extra = {"mask_input": np.asarray(mask_input)} if mask_input is not None else {}
            return pack({**prompts, **extra}, meta, compress=False)

        ref = self._logit_refs.get(_digest(mask_input)) if mask_input is not None else None
        body = pack(prompts, {**meta, "mask_ref": list(ref)}, compress=False) if ref is not None else full()
        try:
            response = self._request("POST", "/v1/predict", body)
        except EngineError as exc:
            if getattr(exc, "status_code", None) != 404:
                raise
            # the server forgot the earlier prediction (send the logits themselves) or the slice's
            # embedding (restarted: upload the slice again), then ask once more
            image = embedding.extras.get("image")
            if image is not None and "no embedding" in str(exc):
                self._json("POST", "/v1/embeddings", pack({"image": image}, {"id": eid}))
            response = self._request("POST", "/v1/predict", full())
        try:
            out, info = unpack(response.content, max_bytes=MAX_RESPONSE_BYTES)
            shape = tuple(int(n) for n in info["mask_shape"])
            masks = np.unpackbits(out["masks_bits"], axis=-1, count=shape[-1]).astype(bool).reshape(shape)
        except (WireError, KeyError, ValueError, TypeError) as exc:
            raise EngineError(f"server {self.url}: bad answer ({exc})") from exc
        logits = out["low_res_logits"].astype(np.float32)
        if len(self._logit_refs) > 256:
            self._logit_refs.clear()
        for i in range(len(logits)):
            self._logit_refs[_digest(logits[i: i + 1])] = (str(info["prediction_id"]), i)
        return MaskPrediction(masks, out["scores"], logits)


def _digest(array: np.ndarray | None) -> bytes:
    import hashlib

    a = np.ascontiguousarray(np.asarray(array, np.float32))
    return hashlib.blake2b(a.tobytes() + str(a.shape).encode(), digest_size=16).digest()


def load_remote(checkpoint: str | os.PathLike[str] | None = None, device: str = "auto", runtime: str = "auto",
                server: str | None = None, token_file: str | os.PathLike[str] | None = None,
                **_options: Any) -> RemoteEngine:
    """The registry's loader: the engine of the server at `server` (its model, device, runtime)."""
    if not server:
        raise EngineError("the 'remote' engine needs the server's address (e.g. http://gpu-box:8765)")
    return connect(server, token_file=token_file)


def connect(url: str, token: str | None = None, token_file: str | os.PathLike[str] | None = None) -> RemoteEngine:
    """A RemoteEngine for `url`, with the token from ANNOTATOR_SERVER_TOKEN or `token_file`."""
    if token is None:
        from annotator.engine.server_token import read_tokens

        token = read_tokens(token_file)[0]
    return RemoteEngine(url, token)
