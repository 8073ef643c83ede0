"""The server tests' server: `annotator serve` with the bundled LiteMedSAM on torch fp32 (the same
numbers as the local reference engine), on loopback in a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

TOKEN = "test-token-" + "x" * 24


def start_server(home: Path):
    from annotator.server.local import start_local_server

    try:
        return start_local_server(home, TOKEN, args=("--engine", "lite-medsam", "--runtime", "torch",
                                                     "--max-request-mb", "4"))
    except RuntimeError as exc:
        pytest.fail(str(exc))
