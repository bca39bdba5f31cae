"""Preprocess: MIDI files listed in the manifest -> token store, in parallel, never stopping
on a bad file. Each rejected file is recorded with its reason.

A file whose worker process dies while reading it (the out-of-memory killer's SIGKILL, a
parser's segfault) stops the run with an error naming it, and is remembered by its content
hash and the preprocess limits (midigen.parallel.CrashLog, data/.midigen-crashes/preprocess.csv
for the stage): the next run with the same limits lists it in rejected.csv without reading it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import signal
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from midigen import representations
from midigen.data import keys
from midigen.data.store import StoreSummary, index_columns, metadata_names, write_store
from midigen.errors import DataError, MidiError, ParamsError
from midigen.parallel import CrashLog, WorkerCrash, crash_log_path, imap_progress
from midigen.params import DEFAULTS
from midigen.table import iter_rows, one_line, text_to_path, write_rows


class Job(NamedTuple):
    """One file for a worker: its rel_path, the path to open, and, for a file that killed a
    worker in an earlier run, the reason to reject it with instead of reading it."""

    rel_path: str
    path: str
    skip: str | None = None


#: the preprocess params that bound reading one file (and key the crash log)
LIMIT_KEYS = ("max_file_mb", "max_notes", "max_duration_s", "max_memory_mb", "timeout_s", "drums")


@functools.lru_cache(maxsize=4)
def _representation(config_items: tuple) -> representations.Representation:
    return representations.from_config(dict(config_items))


def tokenize_file(
    job: tuple[str, str] | Job, config_items: tuple, limits: dict[str, Any]
) -> tuple[str, np.ndarray | None, dict]:
    """One file -> (rel_path, ids, info) or (rel_path, None, {"reason": ...}). Never raises."""
    rel_path, path, skip = Job(*job)
    if skip:
        return rel_path, None, {"reason": skip}
    rep = _representation(config_items)
    try:
        with time_limit(limits["timeout_s"]):
            return _tokenize(rel_path, path, rep, limits)
    except _Timeout:  # fired between the work and the timer's cancellation
        return rel_path, None, {"reason": f"took longer than preprocess.timeout_s = {limits['timeout_s']:g} s"}


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise _Timeout inside the block after `seconds` (SIGALRM; main thread of a process only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _check_size(path: str, limits: dict[str, Any]) -> None:
    size_mb = os.path.getsize(path) / 1e6
    if size_mb > limits["max_file_mb"]:
        raise MidiError(path, f"file is {size_mb:.1f} MB, over preprocess.max_file_mb = {limits['max_file_mb']:g}")


def count_file(job: tuple[str, str] | Job, config_items: tuple, limits: dict[str, Any]) -> Counter | None:
    """The chord counts of one file (first pass for notes_chords), None when it cannot be used:
    the tokenize pass records the reason."""
    _, path, skip = Job(*job)
    if skip:
        return None
    rep = _representation(config_items)
    try:
        with time_limit(limits["timeout_s"]):
            _check_size(path, limits)
            return Counter(rep.chord_names(rep.read_checked(path, limits)[0]))
    except Exception:
        return None


def count_chords(
    jobs: Iterable[tuple[str, str]], rep, limits: dict[str, Any], workers: int, n_jobs: int | None = None
) -> Counter:
    """Chord counts over every file: the corpus table notes_chords builds its vocabulary from.

    All files count, not only the training split: the split is made after preprocessing, and a
    chord seen only in held-out pieces gets an id the model never learned, which makes the test
    loss worse, not better, so nothing leaks in the model's favour.
    """
    fn = functools.partial(count_file, config_items=_freeze(rep.config()), limits=limits)
    total: Counter = Counter()
    for counts in imap_progress(fn, jobs, workers, desc="count chords", unit="file", total=n_jobs):
        total.update(counts or {})
    return total


def _freeze(config: dict[str, Any]) -> tuple:
    """A representation config as a hashable tuple (lists, e.g. notes_chords' chords, as tuples)."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in config.items()))


def _tokenize(rel_path: str, path: str, rep, limits: dict[str, Any]) -> tuple[str, np.ndarray | None, dict]:
    try:
        _check_size(path, limits)
        ids, info = rep.tokenize_file(path, limits)
        return rel_path, ids, info
    except MidiError as exc:
        return rel_path, None, {"reason": exc.reason}
    except _Timeout:
        return rel_path, None, {"reason": f"took longer than preprocess.timeout_s = {limits['timeout_s']:g} s"}
    except OSError as exc:
        return rel_path, None, {"reason": f"cannot read: {exc.strerror or exc}"}
    except Exception as exc:  # a parser bug on a hostile file must not stop the corpus
        return rel_path, None, {"reason": f"unexpected {type(exc).__name__}: {exc}"[:300]}


#: manifest columns that are not piece metadata (the index does not repeat them)
NOT_METADATA = ("rel_path", "path", "size")

#: what a remembered crash says in rejected.csv (the crash's own words come first)
REMEMBERED = "in an earlier run with these preprocess limits; remembered in {log}: delete its row to try it again"

Manifest = str | Path | Sequence[dict]


def _manifest_rows(manifest: Manifest) -> Iterator[dict]:
    """The manifest's rows, streamed from the CSV file when it is a path."""
    return iter_rows(manifest) if isinstance(manifest, str | Path) else iter(manifest)


def _scan(manifest: Manifest) -> tuple[int, bool]:
    """(number of distinct rel_paths, whether the rows are sorted by rel_path either way, as
    ingest writes them, so that repeats are adjacent), in one pass."""
    n, prev, up, down = 0, None, True, True
    for row in _manifest_rows(manifest):
        rel = row["rel_path"]
        if rel != prev:
            n += 1
            if prev is not None:
                up, down = up and rel > prev, down and rel < prev
            prev = rel
    if not (up or down):
        n = len({row["rel_path"] for row in _manifest_rows(manifest)})
    return n, up or down


def _unique_rows(manifest: Manifest, sorted_: bool) -> Iterator[dict]:
    """The first manifest row of each rel_path. Repeats in a sorted manifest are adjacent and
    need no memory; an unsorted one (hand-made) pays for a set of the paths seen."""
    prev, seen = None, None if sorted_ else set()
    for row in _manifest_rows(manifest):
        rel = row["rel_path"]
        if rel == prev or (seen is not None and rel in seen):
            continue
        if seen is not None:
            seen.add(rel)
        prev = rel
        yield row


def _sha1(path: str) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _remembered(row: dict, path: str, log: CrashLog) -> str | None:
    """The crash log's reason for this manifest row's file, or None (hashing a file only when a
    hand-made manifest gives no sha1 and its size is one the log knows)."""
    if not log:
        return None
    if row.get("sha1"):
        return log.reason(row["sha1"])
    try:
        return log.reason(_sha1(path)) if os.path.getsize(path) in log.sizes else None
    except OSError:
        return None


def _crashed(crash: WorkerCrash, log: CrashLog, what: str) -> DataError:
    """The one-line error for a worker that died on a file; the file goes into the crash log."""
    if crash.job is None:
        return DataError(f"preprocess ({what}): {crash}")
    job = Job(*crash.job)
    name = one_line(job.rel_path)
    if not crash.blames_job:
        return DataError(f"{name}: the worker reading it was {crash.how} ({what})")
    try:
        log.add(_sha1(job.path), os.path.getsize(job.path), job.rel_path, f"a worker reading it was {crash.how}")
    except OSError as exc:
        return DataError(f"{name}: the worker reading it was {crash.how} ({what}); cannot hash it: {exc.strerror}")
    return DataError(
        f"{name}: the worker reading it was {crash.how} ({what}); remembered in {log.path}: "
        "the next run with these preprocess limits lists it in rejected.csv"
    )


def preprocess(
    manifest: Manifest, params: dict[str, Any], out_dir: Path, workers: int = 0, crashes: Path | None = None
) -> StoreSummary:
    """Tokenize every manifest row (dicts with rel_path, path, ...; or the manifest CSV's path,
    streamed) into a store at out_dir. The first row wins if a path is listed twice.

    Memory does not grow with the corpus: rows are streamed from the manifest to index.csv and
    rejected.csv. Returns the store's summary (counts, sums, the first rejected rows). A worker
    that dies on a file raises DataError naming it and records it in crashes (by default
    out_dir/../.midigen-crashes/preprocess.csv); later runs with the same limits reject it.
    Metadata columns named like the store's own (n_notes, duration_s ...) get a meta_ prefix."""
    rep = representations.from_params(params)
    limits = {k: {**DEFAULTS["preprocess"], **params}[k] for k in LIMIT_KEYS}
    log = CrashLog(crashes or crash_log_path(out_dir, "preprocess"), limits)
    key = keys.resolve(params.get("key", DEFAULTS["preprocess"]["key"]), rep.name)
    if key == "c" and not rep.keyed:
        raise ParamsError(
            f"preprocess.key = {key!r}: the {rep.name} representation cannot be moved to another key "
            "(it applies to events, voices, notes_chords and pitch_duration); use preprocess.key: keep"
        )
    # the key is not a limit: a file that crashed a worker crashes it in any key
    limits = {**limits, "key": key}
    total, sorted_ = _scan(manifest)
    first = next(_manifest_rows(manifest), None)
    metadata = [k for k in (first or {}) if k not in NOT_METADATA]
    remembered = " (" + REMEMBERED.format(log=log.path) + ")"

    def jobs() -> Iterator[Job]:
        for row in _unique_rows(manifest, sorted_):
            path = text_to_path(row["path"])
            skip = _remembered(row, path, log)
            yield Job(row["rel_path"], path, skip + remembered if skip else None)

    chord_counts = None
    if rep.vocab_from_data:
        try:
            chord_counts = count_chords(jobs(), rep, limits, workers, total)
        except WorkerCrash as crash:
            raise _crashed(crash, log, "counting chords") from None
        rep = representations.from_params(params, chord_counts)
    fn = functools.partial(tokenize_file, config_items=_freeze(rep.config()), limits=limits)
    keyed = [keys.SHIFT_COLUMN] if key == "c" else []
    names = metadata_names(metadata, [*rep.info_keys, *keyed])
    columns = index_columns(["rel_path", *rep.info_keys, *keyed, *names.values()])

    def pieces() -> Iterator[tuple[dict, np.ndarray | None]]:
        # a second pass over the manifest, in step with the jobs, gives each piece its metadata
        results = imap_progress(fn, jobs(), workers, desc="tokenize", unit="file", total=total)
        for (rel_path, ids, info), row in zip(results, _unique_rows(manifest, sorted_), strict=True):
            if ids is None:
                yield {"rel_path": rel_path, **info}, None
            else:
                yield {"rel_path": rel_path, **info, **{names[k]: row.get(k) for k in metadata}}, ids

    try:
        summary = write_store(out_dir, pieces(), rep, columns)
    except WorkerCrash as crash:
        raise _crashed(crash, log, "tokenizing") from None
    if chord_counts is not None and summary.pieces:
        write_rows(out_dir / "chord_counts.csv", rep.count_rows(chord_counts), ["chord", "count", "in_vocab"])
    if not summary.pieces:
        reasons = Counter(r["reason"] for r in iter_rows(out_dir / "rejected.csv")).most_common(3)
        shutil.rmtree(out_dir, ignore_errors=True)
        raise DataError(
            f"no usable piece among {total} files; most common reasons: " + "; ".join(f"{r} ({n})" for r, n in reasons)
        )
    return summary
