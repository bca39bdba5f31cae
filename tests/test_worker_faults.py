"""A worker process that dies (SIGKILL, as the out-of-memory killer sends) ends the stage within
seconds with one line naming the file it was reading, instead of hanging forever; a rerun with
the same limits lists that file in rejected.csv and succeeds. SIGTERM/SIGINT end the pool.

The workers are killed for real, from outside, while they tokenize real (large) MIDI files.
Subprocess timeouts are hang detectors, not performance assertions.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml
from conftest import PROJECT_ROOT, run_stage, stage_workdir, subprocess_env
from test_hostile_input import END_OF_TRACK, note_events, raw_midi, tempo_event
from test_interruption import kill_tree

from midigen.data.preprocess import LIMIT_KEYS
from midigen.parallel import CrashLog, WorkerCrash, crash_log_path, imap_progress
from midigen.params import load_params
from midigen.table import read_rows

#: seconds after which a stage that has not ended counts as hung
HANG_S = 60
N_FILES = 16
CRASH_LOG = "data/.midigen-crashes/preprocess.csv"


def write_heavy_corpus(folder: Path, n_files: int = N_FILES) -> list[str]:
    """n_files distinct MIDI files of 100,000 notes each (~0.8 MB, tens of ms to tokenize, inside
    the default limits): a worker spends nearly all its time inside one of them."""
    folder.mkdir(parents=True)
    notes = note_events([(40 + (i * 7) % 48, i * 20, i * 20 + 60) for i in range(100_000)]) + END_OF_TRACK
    names = []
    for i in range(n_files):
        name = f"heavy_{i:02d}.mid"
        (folder / name).write_bytes(raw_midi(tempo_event(500_000 + i) + notes))  # tempo: distinct content
        names.append(name)
    return names


def start_stage(work: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "stages" / f"{name}.py")],
        cwd=work,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell without job control may start children with SIGINT ignored; a terminal would not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def busy_worker(proc: subprocess.Popen) -> psutil.Process:
    """A pool worker of the stage while it is inside a file: running (on the CPU, not waiting
    for work) after 0.1 s of CPU time (past its start-up), found among the stage's children."""
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the stage ended ({proc.returncode}) before a worker was seen:\n{proc.communicate()}")
        try:
            for child in psutil.Process(proc.pid).children():
                cpu = child.cpu_times()
                if cpu.user + cpu.system >= 0.1 and child.status() == psutil.STATUS_RUNNING:
                    return child
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.001)
    pytest.fail(f"no busy worker under the stage within {HANG_S} s")


def kill_a_worker_mid_file(work: Path) -> tuple[subprocess.Popen, str, str]:
    """Start preprocess, SIGKILL one busy worker; (process, stdout, stderr)."""
    proc = start_stage(work, "preprocess")
    try:
        busy_worker(proc).send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=HANG_S)  # the old multiprocessing.Pool hung here forever
    finally:
        kill_tree(proc)
    return proc, out, err


def leftovers(work: Path) -> list[psutil.Process]:
    """Stage processes (the main one or its forked workers) still alive in `work` after a
    bounded wait (a hang detector)."""

    def alive() -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["cmdline", "cwd", "status"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if "stages/preprocess.py" in cmd and p.info["cwd"] == str(work) and p.info["status"] != "zombie":
                found.append(p)
        return found

    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive()


def test_a_worker_killed_mid_file_ends_preprocess_naming_the_file_and_the_rerun_rejects_it(tmp_path):
    names = write_heavy_corpus(tmp_path / "corpus")
    work = stage_workdir(tmp_path, tmp_path / "corpus")
    assert run_stage(work, "ingest", HANG_S).returncode == 0
    for _ in range(3):  # a kill before the worker began its next files loses nothing: the stage
        proc, out, err = kill_a_worker_mid_file(work)  # succeeds, so try again
        if proc.returncode != 0:
            break
    assert proc.returncode == 2, (proc.returncode, out, err)
    assert "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, err
    assert "killed by SIGKILL: out of memory?" in errors[0], errors[0]
    named = [n for n in names if n in errors[0]]
    assert len(named) == 1, errors[0]
    assert not leftovers(work), "workers left running"
    log = read_rows(work / CRASH_LOG)
    assert [r["name"] for r in log] == named, log

    # DVC deletes the stage's outputs before it reruns; the crash log lives outside them
    shutil.rmtree(work / "data/tokens", ignore_errors=True)
    again = run_stage(work, "preprocess", HANG_S)
    assert again.returncode == 0, again.stdout + again.stderr
    rejected = {r["rel_path"]: r["reason"] for r in read_rows(work / "data/tokens/rejected.csv")}
    assert list(rejected) == named, rejected
    assert "killed by SIGKILL: out of memory?" in rejected[named[0]], rejected
    assert f"rejected: {named[0]}: a worker reading it was killed by SIGKILL" in again.stdout, again.stdout
    index = pd.read_csv(work / "data/tokens/index.csv")
    assert sorted(index["rel_path"]) == sorted(set(names) - set(named))


def test_a_remembered_file_is_rejected_under_the_same_limits_only(tmp_path):
    names = write_heavy_corpus(tmp_path / "corpus", n_files=8)
    work = stage_workdir(tmp_path, tmp_path / "corpus")
    assert run_stage(work, "ingest", HANG_S).returncode == 0
    crashed = read_rows(work / "data/raw/manifest.csv")[3]
    params = yaml.safe_load((work / "params.yaml").read_text(encoding="utf-8"))
    pre = load_params(work / "params.yaml")["preprocess"]
    limits = {k: pre[k] for k in LIMIT_KEYS}
    CrashLog(work / CRASH_LOG, limits).add(crashed["sha1"], int(crashed["size"]), crashed["rel_path"], "a worker died")
    assert run_stage(work, "preprocess", HANG_S).returncode == 0
    assert [r["rel_path"] for r in read_rows(work / "data/tokens/rejected.csv")] == [crashed["rel_path"]]

    params["preprocess"]["timeout_s"] = 29
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    assert run_stage(work, "preprocess", HANG_S).returncode == 0
    assert read_rows(work / "data/tokens/rejected.csv") == []
    assert len(read_rows(work / "data/tokens/index.csv")) == len(names)


def test_the_crash_log_is_git_ignored_and_no_stage_output():
    path = crash_log_path("data/tokens", "preprocess")
    assert path.as_posix() == CRASH_LOG
    ignored = subprocess.run(["git", "check-ignore", "-q", CRASH_LOG], cwd=PROJECT_ROOT, capture_output=True)
    assert ignored.returncode == 0, "the crash log would show up in git status"
    outs = [
        o if isinstance(o, str) else next(iter(o))
        for s in yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"].values()
        for o in s.get("outs", [])
    ]
    assert not [o for o in outs if CRASH_LOG.startswith(o.rstrip("/") + "/") or o == CRASH_LOG], outs


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_preprocess_ends_it_and_every_worker(tmp_path, sig):
    write_heavy_corpus(tmp_path / "corpus", n_files=48)
    work = stage_workdir(tmp_path, tmp_path / "corpus")
    assert run_stage(work, "ingest", HANG_S).returncode == 0
    proc = start_stage(work, "preprocess")
    try:
        busy_worker(proc)  # the signal may come while the second worker is forked: it still counts
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=HANG_S)
    finally:
        kill_tree(proc)
    assert proc.returncode == 130, (proc.returncode, out, err)
    assert "interrupted" in err and "Traceback" not in err, err
    assert not leftovers(work), "workers left running"
    assert not (work / "data/tokens/tokens.bin.tmp").exists()


# -- the helper itself (ingest uses it too) ---------------------------------------------------


def slow_square(x: int) -> int:
    time.sleep(0.05)
    return x * x


def test_imap_progress_names_the_job_of_a_worker_killed_by_sigkill():
    def kill_one() -> None:
        deadline = time.monotonic() + HANG_S
        while time.monotonic() < deadline:
            children = mp.active_children()
            if children:
                time.sleep(0.3)  # well inside the run of 40 jobs x 50 ms on 2 workers
                os.kill(children[0].pid, signal.SIGKILL)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one, daemon=True)
    killer.start()
    results = []
    with pytest.raises(WorkerCrash) as crash:
        for r in imap_progress(slow_square, list(range(40)), workers=2):
            results.append(r)
    killer.join()
    assert crash.value.how == "killed by SIGKILL: out of memory?"
    assert crash.value.blames_job and crash.value.job == crash.value.index
    assert results == [x * x for x in range(len(results))] and len(results) <= crash.value.index
    assert mp.active_children() == []


def boom_at_33(x: int) -> int:
    if x == 33:
        raise ValueError("job 33")
    return x + 1


def test_imap_progress_keeps_order_and_raises_a_job_error_at_its_turn():
    assert list(imap_progress(slow_square, list(range(20)), workers=3)) == [x * x for x in range(20)]
    got = []
    with pytest.raises(ValueError, match="job 33"):
        for r in imap_progress(boom_at_33, iter(range(100)), workers=2, total=100):
            got.append(r)
    assert got == list(range(1, 34))
    assert mp.active_children() == []


def slow_identity(x: int) -> int:
    time.sleep(0.02)
    return x


def test_a_worker_killed_while_it_waits_for_work_loses_nothing():
    def jobs():
        for i in range(40):
            if i == 20:  # the jobs come slowly: every worker has finished its chunk and waits
                time.sleep(0.5)
                os.kill(mp.active_children()[0].pid, signal.SIGKILL)
            yield i

    assert list(imap_progress(slow_identity, jobs(), workers=2, total=40)) == list(range(40))
    assert mp.active_children() == []


def test_a_consumer_that_stops_early_stops_the_workers():
    results = imap_progress(slow_square, list(range(100)), workers=2)
    assert next(results) == 0
    assert len(mp.active_children()) == 2
    results.close()
    assert mp.active_children() == []


def test_a_worker_killed_mid_export_ends_ingest_naming_the_score_and_the_rerun_lists_it_as_failed(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["data"].update(source="music21:bach", max_pieces=12, workers=2)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "stages" / "ingest.py")],
        cwd=work,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        busy_worker(proc).send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=HANG_S)
    finally:
        kill_tree(proc)
    assert proc.returncode == 2, (proc.returncode, out, err)
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "killed by SIGKILL: out of memory?" in errors[0], err
    log = read_rows(work / "data/.midigen-crashes/ingest.csv")
    assert len(log) == 1 and f": {log[0]['name']}: the worker exporting it" in errors[0], (log, errors)

    again = run_stage(work, "ingest", HANG_S)
    assert again.returncode == 0, again.stdout + again.stderr
    failed = {r["source"]: r["reason"] for r in read_rows(work / "data/raw/failed.csv")}
    assert "killed by SIGKILL" in failed[log[0]["name"]], failed
