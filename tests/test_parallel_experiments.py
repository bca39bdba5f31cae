"""Parallel experiments: three queued `dvc exp run`s on two workers all finish, show up in
`dvc exp show` with metrics, and land as three FINISHED MLflow runs in the parent repo's database
(queued experiments run in a temporary copy; DVC_ROOT points back at the real root)."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import VENV_BIN
from test_interruption import make_tiny_repo, run

pytestmark = [
    pytest.mark.pipeline,
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning"),  # inside mlflow
]

DVC = str(VENV_BIN / "dvc")
# none equals the baseline lr (TINY_TRAIN 0.003): that experiment would be up to date, with no run
LRS = ("0.002", "0.004", "0.005")
QUEUE_TIMEOUT_S = 360
#: committed to git: queued experiments run in a temporary clone, which sees only what git or
#: DVC track (see test_a_queued_experiment_sees_a_corpus_under_data_external for the other case)
CORPUS = "corpus/tiny"


@pytest.fixture(scope="module")
def queued(tmp_path_factory, chorale_paths):
    root = tmp_path_factory.mktemp("queue_repo")
    env = make_tiny_repo(root, tmp_path_factory.mktemp("home"), chorale_paths, corpus=CORPUS, generate={"num_files": 1})
    run([DVC, "repro"], root, env, timeout=300)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-q", "-m", "baseline"], root, env)
    baseline_runs = count_runs(root)

    names = {}
    for lr in LRS:
        out = run([DVC, "exp", "run", "--queue", "-S", f"train.lr={lr}"], root, env)
        match = re.search(r"Queued experiment '([^']+)'", out)
        assert match, out
        names[lr] = match.group(1)
    t0 = time.monotonic()
    start_queue(root, env, 2, tmp_path_factory.mktemp("queue_log") / "start.log")
    status = ""
    try:
        while time.monotonic() - t0 < QUEUE_TIMEOUT_S:
            status = run([DVC, "queue", "status"], root, env)
            if not re.search(r"\b(Queued|Running)\b", status):
                break
            time.sleep(3)
        else:
            pytest.fail(f"queue not done after {QUEUE_TIMEOUT_S} s:\n{status}")
    finally:
        subprocess.run([DVC, "queue", "stop"], cwd=root, env=env, capture_output=True, timeout=120)
        stop_stray_workers(root)
    logs = {
        lr: subprocess.run([DVC, "queue", "logs", name], cwd=root, env=env, capture_output=True, text=True).stdout
        for lr, name in names.items()
    }
    show = json.loads(
        subprocess.run(
            [DVC, "exp", "show", "--json"], cwd=root, env=env, capture_output=True, text=True, timeout=120, check=True
        ).stdout
    )
    return {
        "root": root,
        "names": names,
        "status": status,
        "show": show,
        "logs": logs,
        "baseline_runs": baseline_runs,
        "elapsed": time.monotonic() - t0,
    }


def start_queue(root: Path, env: dict, jobs: int, log: Path) -> None:
    """`dvc queue start -j jobs`, its output to `log`, not to a pipe: the workers it daemonizes
    keep the stdout they were given, so a pipe stays open until the last of them exits, and a
    worker whose shutdown message is lost (a race in dvc-task's filesystem broker, seen here once
    in a full run: the monitor logs "shutting down due to empty queue" and the worker polls on;
    treeverse/dvc#10427 describes the like) never does. The queue's end is read from
    `dvc queue status` instead."""
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.run(
            [DVC, "queue", "start", "-j", str(jobs)],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=120,
        )
    assert proc.returncode == 0, log.read_text(encoding="utf-8")


def stop_stray_workers(root: Path, grace_s: float = 15.0) -> None:
    """After `dvc queue stop`: any queue worker of this repo still alive after grace_s (one that
    missed its shutdown, above) is killed, so that no test leaves a process behind."""
    deadline = time.monotonic() + grace_s
    while (pids := queue_workers(root)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def queue_workers(root: Path) -> list[int]:
    """Pids of `dvc exp queue-worker` processes whose working directory is root (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if b"queue-worker" in cmd and cwd == Path(root):
            pids.append(int(entry.name))
    return pids


def count_runs(root) -> int:
    with sqlite3.connect(root / "mlflow.db") as db:
        return db.execute("select count(*) from runs").fetchone()[0]


def test_all_three_experiments_succeed(queued):
    status = queued["status"]
    for name in queued["names"].values():
        line = [ln for ln in status.splitlines() if name in ln]
        assert line and "Success" in line[0], (name, status, queued["logs"])


def test_exp_show_lists_each_experiment_with_its_lr_and_metrics(queued):
    found = {}
    for baseline in queued["show"]:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                found[rev.get("name")] = rev["data"]
    for lr, name in queued["names"].items():
        assert name in found, (name, list(found))
        data = found[name]
        assert data["params"]["params.yaml"]["data"]["train"]["lr"] == float(lr)
        assert data["metrics"]["metrics/train.json"]["data"]["best_val_loss"] > 0
        assert "distribution_score" in data["metrics"]["metrics/eval.json"]["data"]


def test_mlflow_in_the_parent_repo_has_three_finished_tagged_runs(queued):
    root = queued["root"]
    assert count_runs(root) == queued["baseline_runs"] + 3
    with sqlite3.connect(root / "mlflow.db") as db:
        tagged = dict(db.execute("select value, run_uuid from tags where key = 'dvc_exp_name'").fetchall())
        assert set(tagged) == set(queued["names"].values()), tagged
        for lr, name in queued["names"].items():
            run_id = tagged[name]
            (status,) = db.execute("select status from runs where run_uuid = ?", (run_id,)).fetchone()
            assert status == "FINISHED", (name, status)
            (logged_lr,) = db.execute(
                "select value from params where run_uuid = ? and key = 'train.lr'", (run_id,)
            ).fetchone()
            assert logged_lr == lr
            steps = sorted(
                s for (s,) in db.execute("select step from metrics where run_uuid = ? and key = 'val_loss'", (run_id,))
            )
            assert steps == [1, 2], (name, steps)


def test_no_stray_mlflow_store_inside_the_queue_workspaces(queued):
    root = queued["root"]
    stray = [p for p in (root / ".dvc").rglob("mlflow.db")] + [p for p in (root / ".dvc").rglob("mlruns")]
    assert not stray, stray


def run_artifacts(root: Path, run_id: str) -> list[str]:
    """What MLflow lists for the run, read from the repo's own mlflow.db."""
    from mlflow import MlflowClient

    return [a.path for a in MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}").list_artifacts(run_id)]


def test_each_queued_run_keeps_best_pt_in_the_repos_mlartifacts(queued):
    root = queued["root"]
    with sqlite3.connect(root / "mlflow.db") as db:
        tagged = dict(db.execute("select value, run_uuid from tags where key = 'dvc_exp_name'").fetchall())
    for name in queued["names"].values():
        run_id = tagged[name]
        assert run_artifacts(root, run_id) == ["best.pt", "generated", "report"], name
        assert (root / "mlartifacts" / run_id / "artifacts" / "best.pt").is_file(), name


def test_a_temp_or_queued_first_experiment_keeps_best_pt_in_the_repos_mlartifacts(tmp_path, chorale_paths):
    # the first MLflow run of the repo comes from a temporary copy: the experiment it creates must
    # not keep its artifacts in that copy (DVC deletes it), nor must the runs after it
    root = tmp_path / "repo"
    env = make_tiny_repo(root, tmp_path / "home", chorale_paths, corpus=CORPUS)
    run([DVC, "exp", "run", "--temp", "train", "-S", "train.lr=0.002"], root, env, timeout=300)
    run([DVC, "exp", "run", "--queue", "train", "-S", "train.lr=0.004"], root, env)
    run([DVC, "exp", "run", "--run-all"], root, env, timeout=300)
    with sqlite3.connect(root / "mlflow.db") as db:
        runs = db.execute("select run_uuid, status from runs order by start_time").fetchall()
    assert [status for _, status in runs] == ["FINISHED", "FINISHED"], runs
    for run_id, _ in runs:
        assert run_artifacts(root, run_id) == ["best.pt"], run_id
        assert (root / "mlartifacts" / run_id / "artifacts" / "best.pt").is_file(), run_id
    stray = [p for p in (root / ".dvc").rglob("mlruns")]
    assert not stray, stray


def test_the_queue_finishes_within_budget(queued):
    assert queued["elapsed"] < 240, queued["elapsed"]


def test_a_queued_experiment_sees_a_corpus_under_data_external(tmp_path, chorale_paths):
    # a folder under data/external/ is git-ignored: as DVC data (add-data runs dvc add), the
    # temporary clone a queued or --temp experiment runs in checks it out from the cache
    root = tmp_path / "repo"
    env = make_tiny_repo(root, tmp_path / "home", chorale_paths, generate={"num_files": 1})
    run([sys.executable, "-m", "midigen", "add-data", "data/external/tiny"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-q", "-m", "corpus as DVC data"], root, env)
    # --temp runs in the same kind of temporary clone as the queue, synchronously; the data stages
    # are enough to show the corpus is there
    out = run([DVC, "exp", "run", "--temp", "split", "-S", "split.seed=99"], root, env)
    assert "ingest: 9 MIDI files from folder" in out, out
    assert "Running stage 'split'" in out, out
