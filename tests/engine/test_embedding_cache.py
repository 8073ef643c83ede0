"""EmbeddingCache: byte-bounded memory LRU in fp16, atomic safetensors disk tier with its own
budget, and a stored key signature so a mismatching file is a miss, never a wrong embedding."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from annotator.engine.api import EmbeddingKey, ImageEmbedding
from annotator.engine.embedding_cache import EmbeddingCache


def _key(index: int, **changes) -> EmbeddingKey:
    fields = dict(content_id="c" * 32, plane="axial", slice_index=index, window=(-160.0, 240.0),
                  model_id="m", model_sha256="s" * 64, preprocess_version=1, runtime="torch-fp32")
    fields.update(changes)
    return EmbeddingKey(**fields)


def _embedding(seed: int, extras: bool = False) -> ImageEmbedding:
    rng = np.random.default_rng(seed)
    return ImageEmbedding(
        features=rng.standard_normal((1, 8, 16, 16)).astype(np.float32),  # 8 KiB fp32, 4 KiB fp16
        original_size=(100, 120), input_size=(853, 1024), model_id="m",
        extras={"interm": rng.standard_normal((2, 4)).astype(np.float32)} if extras else {},
    )


def test_memory_tier_stores_fp16_and_is_bounded_in_bytes():
    cache = EmbeddingCache(memory_bytes=3 * 4096 + 100, disk_dir=None)
    stored = cache.put(_key(0), _embedding(0))
    assert stored.features.dtype == np.float16
    np.testing.assert_allclose(stored.features, _embedding(0).features, rtol=1e-3, atol=1e-3)
    for i in (1, 2):
        cache.put(_key(i), _embedding(i))
    assert cache.memory_used_bytes == 3 * 4096
    assert cache.get(_key(0)) is stored  # touch 0: now 1 is the least recently used
    cache.put(_key(3), _embedding(3))
    assert cache.memory_used_bytes <= cache.memory_bytes
    assert cache.get(_key(1)) is None
    assert all(cache.get(_key(i)) is not None for i in (0, 2, 3))
    assert cache.stats.misses == 1


def test_disk_round_trip_in_a_new_instance(tmp_path):
    first = EmbeddingCache(memory_bytes=1 << 20, disk_dir=tmp_path)
    stored = first.put(_key(7), _embedding(7, extras=True))
    second = EmbeddingCache(memory_bytes=1 << 20, disk_dir=tmp_path)
    loaded = second.get(_key(7))
    assert loaded is not None
    assert second.stats.disk_hits == 1
    np.testing.assert_array_equal(loaded.features, stored.features)
    np.testing.assert_array_equal(loaded.extras["interm"], stored.extras["interm"])
    assert (loaded.original_size, loaded.input_size, loaded.model_id) == ((100, 120), (853, 1024), "m")
    assert second.get(_key(7)) is loaded  # promoted to memory
    assert second.stats.memory_hits == 1
    assert second.get(_key(7, window=(-1000.0, 1000.0))) is None


def test_disk_files_are_safetensors_with_the_key_beside_the_features(tmp_path):
    cache = EmbeddingCache(disk_dir=tmp_path)
    cache.put(_key(1), _embedding(1))
    files = list(tmp_path.rglob("*"))
    data_files = [p for p in files if p.is_file()]
    assert len(data_files) == 1  # no temporary files left behind
    raw = data_files[0].read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    assert header["features"]["dtype"] == "F16"
    meta = header["__metadata__"]
    assert meta["signature"] == _key(1).signature() == data_files[0].stem
    assert json.loads(meta["key"])["slice_index"] == 1
    assert b"\x80\x04" not in raw[:16]  # not a pickle stream


def test_signature_mismatch_is_a_miss_never_a_wrong_embedding(tmp_path):
    cache = EmbeddingCache(disk_dir=tmp_path)
    cache.put(_key(1), _embedding(1))
    cache.put(_key(2), _embedding(2))
    path_1 = cache._disk_path(_key(1).signature())
    path_2 = cache._disk_path(_key(2).signature())
    path_1.write_bytes(path_2.read_bytes())  # slice 2's features under slice 1's name
    fresh = EmbeddingCache(disk_dir=tmp_path)
    assert fresh.get(_key(1)) is None
    assert fresh.stats.disk_rejected == 1
    assert fresh.get(_key(2)) is not None


def test_corrupt_file_is_a_miss_and_removed(tmp_path):
    cache = EmbeddingCache(disk_dir=tmp_path)
    cache.put(_key(1), _embedding(1))
    path = cache._disk_path(_key(1).signature())
    path.write_bytes(b"\x00" * 10)
    fresh = EmbeddingCache(disk_dir=tmp_path)
    assert fresh.get(_key(1)) is None
    assert not path.exists()


def test_disk_budget_removes_least_recently_used_files(tmp_path):
    import os

    cache = EmbeddingCache(memory_bytes=0, disk_dir=tmp_path, disk_bytes=1 << 20)
    cache.put(_key(0), _embedding(0))
    size = cache.disk_used_bytes()
    small = EmbeddingCache(memory_bytes=0, disk_dir=tmp_path, disk_bytes=int(2.5 * size))
    for i, key_index in enumerate((0,)):
        os.utime(small._disk_path(_key(key_index).signature()), (1000 + i, 1000 + i))
    small.put(_key(1), _embedding(1))
    small.put(_key(2), _embedding(2))
    assert small.disk_used_bytes() <= small.disk_bytes
    assert not small.contains(_key(0))  # the oldest went
    assert small.contains(_key(1))
    assert small.contains(_key(2))


def test_failed_disk_write_leaves_nothing_and_does_not_raise(tmp_path, monkeypatch):
    import safetensors.numpy

    def failing(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", failing)
    cache = EmbeddingCache(disk_dir=tmp_path)
    cache.put(_key(1), _embedding(1))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert cache.get(_key(1)) is not None  # memory tier still serves it


def test_budgets_must_be_non_negative():
    with pytest.raises(ValueError, match="budgets"):
        EmbeddingCache(memory_bytes=-1)


def test_from_settings_uses_the_platformdirs_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATOR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ANNOTATOR_CONFIG_DIR", str(tmp_path / "config"))
    cache = EmbeddingCache.from_settings()
    assert cache.disk_dir == tmp_path / "cache" / "embeddings"
    assert cache.memory_bytes == 2 << 30


class _CountingEngine:
    model_id = "m"
    model_sha256 = "s" * 64
    preprocess_version = 1
    device = "cpu"
    prompt_kind = "points"
    accepts_runtimes = ("torch-fp32", "torch-fp16")

    def __init__(self, runtime):
        self.runtime = runtime
        self.calls = 0

    def embed(self, image, *, cancel=None, progress=None):
        self.calls += 1
        return ImageEmbedding(image[None, :, :, 0].astype(np.float32), image.shape[:2], image.shape[:2], "m")


def test_embeddings_precomputed_in_fp16_on_a_gpu_serve_an_fp32_laptop(tmp_path):
    from annotator.core.geometry import Window
    from annotator.core.volume import Volume
    from annotator.engine.service import EmbeddingService

    volume = Volume(np.arange(2 * 6 * 5, dtype=np.float32).reshape(2, 6, 5), (1.0, 1.0, 1.0))
    server = _CountingEngine("torch-fp16")
    EmbeddingService(server, EmbeddingCache(disk_dir=tmp_path)).embedding(volume, 0, 1, Window(30, 60))
    laptop = _CountingEngine("torch-fp32")
    hit = EmbeddingService(laptop, EmbeddingCache(disk_dir=tmp_path)).embedding(volume, 0, 1, Window(30, 60))
    assert (server.calls, laptop.calls) == (1, 0)
    assert hit.original_size == (6, 5)
    other_runtime = _CountingEngine("openvino-int8")
    other_runtime.accepts_runtimes = ()
    EmbeddingService(other_runtime, EmbeddingCache(disk_dir=tmp_path)).embedding(volume, 0, 1, Window(30, 60))
    assert other_runtime.calls == 1


def test_slice_rgb_u8_windows_the_raw_slice():
    from annotator.core.geometry import Window
    from annotator.core.volume import Volume
    from annotator.engine.slices import slice_rgb_u8

    array = np.zeros((3, 4, 5), dtype=np.int16)
    array[1, 2, 3] = 1000
    array[:, 1, 4] = -1000
    volume = Volume(array, (1.0, 1.0, 1.0))
    rgb = slice_rgb_u8(volume, 1, 2, Window(0, 200))  # axis 1 -> (z, x) slice
    assert rgb.shape == (3, 5, 3)
    assert rgb.dtype == np.uint8
    assert rgb[1, 3].tolist() == [255, 255, 255]
    assert rgb[0, 0].tolist() == [127, 127, 127]
    assert slice_rgb_u8(volume, 0, 0, Window(0, 200))[1, 4].tolist() == [0, 0, 0]
