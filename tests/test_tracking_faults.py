"""MLflow store faults around `python stages/train.py`: found before training, in one line naming
the store (tracking.on_error: fail), or trained through without logging (warn); a store that
breaks during training never stops it nor leaves its run RUNNING. And where artifacts go: the
repository's mlartifacts/, never a folder DVC deletes.

Servers are loopback ports nothing listens on; subprocess timeouts only detect hangs."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from conftest import VENV_BIN, stop_process_group, subprocess_env
from test_interruption import SLOW_MODEL, kill_tree, make_tiny_repo, run, wait_for

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")  # inside mlflow

HANG_S = 300  # a stage that takes this long is stuck, not slow


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, chorale_paths):
    """A work folder with data/tokens and data/split.csv made by the stage scripts (no dvc)."""
    root = tmp_path_factory.mktemp("tracking")
    env = make_tiny_repo(root, tmp_path_factory.mktemp("home"), chorale_paths, git=False, train={"epochs": 3})
    for stage in ("ingest", "preprocess", "split"):
        run([sys.executable, f"stages/{stage}.py"], root, env)
    return root, env


@pytest.fixture
def work(tmp_path, prepared):
    """A fresh copy of the prepared folder: (root, env)."""
    src, env = prepared
    root = tmp_path / "work"
    shutil.copytree(src, root, symlinks=True)
    return root, dict(env)


def set_params(root: Path, section: str, **values) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def train(root: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "stages/train.py"], cwd=root, env=env, capture_output=True, text=True, timeout=HANG_S
    )


def dead_port() -> int:
    """A loopback port nothing listens on (bound once by the OS, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def only_line(proc: subprocess.CompletedProcess) -> str:
    """The one line a failed stage prints on stderr (and no traceback anywhere)."""
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def statuses(root: Path) -> list[str]:
    with sqlite3.connect(root / "mlflow.db") as db:
        return [r[0] for r in db.execute("select status from runs order by start_time")]


def client(root: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


@contextmanager
def unwritable(folder: Path):
    """A folder no process may create anything in: read-only permission bits, or for root (whom
    they do not stop) the immutable flag."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("running as root without `chattr +i`: no way to make a folder unwritable")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


# -- an unreachable tracking server -----------------------------------------------------------


def test_an_unreachable_tracking_server_fails_in_one_line_before_training(work):
    root, env = work
    url = f"http://127.0.0.1:{dead_port()}"
    env["MLFLOW_TRACKING_URI"] = url
    proc = train(root, env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = only_line(proc)
    assert url in line and "unreachable" in line and "tracking.on_error" in line, line
    assert not (root / "models").exists(), "trained although the store was known to be down"
    assert not (root / "mlflow.db").exists()


def test_with_on_error_warn_an_unreachable_server_is_reported_and_training_runs_without_logging(work):
    root, env = work
    url = f"http://127.0.0.1:{dead_port()}"
    env["MLFLOW_TRACKING_URI"] = url
    set_params(root, "tracking", on_error="warn")
    proc = train(root, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warnings = [ln for ln in proc.stdout.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and url in warnings[0] and "without MLflow logging" in warnings[0], proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert (root / "metrics/train.json").is_file() and (root / "models/best.pt").is_file()
    assert not (root / "mlflow.db").exists(), "fell back to a local store the user did not ask for"


# -- a corrupt mlflow.db ----------------------------------------------------------------------


def truncated_sqlite(path: Path) -> None:
    """A real SQLite file cut after its first page: the schema it announces is gone."""
    with sqlite3.connect(path) as db:
        for i in range(60):
            db.execute(f"create table table_with_a_long_name_{i:03d}_{'x' * 60} (a integer, b text)")
    db.close()
    with open(path, "r+b") as f:
        f.truncate(4096)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_mlflow_db_fails_in_one_line_naming_the_file(work, damage):
    root, env = work
    db = root / "mlflow.db"
    if damage == "garbage":
        db.write_bytes(b"this was an mlflow database once\n" * 200)
    else:
        truncated_sqlite(db)
    before = db.read_bytes()
    proc = train(root, env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = only_line(proc)
    assert str(db) in line, line
    assert "retrying" not in proc.stdout, proc.stdout
    assert not (root / "models").exists()
    assert db.read_bytes() == before, "the damaged file was changed"


# -- a store that breaks during training ------------------------------------------------------


class Training:
    """`python stages/train.py` in the background, its stdout collected line by line."""

    def __init__(self, root: Path, env: dict, log: Path):
        self._err = open(log, "w", encoding="utf-8")  # noqa: SIM115 (closed in finish)
        self.log = log
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "stages/train.py"], cwd=root, env=env, stdout=subprocess.PIPE, stderr=self._err, text=True
        )
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()

    def wait_for_line(self, text: str) -> None:
        wait_for(lambda: any(text in ln for ln in self.lines), HANG_S, self.proc, repr(text))

    @contextmanager
    def paused(self):
        """Stopped while the test breaks the store, so no epoch slips by in between."""
        self.proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.proc.send_signal(signal.SIGCONT)

    def finish(self) -> str:
        try:
            self.proc.wait(HANG_S)
        finally:
            kill_tree(self.proc)
            self._reader.join(10)
            self._err.close()
        return "".join(self.lines) + self.log.read_text(encoding="utf-8")

    def warnings(self) -> list[str]:
        return [ln for ln in self.lines if ln.startswith("warning:")]

    def epochs(self) -> list[str]:
        return [ln.split(":")[0] for ln in self.lines if ln.startswith("epoch ")]


EPOCHS = 4
#: printed once the run is open and its params logged, before the first epoch's metrics
TRAINING_STARTED = "train: first optimizer step"


def test_a_database_locked_during_training_neither_stops_it_nor_leaves_the_run_running(work, tmp_path):
    root, env = work
    set_params(root, "train", epochs=EPOCHS)
    training = Training(root, env, tmp_path / "stderr.txt")
    try:
        training.wait_for_line(TRAINING_STARTED)
        # another process holds the write lock: MLflow waits its busy timeout, then gives up
        lock = sqlite3.connect(root / "mlflow.db", isolation_level=None)
        try:
            with training.paused():
                lock.execute("BEGIN EXCLUSIVE")
            training.wait_for_line("warning: mlflow")
        finally:
            lock.close()  # released: the run can be ended
    finally:
        out = training.finish()
    assert training.proc.returncode == 0, out
    assert "Traceback" not in out, out
    assert len(training.warnings()) == 1, out
    assert training.epochs() == [f"epoch {i}" for i in range(1, EPOCHS + 1)], out
    assert (root / "metrics/train.json").is_file()
    assert statuses(root) == ["FAILED"], out
    (r,) = client(root).search_runs([client(root).get_experiment_by_name("midigen").experiment_id])
    assert "locked" in r.data.tags["midigen.tracking_error"], r.data.tags


@contextmanager
def mlflow_server(work: Path, port: int):
    """A real `mlflow server` on a loopback port, stopped (its whole process group) at the end."""
    url = f"http://127.0.0.1:{port}"
    cmd = [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    cmd += ["--backend-store-uri", f"sqlite:///{work / 'server.db'}", "--artifacts-destination", str(work / "art")]
    env = {**subprocess_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(work / "server.log", "a", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        wait_for(lambda: healthy(url), HANG_S, proc, f"mlflow server on {url}")
        yield url
    finally:
        stop_process_group(proc, 30)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_a_tracking_server_that_goes_away_during_training_neither_stops_it_nor_leaves_the_run_running(work, tmp_path):
    from mlflow import MlflowClient

    root, env = work
    # epochs of ~1 s: the test pauses the training on seeing the warning, before it ends the run
    set_params(root, "model", **SLOW_MODEL)
    set_params(root, "train", epochs=6)
    port = dead_port()
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    env["MLFLOW_TRACKING_URI"] = url = f"http://127.0.0.1:{port}"
    training = None
    try:
        with mlflow_server(server_dir, port):
            training = Training(root, env, tmp_path / "stderr.txt")
            training.wait_for_line(TRAINING_STARTED)
            training.proc.send_signal(signal.SIGSTOP)  # resumed once the server is down
        training.proc.send_signal(signal.SIGCONT)
        training.wait_for_line("warning: mlflow")
        training.proc.send_signal(signal.SIGSTOP)  # resumed once the server is back
        with mlflow_server(server_dir, port):  # same database: the run can be ended
            training.proc.send_signal(signal.SIGCONT)
            out = training.finish()
            c = MlflowClient(tracking_uri=url)
            (r,) = c.search_runs([c.get_experiment_by_name("midigen").experiment_id])
    finally:
        if training is not None:
            training.proc.send_signal(signal.SIGCONT)
            training.finish()
    assert training.proc.returncode == 0, out
    assert "Traceback" not in out, out
    assert len(training.warnings()) == 1 and "connection refused" in training.warnings()[0], out
    assert training.epochs() == [f"epoch {i}" for i in range(1, 7)], out
    assert (root / "metrics/train.json").is_file()
    assert r.info.status == "FAILED", out
    assert "refused" in r.data.tags["midigen.tracking_error"], r.data.tags


# -- a read-only artifact folder --------------------------------------------------------------


def test_a_read_only_artifact_folder_is_found_before_training(work):
    root, env = work
    artifacts = root / "mlartifacts"
    with unwritable(artifacts):
        proc = train(root, env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = only_line(proc)
    assert str(artifacts) in line and "not writable" in line, line
    assert not (root / "models").exists(), "trained although the checkpoint could not be logged"
    assert "RUNNING" not in statuses(root)


# -- where artifacts go -----------------------------------------------------------------------


def test_the_default_store_keeps_best_pt_in_mlartifacts_at_the_repo_root(work):
    root, env = work
    run([sys.executable, "stages/train.py"], root, env)
    c = client(root)
    exp = c.get_experiment_by_name("midigen")
    assert exp.artifact_location == (root / "mlartifacts").resolve().as_uri()
    (r,) = c.search_runs([exp.experiment_id])
    assert [a.path for a in c.list_artifacts(r.info.run_id)] == ["best.pt"]
    stored = root / "mlartifacts" / r.info.run_id / "artifacts" / "best.pt"
    assert stored.read_bytes() == (root / "models/best.pt").read_bytes()
    assert not (root / "mlruns").exists()


def test_an_experiment_whose_artifacts_went_to_a_temporary_dvc_folder_is_set_aside(work):
    root, env = work
    gone = root / ".dvc" / "tmp" / "exps" / "tmpgone" / "mlruns" / "1"
    old_id = client(root).create_experiment("midigen", artifact_location=gone.as_uri())
    out = run([sys.executable, "stages/train.py"], root, env)
    assert "stale-artifacts" in out, out
    c = client(root)
    exp = c.get_experiment_by_name("midigen")
    assert exp.experiment_id != old_id
    assert exp.artifact_location == (root / "mlartifacts").resolve().as_uri()
    assert c.get_experiment(old_id).name == f"midigen-stale-artifacts-{old_id}"
    (r,) = c.search_runs([exp.experiment_id])
    assert [a.path for a in c.list_artifacts(r.info.run_id)] == ["best.pt"]
    assert (root / "mlartifacts" / r.info.run_id / "artifacts" / "best.pt").is_file()
    assert not (root / ".dvc").exists(), "wrote into the temporary experiment folder again"


def test_a_ctrl_c_inside_a_database_read_still_ends_the_run_killed(tmp_path, monkeypatch):
    """Ctrl-C lands while a read of the MLflow database is under way: the interrupted frames hold
    its cursor, and SQLite's lock with it, until the exception is done with. Ending the run has
    to write before that, so the tracker drops those frames' locals first (without that, this
    test waits out MLflow's 20 s busy timeout and the run stays RUNNING)."""
    from midigen.training import tracking

    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    tracker = tracking.preflight()

    def read_then_interrupt() -> None:
        ten = "WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < 10)"
        rows = f"{ten} SELECT run_uuid FROM runs, n"
        cursor = sqlite3.connect(db).execute(rows)
        cursor.fetchone()  # 9 rows to go: the statement is still stepping, SQLite holds a shared lock for it
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), tracker.start_run({"train": {"lr": 0.1}}, {}) as run:
        read_then_interrupt()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT status FROM runs WHERE run_uuid = ?", (run.run_id,)).fetchone() == ("KILLED",)
