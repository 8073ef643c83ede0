"""Start `annotator serve` as a subprocess on loopback and wait until it answers: what the server
tests, bench/remote_latency.py and a user trying the client/server split on one machine need."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_local_server(home: Path, token: str, *, args: tuple[str, ...] = ("--engine", "lite-medsam"),
                       timeout_s: float = 120.0) -> tuple[str, subprocess.Popen]:
    """(url, process) of a server on 127.0.0.1 with its own cache/config/data folders under `home`.
    RuntimeError with the server's output when it does not answer within `timeout_s`."""
    import httpx

    port = free_port()
    env = dict(os.environ, ANNOTATOR_SERVER_TOKEN=token, ANNOTATOR_CACHE_DIR=str(home / "cache"),
               ANNOTATOR_CONFIG_DIR=str(home / "config"), ANNOTATOR_DATA_DIR=str(home / "data"))
    proc = subprocess.Popen([sys.executable, "-m", "annotator", "serve", "--port", str(port), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/v1/info", headers={"Authorization": f"Bearer {token}"}, timeout=2).status_code == 200:
                return url, proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate(timeout=10)
            raise RuntimeError(f"annotator serve did not start: {out}\n{err}")
        time.sleep(0.3)
