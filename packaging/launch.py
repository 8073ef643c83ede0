"""The packaged app's entry point. A frozen app has no Python to run `-m module`, yet the app
starts its own helper processes that way (the background runtime check); so `APP -m MODULE ARGS`
runs MODULE as `python -m` would, and anything else starts annotator."""

from __future__ import annotations

import multiprocessing
import runpy
import sys


def main() -> int:
    multiprocessing.freeze_support()  # export's process pool re-enters here in its workers
    if len(sys.argv) >= 3 and sys.argv[1] == "-m":
        module = sys.argv[2]
        if not module.startswith("annotator."):
            sys.stderr.write(f"{sys.argv[0]}: only annotator's own modules run with -m, not {module}\n")
            return 2
        sys.argv = [sys.argv[0], *sys.argv[3:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return 0
    from annotator.app import main as app_main

    return app_main()


if __name__ == "__main__":
    raise SystemExit(main())
