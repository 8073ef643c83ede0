"""EmbeddingService: "the embedding of this slice" — from the cache when anyone ever paid for it,
else computed once by the engine and stored. Shared by the executor, precompute and segment."""

from __future__ import annotations

import dataclasses
import threading

from annotator.core.geometry import Window, array_axis_plane
from annotator.core.volume import Volume
from annotator.engine.api import EmbeddingKey, ImageEmbedding, ProgressFn, PromptEngine
from annotator.engine.embedding_cache import EmbeddingCache
from annotator.engine.slices import slice_rgb_u8


class EmbeddingCancelled(Exception):  # reads as an outcome, like KeyboardInterrupt
    """The caller's cancel event was set before the embedding was computed."""


class EmbeddingService:
    """Embeddings of volume slices for one engine, through one cache.

    Keys follow annotator.engine.api.EmbeddingKey: the volume's content id, the plane name of the
    array axis (core.geometry.array_axis_plane), the slice index, the window's rounded bounds and
    the engine's model id, sha256, preprocessing version and runtime. An engine may list
    `accepts_runtimes` (e.g. ("torch-fp16",)) whose cached features it can use as well, so an
    embedding precomputed on a GPU in half precision serves a CPU laptop.
    """

    def __init__(self, engine: PromptEngine, cache: EmbeddingCache | None = None) -> None:
        self.engine = engine
        self.cache = cache if cache is not None else EmbeddingCache(disk_dir=None)
        self.encoder_calls = 0
        self._lock = threading.Lock()

    def key(self, volume: Volume, axis: int, index: int, window: Window) -> EmbeddingKey:
        return EmbeddingKey(
            content_id=volume.content_id,
            plane=array_axis_plane(volume, axis),
            slice_index=int(index),
            window=window.key(),
            model_id=self.engine.model_id,
            model_sha256=self.engine.model_sha256,
            preprocess_version=int(self.engine.preprocess_version),
            runtime=self.engine.runtime,
        )

    def _candidate_keys(self, key: EmbeddingKey) -> list[EmbeddingKey]:
        extra = [r for r in getattr(self.engine, "accepts_runtimes", ()) if r != key.runtime]
        return [key] + [dataclasses.replace(key, runtime=r) for r in extra]

    def cached(self, volume: Volume, axis: int, index: int, window: Window) -> ImageEmbedding | None:
        """The cached embedding of that slice, or None (never computes)."""
        for candidate in self._candidate_keys(self.key(volume, axis, index, window)):
            hit = self.cache.get(candidate)
            if hit is not None:
                return hit
        return None

    def is_cached(self, volume: Volume, axis: int, index: int, window: Window) -> bool:
        return any(self.cache.contains(k) for k in self._candidate_keys(self.key(volume, axis, index, window)))

    def embedding(self, volume: Volume, axis: int, index: int, window: Window, cancel: threading.Event | None = None,
                  progress: ProgressFn | None = None) -> ImageEmbedding:
        """Cache hit, or embed the windowed slice with the engine and store it (both tiers).

        Raises EmbeddingCancelled when `cancel` is set before the encoder starts.
        """
        hit = self.cached(volume, axis, index, window)
        if hit is not None:
            return hit
        if cancel is not None and cancel.is_set():
            raise EmbeddingCancelled(f"embedding of slice {index} along axis {axis} cancelled")
        image = slice_rgb_u8(volume, axis, index, window)
        embedding = self.engine.embed(image, cancel=cancel, progress=progress)
        with self._lock:
            self.encoder_calls += 1
        return self.cache.put(self.key(volume, axis, index, window), embedding)
