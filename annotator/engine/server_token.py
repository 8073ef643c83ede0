"""Where the server's and the client's token comes from: ANNOTATOR_SERVER_TOKEN, else a token file
(one token per line; several tokens give several users, each seeing only their own embeddings).
Never from the command line, where other users of the machine could read it (ps, shell history)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from annotator.core.atomic import atomic_write_text
from annotator.core.errors import InputError

ENV = "ANNOTATOR_SERVER_TOKEN"


def default_token_file() -> Path:
    from annotator import settings

    return settings.data_dir() / "server-token"


def read_tokens(token_file: str | os.PathLike[str] | None = None, *, create: bool = False) -> list[str]:
    """The accepted tokens: the environment's, else the file's lines; with create=True a missing
    default file is created with one random token, readable by this user only."""
    if os.environ.get(ENV):
        return [os.environ[ENV].strip()]
    path = Path(token_file) if token_file else default_token_file()
    if not path.exists():
        if token_file or not create:
            raise InputError(path, f"no token file (set {ENV} or create the file, one token per line)")
        path.parent.mkdir(parents=True, exist_ok=True)
        old = os.umask(0o077)
        try:
            atomic_write_text(path, secrets.token_urlsafe(32) + "\n", overwrite=False)
        finally:
            os.umask(old)
    tokens = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    short = [t for t in tokens if len(t) < 16]
    if not tokens or short:
        raise InputError(path, "needs one token of at least 16 characters per line")
    return tokens
