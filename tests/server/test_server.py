"""`annotator serve` on loopback (uvicorn in a subprocess) with the bundled LiteMedSAM on CPU: the
remote engine gives the local engine's masks for a box, corrective clicks and a propagation on
the shared CT; a wrong token, an oversized request and a malformed prompt are refused with clear
messages; a server that dies mid-propagation is an error message, never a hang."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from server_fixture import TOKEN, start_server

from annotator.engine.api import EngineError
from annotator.engine.wire import pack

pytestmark = [pytest.mark.slow]

CASE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "labelled" / "ct_totalseg_abdomen_3mm"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("torch")
    url, proc = start_server(tmp_path_factory.mktemp("server"))
    yield url, proc
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def engines(server):
    from annotator.engine.factory import create_engine
    from annotator.engine.remote import RemoteEngine

    remote = RemoteEngine(server[0], TOKEN)
    local = create_engine("lite-medsam", runtime="torch")
    yield local, remote
    remote.close()


def test_wrong_token_oversized_and_malformed_requests_are_refused_clearly(server):
    import httpx

    url, _ = server
    response = httpx.get(f"{url}/v1/info", headers={"Authorization": "Bearer wrong-token-wrong-token"})
    assert response.status_code == 401
    assert "missing or wrong token" in response.json()["detail"]
    assert httpx.get(f"{url}/v1/info").status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    big = httpx.post(f"{url}/v1/embeddings", content=b"\0" * (5 << 20), headers=auth)
    assert big.status_code == 413
    assert "larger than" in big.json()["detail"]
    junk = httpx.post(f"{url}/v1/embeddings", content=b"not an npz", headers=auth)
    assert junk.status_code == 400
    assert "not an annotator payload" in junk.json()["detail"]
    image = np.zeros((32, 32, 3), np.uint8)
    embedded = httpx.post(f"{url}/v1/embeddings", content=pack({"image": image}), headers=auth).json()
    bad_box = httpx.post(f"{url}/v1/predict", headers=auth,
                         content=pack({"box_xyxy": np.array([1.0, 2.0, 3.0])}, {"id": embedded["id"]}))
    assert bad_box.status_code == 422
    assert "box_xyxy" in bad_box.json()["detail"]
    nan = httpx.post(f"{url}/v1/predict", headers=auth,
                     content=pack({"points_xy": np.array([[np.nan, 1.0]]), "point_labels": np.array([1])},
                                  {"id": embedded["id"]}))
    assert nan.status_code == 422
    assert "NaN" in nan.json()["detail"]
    nothing = httpx.post(f"{url}/v1/predict", headers=auth, content=pack({}, {"id": embedded["id"]}))
    assert "needs points or a box" in nothing.json()["detail"]
    other_user = httpx.get(f"{url}/v1/embeddings/{embedded['id']}", headers={"Authorization": "Bearer " + "y" * 30})
    assert other_user.status_code == 401


def test_one_tokens_embeddings_are_invisible_to_another(tmp_path):
    from fastapi.testclient import TestClient

    from annotator.engine.classical import ClassicalEngine
    from annotator.server.app import create_app

    app = create_app(ClassicalEngine(), ["a" * 20, "b" * 20])
    client = TestClient(app)
    image = np.full((16, 16, 3), 7, np.uint8)
    eid = client.post("/v1/embeddings", content=pack({"image": image}),
                      headers={"Authorization": "Bearer " + "a" * 20}).json()["id"]
    assert client.get(f"/v1/embeddings/{eid}", headers={"Authorization": "Bearer " + "a" * 20}).status_code == 200
    assert client.get(f"/v1/embeddings/{eid}", headers={"Authorization": "Bearer " + "b" * 20}).status_code == 404


def _ct():
    if not (CASE / "image.nii.gz").is_file():
        pytest.skip("shared data not available")
    from annotator.io import load_volume, read_labels_onto

    volume = load_volume(CASE / "image.nii.gz")
    return volume, read_labels_onto(volume, CASE / "labels.nii.gz").array


def test_box_and_clicks_equal_the_local_engine(engines):
    from annotator.core.geometry import CT_PRESETS, apply_window

    local, remote = engines
    assert remote.model_sha256 == local.model_sha256
    volume, labels = _ct()
    liver = labels == 5
    z = int(np.argmax(liver.sum(axis=(1, 2))))
    image = np.repeat(apply_window(volume.array[z], CT_PRESETS["soft tissue"])[..., None], 3, axis=2)
    rows, cols = np.nonzero(liver[z])
    box = np.array([cols.min(), rows.min(), cols.max(), rows.max()], float)
    e_local, e_remote = local.embed(image), remote.embed(image)
    a = local.predict(e_local, box_xyxy=box, multimask=False)
    b = remote.predict(e_remote, box_xyxy=box, multimask=False)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    # a corrective click fed with the previous logits, as the click strategy does
    points, point_labels = np.array([[cols.mean(), rows.mean()]]), np.array([1])
    a2 = local.predict(e_local, points_xy=points, point_labels=point_labels, box_xyxy=box,
                       mask_input=a.low_res_logits[:1], multimask=False)
    b2 = remote.predict(e_remote, points_xy=points, point_labels=point_labels, box_xyxy=box,
                        mask_input=b.low_res_logits[:1], multimask=False)
    np.testing.assert_array_equal(a2.masks, b2.masks)


def test_propagation_equals_the_local_engine(engines):
    from annotator.core.geometry import CT_PRESETS
    from annotator.engine.propagate import Key, PropagationParams, propagate_volume
    from annotator.evaluate import protocol
    from annotator.evaluate.propagation import MeterSlices
    from annotator.evaluate.runner import EngineMeter

    local, remote = engines
    volume, labels = _ct()
    spleen = labels == 1
    z = int(np.argmax(spleen.sum(axis=(1, 2))))
    u8, _ = protocol.windowed_volume_u8(volume.array, volume.modality)
    window = CT_PRESETS["soft tissue"]
    results = []
    for engine in (local, remote):
        predictor = MeterSlices(EngineMeter(engine, volume, 0, u8))
        key = Key(z, spleen[z], window)
        result = propagate_volume(predictor, volume, 0, key, params=PropagationParams(prefetch=0))
        results.append(result)
    assert sorted(results[0].masks) == sorted(results[1].masks)
    for index in results[0].masks:
        np.testing.assert_array_equal(results[0].masks[index], results[1].masks[index])


def test_evaluate_against_the_server_equals_local(server, tmp_path, monkeypatch, capsys):
    import json

    from annotator.cli import main
    from annotator.core.phantom import make_phantom
    from annotator.io import write_volume

    phantom = make_phantom((12, 96, 96), (5.0, 2.4, 2.4))
    write_volume(phantom.volume, tmp_path / "ct.nii.gz")
    write_volume(phantom.volume.with_array(phantom.truth.array.astype(np.uint8)), tmp_path / "labels.nii.gz")
    monkeypatch.setenv("ANNOTATOR_SERVER_TOKEN", TOKEN)
    common = [str(tmp_path / "ct.nii.gz"), str(tmp_path / "labels.nii.gz"), "--max-clicks", "1"]
    assert main(["evaluate", *common, "--server", server[0], "--json", str(tmp_path / "remote.json")]) == 0
    assert main(["evaluate", *common, "--runtime", "torch", "--json", str(tmp_path / "local.json")]) == 0
    remote = json.loads((tmp_path / "remote.json").read_text())
    local = json.loads((tmp_path / "local.json").read_text())
    def scores(summary):  # everything but the timings
        return {k: v for k, v in summary.items() if not k.endswith("_ms")}

    assert scores(remote["summary"]["all"]) == scores(local["summary"]["all"])
    for a, b in zip(remote["items"], local["items"], strict=True):  # every Dice of every prompt, item by item
        assert (a["plain"], a["refine"], a["app"]) == (b["plain"], b["refine"], b["app"])
    assert server[0] in capsys.readouterr().out  # the report names where the model ran


# last: it stops the module's server
def test_server_gone_is_an_engine_error_not_a_hang(engines, server, tmp_path):
    from annotator.engine.remote import RemoteEngine

    url, proc = server
    remote = RemoteEngine(url, TOKEN, timeout_s=10)
    image = np.zeros((24, 24, 3), np.uint8)
    embedding = remote.embed(image)
    proc.terminate()
    proc.wait(timeout=30)
    start = time.monotonic()
    with pytest.raises(EngineError, match="unreachable"):
        remote.predict(embedding, box_xyxy=np.array([2.0, 2.0, 10.0, 10.0]))
    assert time.monotonic() - start < 10


def test_a_dropped_connection_is_retried_once_then_reported():
    import httpx

    from annotator.engine.remote import RemoteEngine

    calls = {"n": 0}
    info = {"api_version": 1, "model_id": "m", "model_sha256": "s", "preprocess_version": 1,
            "device": "cpu", "runtime": "torch-fp32", "prompt_kind": "box"}

    def flaky(request):
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("connection dropped", request=request)
        return httpx.Response(200, json=info)

    engine = RemoteEngine("http://server.test", TOKEN, transport=httpx.MockTransport(flaky), retry_after_s=0)
    assert engine.model_id == "m"  # the first attempt failed, the retry got through
    assert calls["n"] == 2

    def dead(request):
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(EngineError, match="unreachable \\(tried twice\\)"):
        RemoteEngine("http://server.test", TOKEN, transport=httpx.MockTransport(dead), retry_after_s=0)
