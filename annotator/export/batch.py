"""Run per-case tasks in parallel with a progress bar and a summary: a local process pool by
default, or an existing Dask distributed cluster (`scheduler="tcp://host:8786"`).

The task function must be importable by name on the workers (a module-level function); one
case failing is recorded in its outcome and never stops the others.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from annotator.core.errors import AnnotatorError

log = logging.getLogger(__name__)

# How long to keep trying to reach a Dask scheduler before giving up with a clear error.
DASK_CONNECT_TIMEOUT_S = 10.0


@dataclass
class CaseOutcome:
    """What happened to one task: its value, or the one-line error that stopped it."""

    name: str
    ok: bool
    value: Any = None
    error: str | None = None
    seconds: float = 0.0


@dataclass
class BatchSummary:
    outcomes: list[CaseOutcome] = field(default_factory=list)
    seconds: float = 0.0
    where: str = "local"

    @property
    def succeeded(self) -> list[CaseOutcome]:
        return [o for o in self.outcomes if o.ok]

    @property
    def failed(self) -> list[CaseOutcome]:
        return [o for o in self.outcomes if not o.ok]

    def text(self, what: str = "cases") -> str:
        lines = [f"{what}: {len(self.succeeded)}/{len(self.outcomes)} in {self.seconds:.1f} s ({self.where})"]
        lines += [f"  FAILED {o.name}: {o.error}" for o in self.failed]
        return "\n".join(lines)


def run_guarded(func: Callable[[Any], Any], task: Any) -> tuple[bool, Any, str | None, float]:
    """Run one task, turning any error into a message (exceptions need not pickle back)."""
    start = time.perf_counter()
    try:
        return True, func(task), None, time.perf_counter() - start
    except AnnotatorError as exc:
        return False, None, str(exc), time.perf_counter() - start
    except Exception as exc:  # one broken case must not stop the dataset; reported per case
        log.debug("task failed", exc_info=True)
        return False, None, f"{type(exc).__name__}: {exc}", time.perf_counter() - start


def default_workers(n_tasks: int) -> int:
    return max(1, min(n_tasks, os.cpu_count() or 1))


def run_cases(func: Callable[[Any], Any], tasks: Sequence[Any], names: Sequence[str] | None = None, *,
              workers: int | None = None, scheduler: str | None = None, progress: bool = True,
              description: str = "cases") -> BatchSummary:
    """Run `func(task)` for every task; outcomes come back in task order.

    workers:   local processes (default: one per CPU, at most one per task); 1 runs in this process.
    scheduler: address of a running Dask distributed scheduler; the same tasks go there instead.
    """
    from tqdm import tqdm

    names = [str(n) for n in names] if names is not None else [f"case {i + 1}" for i in range(len(tasks))]
    outcomes: list[CaseOutcome | None] = [None] * len(tasks)
    start = time.perf_counter()
    bar = tqdm(total=len(tasks), desc=description, unit="case", disable=not progress, file=sys.stderr)

    def record(i: int, packed: tuple[bool, Any, str | None, float]) -> None:
        ok, value, error, seconds = packed
        outcomes[i] = CaseOutcome(names[i], ok, value, error, seconds)
        bar.update(1)
        if not ok:
            bar.write(f"FAILED {names[i]}: {error}", file=sys.stderr)

    try:
        if scheduler:
            where = f"dask {scheduler}"
            _run_on_dask(func, tasks, scheduler, record)
        else:
            n_workers = default_workers(len(tasks)) if workers is None else max(1, int(workers))
            where = f"{n_workers} local process{'es' if n_workers > 1 else ''}"
            if n_workers == 1 or len(tasks) <= 1:
                where = "in process"
                for i, task in enumerate(tasks):
                    record(i, run_guarded(func, task))
            else:
                _run_in_pool(func, tasks, n_workers, record)
    finally:
        bar.close()
    return BatchSummary([o for o in outcomes if o is not None], time.perf_counter() - start, where)


def _run_in_pool(func: Callable[[Any], Any], tasks: Sequence[Any], n_workers: int,
                 record: Callable[[int, tuple[Any, ...]], None]) -> None:
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=n_workers) as pool:
        futures = {pool.submit(run_guarded, func, task): i for i, task in enumerate(tasks)}
        try:
            for future in as_completed(futures):
                record(futures[future], future.result())
        except KeyboardInterrupt:
            for future in futures:
                future.cancel()
            raise


def _run_on_dask(func: Callable[[Any], Any], tasks: Sequence[Any], address: str,
                 record: Callable[[int, tuple[Any, ...]], None]) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError as exc:
        raise AnnotatorError("--scheduler needs the 'distributed' package (pip install dask[distributed])") from exc
    try:
        client = Client(address, timeout=f"{DASK_CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError) as exc:
        raise AnnotatorError(f"{address}: cannot reach the Dask scheduler ({exc})") from exc
    try:
        futures = client.map(run_guarded, [func] * len(tasks), list(tasks), pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        for future in as_completed(futures):
            record(index[future.key], future.result())
    finally:
        client.close()
