"""Run a function over many inputs on all cores, in order, with a progress bar."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def n_workers(requested: int) -> int:
    """0 means one worker per available core."""
    if requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def progress(
    iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it", disable: bool = False
) -> tqdm:
    """A tqdm bar on stderr that stays quiet enough for logs when stderr is not a terminal."""
    return tqdm(
        iterable,
        disable=disable,
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        mininterval=0.2 if sys.stderr.isatty() else 5.0,
        dynamic_ncols=True,
    )


def _worker_init() -> None:
    # the pool stops its workers with SIGTERM; they must not inherit the parent's
    # SIGTERM-as-Ctrl-C handler (midigen.errors.run_main), which would print a traceback
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def imap_progress(
    fn: Callable[[T], R],
    jobs: Iterable[T],
    workers: int = 0,
    desc: str = "",
    unit: str = "it",
    total: int | None = None,
) -> Iterator[R]:
    """Yield fn(job) for every job, in input order, using a process pool when it pays.

    jobs may be a generator (then give its length as total): it is read as the workers take
    jobs, never copied into a list."""
    n = len(jobs) if total is None else total  # type: ignore[arg-type]
    workers = min(n_workers(workers), max(1, n))
    if workers == 1 or n < 8:
        yield from progress(map(fn, jobs), total=n, desc=desc, unit=unit)
        return
    chunksize = max(1, min(64, n // (workers * 8)))
    with mp.get_context("fork").Pool(workers, initializer=_worker_init) as pool:
        yield from progress(pool.imap(fn, jobs, chunksize=chunksize), total=n, desc=desc, unit=unit)
