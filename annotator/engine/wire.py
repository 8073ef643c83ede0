"""What crosses the network between `annotator serve` and its clients: NumPy arrays in an .npz and
a JSON header, never pickle or code. Both sides read with allow_pickle=False and check every
member's decompressed size before reading it, so a small request cannot expand into gigabytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from typing import Any

import numpy as np

API_VERSION = 1
META = "__meta__"


class WireError(ValueError):
    """A message that is not a well-formed annotator payload (the text says what is wrong)."""


def pack(arrays: dict[str, np.ndarray] | None = None, meta: dict[str, Any] | None = None, *,
         compress: bool = True) -> bytes:
    buf = io.BytesIO()
    payload = {k: np.ascontiguousarray(v) for k, v in (arrays or {}).items()}
    payload[META] = np.array(json.dumps(meta or {}))
    save: Any = np.savez_compressed if compress else np.savez
    save(buf, **payload)
    return buf.getvalue()


def unpack(data: bytes, *, max_bytes: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, meta) of a payload; WireError for anything else or anything larger than max_bytes
    once decompressed."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            total = sum(info.file_size for info in zf.infolist())
            if total > max_bytes:
                raise WireError(f"payload expands to {total} bytes, more than the {max_bytes} allowed")
            names = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        arrays = {name: loaded[name] for name in names}
    except WireError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise WireError(f"not an annotator payload (.npz without pickle): {exc}") from exc
    raw = arrays.pop(META, None)
    try:
        meta = json.loads(str(raw)) if raw is not None else {}
    except ValueError as exc:
        raise WireError(f"payload header is not JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise WireError("payload header must be a JSON object")
    return arrays, meta


def embedding_id(image_hw3_u8: np.ndarray, model_sha256: str, preprocess_version: int) -> str:
    """The content address of one slice's embedding: the same pixels for the same model always
    give the same id, so a client can ask whether the server already has it before uploading."""
    image = np.ascontiguousarray(image_hw3_u8)
    digest = hashlib.sha256()
    digest.update(f"{model_sha256}:{preprocess_version}:{image.shape}:{image.dtype}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()
