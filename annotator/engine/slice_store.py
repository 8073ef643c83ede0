"""The embeddings `annotator serve` keeps on disk, addressed by the content of the windowed slice
(annotator.engine.wire.embedding_id) and the model that made them, so that `annotator precompute
--for-server` on any machine (or a Dask cluster of them) fills a folder a server then serves from.

Built on EmbeddingCache's disk tier: each entry is written atomically and carries a signature of
its key that is checked on load, so concurrent writers never leave a half entry and a file from
another model or runtime is never served.
"""

from __future__ import annotations

import os

import numpy as np

from annotator.engine.api import EmbeddingKey, ImageEmbedding, PromptEngine
from annotator.engine.embedding_cache import EmbeddingCache
from annotator.engine.wire import embedding_id


def slice_key(engine: PromptEngine, eid: str) -> EmbeddingKey:
    """The cache key of the slice whose content address is `eid`, for this engine's model and runtime."""
    return EmbeddingKey(content_id=eid, plane="image", slice_index=0, window=(0.0, 255.0),
                        model_id=engine.model_id, model_sha256=engine.model_sha256,
                        preprocess_version=engine.preprocess_version, runtime=str(engine.runtime))


def open_slice_store(folder: str | os.PathLike[str], memory_bytes: int = 1 << 30,
                     disk_bytes: int = 200 << 30) -> EmbeddingCache:
    return EmbeddingCache(memory_bytes=memory_bytes, disk_dir=folder, disk_bytes=disk_bytes)


def embed_into(store: EmbeddingCache, engine: PromptEngine, image_hw3_u8: np.ndarray) -> tuple[str, bool]:
    """(content address, True when the encoder ran): embed one windowed slice into the store."""
    image = np.ascontiguousarray(image_hw3_u8, dtype=np.uint8)
    eid = embedding_id(image, engine.model_sha256, engine.preprocess_version)
    key = slice_key(engine, eid)
    if store.contains(key):
        return eid, False
    store.put(key, engine.embed(image))
    return eid, True


def lookup(store: EmbeddingCache, engine: PromptEngine, eid: str) -> ImageEmbedding | None:
    return store.get(slice_key(engine, eid))
