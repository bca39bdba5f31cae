"""A team's shared stores: a real `mlflow server` (SQLite backend, proxied artifacts on local
disk) receives the run of a tiny `dvc repro`, found again through the MLflow client; and a DVC
remote (a local folder) lets a fresh clone `dvc pull` everything so `dvc repro` runs nothing.

One pipeline run serves both tests (a full tiny `dvc repro` is the slow part)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import VENV_BIN, stop_process_group, subprocess_env
from test_interruption import DVC, make_tiny_repo, run

pytestmark = pytest.mark.pipeline

STAGES = ("ingest", "preprocess", "split", "train", "generate", "evaluate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on a free loopback port; stopped (its whole process group) at the end."""
    work = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    artifacts = work / "artifacts"
    log = open(work / "server.log", "w+", encoding="utf-8")  # noqa: SIM115 (closed below)
    cmd = [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    cmd += ["--backend-store-uri", f"sqlite:///{work / 'server.db'}", "--artifacts-destination", str(artifacts)]
    # its own session: the server starts worker processes, and all of them must go at the end
    # no job runner: it starts eight more processes for MLflow's GenAI jobs, which we never use
    env = {**subprocess_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"mlflow server did not come up (exit {proc.poll()}):\n{log.read()[-3000:]}")
            time.sleep(0.25)
        yield url, artifacts
    finally:
        stop_process_group(proc, 20)
        log.close()


@pytest.fixture(scope="module")
def team_repo(tmp_path_factory, chorale_paths, mlflow_server):
    """A tiny project run once with `dvc repro`, logging to the tracking server. Its corpus lives
    outside the repository (as a shared data mount would), so a clone sees it too."""
    url, _ = mlflow_server
    base = tmp_path_factory.mktemp("team")
    root = base / "repo"
    env = make_tiny_repo(root, base / "home", chorale_paths, corpus=str(base / "corpus"))
    env["MLFLOW_TRACKING_URI"] = url
    out = run([DVC, "repro"], root, env, timeout=400)
    return root, env, out


def test_the_tracking_server_holds_the_run_its_metrics_and_the_checkpoint(team_repo, mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    url, artifacts = mlflow_server
    root, _, out = team_repo
    assert f"({url})" in out, out  # the stage said where it logged
    assert not (root / "mlflow.db").exists(), "logged to a local SQLite file instead of the server"

    client = MlflowClient(tracking_uri=url)
    experiment = client.get_experiment_by_name("midigen")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    r = runs[0]
    assert r.info.status == "FINISHED"

    summary = json.loads((root / "metrics/train.json").read_text(encoding="utf-8"))
    assert r.data.metrics["best_val_loss"] == pytest.approx(summary["best_val_loss"])
    history = client.get_metric_history(r.info.run_id, "val_loss")
    assert sorted(m.step for m in history) == list(range(1, summary["epochs"] + 1))
    assert r.data.params["train.epochs"] == str(summary["epochs"])
    assert r.data.tags["device"] == "cpu" and r.data.tags["dataset_fingerprint"]

    assert [a.path for a in client.list_artifacts(r.info.run_id)] == ["best.pt"]
    local = client.download_artifacts(r.info.run_id, "best.pt", str(tmp_path))
    assert Path(local).read_bytes() == (root / "models/best.pt").read_bytes()
    # uploaded through the server (proxied artifacts), stored in its artifacts destination
    assert [p.read_bytes() for p in artifacts.rglob("best.pt")] == [(root / "models/best.pt").read_bytes()]


def test_a_clone_pulls_every_output_from_the_remote_and_has_nothing_to_rerun(team_repo, tmp_path):
    root, env, out = team_repo
    assert all(f"Running stage '{s}'" in out for s in STAGES), out
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-q", "-m", "pipeline run"], root, env)
    remote = tmp_path / "remote"
    run([DVC, "remote", "add", "-d", "team", str(remote)], root, env)
    run(["git", "commit", "-q", "-a", "-m", "team remote"], root, env)
    pushed = run([DVC, "push"], root, env)
    assert "pushed" in pushed and any(remote.rglob("*")), pushed

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(root), str(clone)], tmp_path, env)
    assert not (clone / "models/best.pt").exists()
    run([DVC, "pull"], clone, env)
    for path in ("models/best.pt", "data/tokens/tokens.bin", "data/split.csv", "outputs/generated/sample_00.mid"):
        assert (clone / path).read_bytes() == (root / path).read_bytes(), path
    status = run([DVC, "status"], clone, env)
    assert "Data and pipelines are up to date." in status, status
    again = run([DVC, "repro"], clone, env)
    assert "Running stage" not in again, again
    assert all(f"Stage '{s}' didn't change, skipping" in again for s in STAGES), again
