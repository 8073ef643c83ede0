"""`annotator SUBCOMMAND ...`: batch commands for data engineers and scripts (no Qt).

Exit codes: 0 success; 1 the command ran and found problems (validate, evaluate thresholds);
2 bad input or usage (the message names the file and the problem); 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys

from annotator import __version__
from annotator.core.errors import AnnotatorError

# One module per subcommand, each exposing add_parser(subparsers) that sets `func=run(args) -> int`.
SUBCOMMANDS = ("info", "convert", "precompute", "segment", "evaluate", "export", "clean", "validate", "serve")

log = logging.getLogger("annotator")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="annotator",
        description="Label CT/MR scans with Segment Anything. With no subcommand, opens the window "
        "(optionally on PATH, or on the demo volume with --demo); `annotator review DATASET` opens a "
        "dataset in the window for review.",
    )
    parser.add_argument("--version", action="version", version=f"annotator {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module_name = f"annotator.cli.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue  # subcommand not part of this build yet
        importlib.import_module(module_name).add_parser(sub)
    return parser


def is_subcommand(argv: list[str]) -> bool:
    """True when argv asks for a batch command (or help/version) rather than the window."""
    first = next((a for a in argv if a not in ("-v", "--verbose")), None)
    return first in SUBCOMMANDS or first in ("-h", "--help", "--version")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except AnnotatorError as exc:
        sys.stderr.write(f"annotator {args.command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("annotator: interrupted\n")
        return 130
