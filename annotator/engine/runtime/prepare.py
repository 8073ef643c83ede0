"""First-start runtime check in a background process, so the window segments on torch at once.

Exporting and compiling the encoder and the accuracy self-check take one to three minutes on a
2-core laptop, once per machine and weights. The window must not make a clinician wait for that:
it loads the model on torch (LiteMedSAM: about 2 s), starts `python -m annotator.engine.runtime.prepare`
at low priority, and every later start finds the stored choice and the compiled models at once.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

log = logging.getLogger(__name__)


def start_background_preparation(runtime: str = "auto", engine: str = "auto",
                                 checkpoint: str | None = None) -> subprocess.Popen[bytes] | None:
    """Start the check for the engine create_engine(engine, checkpoint) gives ("auto": by the
    checkpoint's layout, the bundled LiteMedSAM without one) in a separate low-priority process;
    None if it could not be started."""
    # The child lowers its own priority (main): a preexec_fn may deadlock when the parent has
    # threads, and the window starts this from its loader thread.
    flags = getattr(subprocess, "BELOW_NORMAL_PRIORITY_CLASS", 0) if os.name == "nt" else 0
    try:
        return subprocess.Popen(  # our own module, fixed arguments
            [sys.executable, "-m", "annotator.engine.runtime.prepare", runtime, engine,
             *([str(checkpoint)] if checkpoint else [])],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            creationflags=flags,
        )
    except OSError as exc:
        log.warning("could not start the background runtime check: %s", exc)
        return None


def main(argv: list[str] | None = None) -> int:
    """Arguments: [runtime [engine [checkpoint]]] (default: auto, auto, bundled weights).

    Loads the engine with that runtime on the CPU: checks, exports, stores the choice."""
    argv = sys.argv[1:] if argv is None else argv
    if hasattr(os, "nice"):
        os.nice(10)  # a background job: the user's window comes first
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from annotator.engine.factory import create_engine

    runtime, name, checkpoint = (list(argv) + [None] * 3)[:3]
    engine = create_engine(name or "auto", checkpoint=checkpoint, runtime=runtime or "auto", device="cpu")
    log.info("%s runtime prepared: %s", getattr(engine, "model_id", name), engine.runtime)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
