"""`annotator serve`: the engine on this machine (a GPU server, typically) behind an HTTP API that
the window (*Engine → Run on: server*) and `annotator evaluate --server` use from other machines.

Safe by default: listens on 127.0.0.1 unless --host says otherwise; every request needs a bearer
token (ANNOTATOR_SERVER_TOKEN, or --token-file, or a random token created in the user's data
folder on first start, whose path is printed); TLS with --ssl-certfile/--ssl-keyfile (uvicorn's).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

log = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> None:
    from annotator.engine.factory import engine_names

    parser = subparsers.add_parser(
        "serve", help="run the segmentation engine as an HTTP server for windows on other machines",
        description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8765)
    engines = engine_names()
    parser.add_argument("--engine", choices=list(engines), default="auto", metavar="ENGINE",
                        help="; ".join(f"{k}: {v}" for k, v in engines.items()))
    parser.add_argument("--checkpoint", metavar="CK", help="SAM ViT-B/L/H, MedSAM or LiteMedSAM checkpoint (.pth)")
    parser.add_argument("--sam-flavour", choices=("auto", "sam", "medsam"), default="auto")
    parser.add_argument("--runtime", default="auto", help="auto (fastest accurate here) or a runtime name")
    parser.add_argument("--device", default="auto", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--token-file", help="file with the accepted tokens, one per line (default: "
                                             "ANNOTATOR_SERVER_TOKEN, else the server-token file in the data folder)")
    parser.add_argument("--max-request-mb", type=float, default=64.0, help="largest request body (default 64)")
    parser.add_argument("--cache-gb", type=float, default=4.0, help="embeddings kept in memory (default 4 GiB)")
    parser.add_argument("--cache-dir", help="embedding folder shared with `annotator precompute --for-server` "
                                            "(content-addressed; a precomputed slice is never encoded again)")
    parser.add_argument("--ssl-certfile", help="TLS certificate (PEM); with --ssl-keyfile the server speaks https")
    parser.add_argument("--ssl-keyfile", help="TLS private key (PEM)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from annotator.engine.api import engine_summary
    from annotator.engine.factory import create_engine
    from annotator.engine.server_token import ENV, default_token_file, read_tokens
    from annotator.server.app import create_app

    tokens = read_tokens(args.token_file, create=True)
    engine = create_engine(args.engine, checkpoint=args.checkpoint, runtime=args.runtime,
                           device=args.device, sam_flavour=args.sam_flavour)
    app = create_app(engine, tokens, max_request_bytes=int(args.max_request_mb * (1 << 20)),
                     cache_bytes=int(args.cache_gb * (1 << 30)), cache_dir=args.cache_dir)
    scheme = "https" if args.ssl_certfile else "http"
    where = "the environment" if os.environ.get(ENV) else (args.token_file or default_token_file())
    sys.stderr.write(f"annotator serve: {engine_summary(engine)} at {scheme}://{args.host}:{args.port} "
                     f"(token from {where})\n")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile)
    return 0
