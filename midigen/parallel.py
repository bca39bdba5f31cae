"""Run a function over many inputs on all cores, in order, with a progress bar.

The pool is midigen's own, not multiprocessing.Pool: when a worker dies (the out-of-memory
killer sends SIGKILL), Pool starts a new one and waits forever for the lost result. Here each
worker has its own pipes and a slot in a shared array saying which job it is on, so a death is
seen at once and raised as WorkerCrash naming that job; SIGTERM/SIGINT in the main process end
every worker within seconds. CrashLog remembers such jobs across runs, so a stage can skip the
file that killed a worker instead of dying on it again.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Generic, TypeVar

from tqdm import tqdm

from midigen.errors import MidigenError

T = TypeVar("T")
R = TypeVar("R")

#: a worker that dies of one of these was stopped from outside: not the job's fault
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT})
#: seconds a stopping worker gets between SIGTERM and SIGKILL
TERMINATE_GRACE_S = 2.0


def n_workers(requested: int) -> int:
    """0 means one worker per available core."""
    if requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def progress(
    iterable: Iterable[T] | None, total: int | None = None, desc: str = "", unit: str = "it", disable: bool = False
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


class WorkerCrash(MidigenError):
    """A worker process died (killed by a signal, or exited) while it worked on a job.

    job and index are the job it was on, working on it or sending back its result (None when
    it died between chunks of jobs); exitcode is the process's (negative: the signal)."""

    def __init__(self, job: Any, index: int | None, exitcode: int | None):
        self.job = job
        self.index = index
        self.exitcode = exitcode
        on = f"while working on job {index} ({job!r})" if index is not None else "between jobs"
        super().__init__(f"a worker process was {self.how} {on}")

    @property
    def signal_name(self) -> str | None:
        if self.exitcode is None or self.exitcode >= 0:
            return None
        try:
            return signal.Signals(-self.exitcode).name
        except ValueError:
            return f"signal {-self.exitcode}"

    @property
    def how(self) -> str:
        """What happened, e.g. 'killed by SIGKILL: out of memory?' or 'exited with code 1'."""
        name = self.signal_name
        if name == "SIGKILL":  # what the kernel's out-of-memory killer sends
            return "killed by SIGKILL: out of memory?"
        if name is not None:
            return f"killed by {name}"
        return "lost" if self.exitcode is None else f"exited with code {self.exitcode}"

    @property
    def blames_job(self) -> bool:
        """Whether the job is the likely cause: not when the worker was told to stop (SIGTERM ...)."""
        if self.index is None:
            return False
        return not (self.exitcode is not None and self.exitcode < 0 and -self.exitcode in STOP_SIGNALS)


def _worker_init() -> None:
    # workers are stopped with SIGTERM; they must not inherit the parent's SIGTERM-as-Ctrl-C
    # handler (midigen.errors.run_main), which would print a traceback. Ctrl-C reaches the whole
    # process group: the parent alone reacts, and stops the workers.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _worker_main(
    fn: Callable, slot: int, current, tasks: Connection, results: Connection, inherited: list, mask: set
) -> None:
    """A worker's loop: receive a chunk of (index, job), send back [(index, ok, value)].

    current[slot] is the job it is on, from its start until the chunk's results are sent (a
    worker killed while it pickles a big result dies of that job too), -1 while it waits."""
    for conn in inherited:  # the parent's ends of the other workers' pipes: they must see EOF
        conn.close()  # when the parent dies, not wait on a copy held here
    _worker_init()
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # the parent blocks signals while it forks
    while True:
        current[slot] = -1
        try:
            chunk = tasks.recv()
        except (EOFError, OSError):  # the parent closed the pipe, or died
            return
        out = []
        for i, job in chunk:
            current[slot] = i
            try:
                out.append((i, True, fn(job)))
            except Exception as exc:
                out.append((i, False, _picklable(exc)))
        try:
            results.send(out)
        except (BrokenPipeError, EOFError):
            return
        except Exception as exc:  # a result that cannot be pickled
            err = RuntimeError(f"cannot send a result back to the main process: {type(exc).__name__}: {exc}")
            results.send([(i, False, err) for i, _, _ in out])


class _Worker:
    def __init__(self, process: mp.process.BaseProcess, tasks: Connection, results: Connection, slot: int):
        self.process = process
        self.tasks = tasks
        self.results = results
        self.slot = slot
        self.chunk: list[tuple[int, Any]] | None = None  # the jobs it holds, None when idle


class WorkerPool(Generic[T, R]):
    """Forked workers, each fed one chunk of jobs at a time through its own pipe.

    Use as a context manager: leaving it (normally, on an error, on Ctrl-C/SIGTERM, or when the
    consumer of imap stops early) stops every worker within TERMINATE_GRACE_S seconds."""

    def __init__(self, fn: Callable[[T], R], workers: int):
        ctx = mp.get_context("fork")
        self._current = ctx.RawArray("q", workers)  # the job index each worker is on, -1 if none
        self._workers: list[_Worker] = []
        # a SIGTERM/Ctrl-C that lands inside fork() is raised in an at-fork hook (logging's),
        # where Python ignores it: the stage would run on. Blocked here, it waits for the end.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            try:
                for slot in range(workers):
                    self._start(ctx, fn, slot, mask)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        except BaseException:
            self.close()
            raise

    def _start(self, ctx, fn: Callable, slot: int, mask: set) -> None:
        self._current[slot] = -1
        task_r, task_w = ctx.Pipe(duplex=False)
        res_r, res_w = ctx.Pipe(duplex=False)
        inherited = [c for w in self._workers for c in (w.tasks, w.results)] + [task_w, res_r]
        args = (fn, slot, self._current, task_r, res_w, inherited, mask)
        proc = ctx.Process(target=_worker_main, args=args, daemon=True)
        try:
            proc.start()
        finally:
            # the parent keeps only its own ends: a dead worker's result pipe then reads EOF
            task_r.close()
            res_w.close()
        self._workers.append(_Worker(proc, task_w, res_r, slot))

    def __enter__(self) -> WorkerPool[T, R]:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(graceful=exc_type is None)

    def close(self, graceful: bool = False) -> None:
        """Stop every worker: let idle ones exit on EOF when graceful, else SIGTERM, then SIGKILL."""
        # a second Ctrl-C/SIGTERM must not cut the cleanup short and leave workers behind: it
        # stays pending and is raised once the workers are gone
        blocked = {signal.SIGINT, signal.SIGTERM}
        old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            for w in self._workers:
                w.tasks.close()  # an idle worker sees EOF and exits
            if not graceful:
                for w in self._workers:
                    if w.process.exitcode is None:
                        w.process.terminate()
            deadline = time.monotonic() + TERMINATE_GRACE_S
            for w in self._workers:
                w.process.join(max(0.0, deadline - time.monotonic()))
            for w in self._workers:
                if w.process.exitcode is None:
                    w.process.kill()
                    w.process.join(TERMINATE_GRACE_S)
                w.results.close()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def _dispatch(self, w: _Worker, chunk: list[tuple[int, Any]]) -> None:
        w.chunk = chunk
        try:
            w.tasks.send(chunk)
        except (BrokenPipeError, OSError):  # it died: its sentinel says so on the next wait
            pass

    def _crash(self, w: _Worker) -> WorkerCrash | None:
        """The crash of a worker that died holding a chunk, or None when it had not started
        any of the chunk's jobs (then the chunk can go to another worker)."""
        w.process.join(TERMINATE_GRACE_S)
        i = self._current[w.slot]
        jobs = dict(w.chunk or [])
        return WorkerCrash(jobs[i], i, w.process.exitcode) if i in jobs else None

    def imap(self, jobs: Iterable[T], chunksize: int = 1) -> Iterator[R]:
        """Yield fn(job) for every job, in input order; raise fn's exception at its job's turn,
        WorkerCrash as soon as a worker dies while it works on a job."""
        numbered = enumerate(jobs)
        chunks = iter(lambda: list(islice(numbered, chunksize)), [])
        # results wait here until their turn; capping the jobs handed out ahead of the next one
        # due keeps this (and memory) bounded when one file is slow
        ahead = max(len(self._workers) * chunksize * 4, 1)
        done: dict[int, tuple[bool, Any]] = {}
        next_out, next_in = 0, 0
        backlog: list[list[tuple[int, Any]]] = []  # chunks to hand out first (a dead worker's)
        exhausted = False
        alive = list(self._workers)
        while True:
            while next_out in done:
                ok, value = done.pop(next_out)
                next_out += 1
                if not ok:
                    raise value
                yield value
            for w in alive:
                if w.chunk is not None or w.process.exitcode is not None:  # busy, or died idle
                    continue
                if not backlog and not exhausted:
                    chunk = next(chunks, None)
                    exhausted = chunk is None
                    backlog += [chunk] if chunk else []
                if not backlog or backlog[0][0][0] >= next_out + ahead:
                    break
                chunk = backlog.pop(0)
                self._dispatch(w, chunk)
                next_in = max(next_in, chunk[-1][0] + 1)
            alive = [w for w in alive if w.chunk is not None or w.process.exitcode is None]
            busy = [w for w in alive if w.chunk is not None]
            if not busy:
                if exhausted and not backlog and next_out >= next_in:
                    return
                if not alive:
                    raise WorkerCrash(None, None, None)
                continue
            ready = set(wait([w.results for w in busy] + [w.process.sentinel for w in busy]))
            for w in busy:
                out = None
                if w.results in ready or (w.process.sentinel in ready and w.results.poll()):
                    try:
                        out = w.results.recv()
                    except (EOFError, OSError):  # it died: before it sent them, or while it did
                        pass
                if out is not None:
                    for i, ok, value in out:
                        done[i] = (ok, value)
                    w.chunk = None
                elif w.results in ready or w.process.sentinel in ready:
                    crash = self._crash(w)
                    if crash is not None:
                        raise crash
                    backlog.insert(0, w.chunk)  # died before it began: nothing ran, nothing lost
                    w.chunk = None
                    alive.remove(w)


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
    jobs, never copied into a list. A worker that dies raises WorkerCrash (naming its job)
    within seconds; an exception inside fn is raised at its job's turn."""
    n = len(jobs) if total is None else total  # type: ignore[arg-type]
    workers = min(n_workers(workers), max(1, n))
    if workers == 1 or n < 8:
        yield from progress(map(fn, jobs), total=n, desc=desc, unit=unit)
        return
    chunksize = max(1, min(64, n // (workers * 8)))
    with WorkerPool(fn, workers) as pool, progress(None, total=n, desc=desc, unit=unit) as bar:
        for result in pool.imap(jobs, chunksize):
            bar.update(1)
            yield result


#: the folder, next to a stage's output folder, where CrashLog files live: git ignores all of
#: data/ but data/external/, and DVC neither tracks nor deletes it (it is no stage's output)
CRASH_DIR = ".midigen-crashes"


def crash_log_path(out_dir: str | Path, stage: str) -> Path:
    """Where `stage`, writing into out_dir (e.g. data/tokens), remembers its crashes:
    data/.midigen-crashes/<stage>.csv for the project's stages."""
    return Path(out_dir).parent / CRASH_DIR / f"{stage}.csv"


class CrashLog:
    """Jobs that killed a worker, remembered across runs in a small CSV outside any stage's
    outputs (DVC deletes those before a rerun).

    Rows: key (what the job depended on, e.g. a stage's limits, as JSON), sha1 and size (of the
    file's content), name, reason. A stage looks a file up by its content hash under its key and
    lists a remembered one as rejected instead of reading it again; deleting its row (or the
    whole file) tries it again."""

    COLUMNS = ["key", "sha1", "size", "name", "reason"]

    def __init__(self, path: str | Path, key: dict[str, Any]):
        self.path = Path(path)
        self.key = json.dumps(key, sort_keys=True, default=str)
        self.rows: list[dict[str, str]] = []
        if self.path.exists():
            from midigen.table import read_rows

            self.rows = read_rows(self.path)
        mine = [r for r in self.rows if r.get("key") == self.key and r.get("sha1")]  # tolerate hand edits
        self._mine = {r["sha1"]: r.get("reason") or "a worker reading it died" for r in mine}
        self.sizes = {int(r["size"]) for r in mine if (r.get("size") or "").isdigit()}

    def __bool__(self) -> bool:
        return bool(self._mine)

    def reason(self, sha1: str) -> str | None:
        """Why the file with this content hash is skipped, or None."""
        return self._mine.get(sha1)

    def add(self, sha1: str, size: int, name: str, reason: str) -> None:
        from midigen.table import write_rows

        if sha1 in self._mine:
            return
        self.rows.append({"key": self.key, "sha1": sha1, "size": size, "name": name, "reason": reason})
        self._mine[sha1] = reason
        self.sizes.add(size)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_rows(self.path, self.rows, self.COLUMNS)
