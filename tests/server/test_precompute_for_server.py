"""Scale-out precompute: `annotator precompute --for-server DIR --scheduler ADDRESS` on a Dask
LocalCluster fills a content-addressed folder; a fresh `annotator serve --cache-dir DIR` then
serves every slice of those volumes with 0 encoder calls (counted by the server); a second
precompute writes nothing; a corrupt entry is never served."""

from __future__ import annotations

import numpy as np
import pytest
from server_fixture import TOKEN

pytestmark = [pytest.mark.slow]


def test_dask_precompute_then_a_fresh_server_encodes_nothing(tmp_path, capsys):
    pytest.importorskip("torch")
    from distributed import LocalCluster

    from annotator.cli import main
    from annotator.core.geometry import default_window
    from annotator.core.phantom import make_phantom
    from annotator.engine.remote import RemoteEngine
    from annotator.engine.slices import slice_rgb_u8
    from annotator.io import load_volume, write_volume
    from annotator.server.local import start_local_server

    phantom = make_phantom((6, 64, 64), (5.0, 3.0, 3.0))
    paths = []
    for k in range(2):
        path = tmp_path / f"ct{k}.nii.gz"
        write_volume(phantom.volume.with_array(np.roll(phantom.volume.array, 5 * k, axis=2)), path)
        paths.append(path)
    folder = tmp_path / "shared-cache"
    engine_args = ["--engine", "lite-medsam", "--runtime", "torch"]
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                      host="127.0.0.1", dashboard_address=None) as cluster:
        rc = main(["precompute", *map(str, paths), "--for-server", str(folder), "--scheduler",
                   cluster.scheduler_address, "--no-progress", *engine_args])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "12 slices of 2 volume(s)" in out
    assert "12 embedded" in out
    assert main(["precompute", *map(str, paths), "--for-server", str(folder), "--no-progress", *engine_args]) == 0
    assert "0 embedded, 12 already there" in capsys.readouterr().out

    url, proc = start_local_server(tmp_path / "home", TOKEN,
                                   args=(*engine_args, "--cache-dir", str(folder)))
    try:
        remote = RemoteEngine(url, TOKEN)
        for path in paths:  # what the window sends for every slice of these volumes
            volume = load_volume(path)
            window = default_window(volume)
            for index in range(volume.shape_zyx[0]):
                embedding = remote.embed(slice_rgb_u8(volume, 0, index, window))
                remote.predict(embedding, box_xyxy=np.array([10.0, 10.0, 40.0, 40.0]))
        import httpx

        info = httpx.get(f"{url}/v1/info", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert info["encoder_calls"] == 0
        assert info["shared_hits"] == 12
        # a new slice is encoded once and written to the shared folder for the next server
        other = np.full((64, 64, 3), 40, np.uint8)
        remote.embed(other)
        info = httpx.get(f"{url}/v1/info", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert info["encoder_calls"] == 1
        remote.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_corrupt_shared_entry_is_recomputed_not_served(tmp_path):
    from annotator.engine.classical import ClassicalEngine
    from annotator.engine.slice_store import embed_into, lookup, open_slice_store

    engine = ClassicalEngine()
    store = open_slice_store(tmp_path)
    image = np.zeros((16, 16, 3), np.uint8)
    eid, made = embed_into(store, engine, image)
    assert made
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files
    for f in files:
        f.write_bytes(f.read_bytes()[:20])  # a writer that died half-way on another machine
    fresh = open_slice_store(tmp_path)
    assert lookup(fresh, engine, eid) is None
    assert embed_into(fresh, engine, image)[1]
