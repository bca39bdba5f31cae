"""A team's shared stores: a real `mlflow server` (SQLite backend, proxied artifacts on local
disk) receives the run of a tiny `dvc repro`, found again through the MLflow client: training and
evaluation metrics, system metrics, the training pieces as a dataset input, best.pt, the
generated MIDI and the report, and the model, registered with its alias, which a fresh Python
loads with `mlflow.pyfunc.load_model("models:/midigen@champion")` and samples MIDI from; and a
DVC remote (a local folder) lets a fresh clone `dvc pull` everything so `dvc repro` runs nothing.

One pipeline run serves all tests (a full tiny `dvc repro` is the slow part)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import VENV_BIN, stop_process_group, subprocess_env
from test_interruption import DVC, make_tiny_repo, run

from midigen.training.tracking import flatten

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
    env = make_tiny_repo(
        root, base / "home", chorale_paths, corpus=str(base / "corpus"), train={"log_system_metrics": True}
    )
    env["MLFLOW_TRACKING_URI"] = url
    env["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = "0.5"  # a tiny training lasts seconds
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

    assert [a.path for a in client.list_artifacts(r.info.run_id)] == ["best.pt", "generated", "report"]
    local = client.download_artifacts(r.info.run_id, "best.pt", str(tmp_path))
    assert Path(local).read_bytes() == (root / "models/best.pt").read_bytes()
    # uploaded through the server (proxied artifacts), stored in its artifacts destination: the
    # run's best.pt and the pyfunc model's copy of it
    stored = [p.read_bytes() for p in artifacts.rglob("best.pt")]
    assert stored == [(root / "models/best.pt").read_bytes()] * 2, [str(p) for p in artifacts.rglob("best.pt")]


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


def the_run(url: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    (run,) = client.search_runs([client.get_experiment_by_name("midigen").experiment_id])
    return client, run


def test_the_run_holds_evaluation_and_system_metrics_the_generated_midi_and_the_report(
    team_repo, mlflow_server, tmp_path
):
    url, _ = mlflow_server
    root, _, out = team_repo
    client, r = the_run(url)
    assert f"mlflow: evaluation metrics and generated MIDI -> run {r.info.run_id}" in out, out
    evaluation = flatten(json.loads((root / "metrics/eval.json").read_text(encoding="utf-8")))
    numbers = {k: v for k, v in evaluation.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert len(numbers) > 50 and "test_nll" in numbers, sorted(evaluation)
    for key, value in numbers.items():  # every number of eval.json, named by its path
        assert r.data.metrics[key.replace("+", "plus")] == pytest.approx(value, nan_ok=True), key
    assert r.data.metrics["val_loss"] > 0  # training's metrics beside them, in the same run
    assert any(k.startswith("system/cpu_utilization") for k in r.data.metrics), sorted(r.data.metrics)
    generated = sorted(p.name for p in (root / "outputs/generated").glob("*.mid"))
    assert [a.path for a in client.list_artifacts(r.info.run_id, "generated")] == [f"generated/{n}" for n in generated]
    local = client.download_artifacts(r.info.run_id, f"generated/{generated[0]}", str(tmp_path))
    assert Path(local).read_bytes() == (root / "outputs/generated" / generated[0]).read_bytes()
    report = {a.path for a in client.list_artifacts(r.info.run_id, "report")}
    assert "report/index.html" in report, report


def test_the_training_and_validation_pieces_are_dataset_inputs(team_repo, mlflow_server):
    import pandas as pd

    url, _ = mlflow_server
    root, _, _ = team_repo
    _, r = the_run(url)
    split = pd.read_csv(root / "data/split.csv")["split"].value_counts()
    found = {}
    for d in r.inputs.dataset_inputs:
        (context,) = [t.value for t in d.tags if t.key == "mlflow.data.context"]
        found[context] = json.loads(d.dataset.profile)["num_rows"]
    assert found == {"training": split["train"], "validation": split["val"]}, found


def test_the_registered_model_loads_in_a_fresh_python_and_samples_what_midigen_sample_writes(
    team_repo, mlflow_server, tmp_path
):
    url, _ = mlflow_server
    root, env, out = team_repo
    client, r = the_run(url)
    assert "mlflow: registered model 'midigen' version 1, now @champion" in out, out
    version = client.get_model_version_by_alias("midigen", "champion")
    assert version.run_id == r.info.run_id
    # a user's notebook: only MLflow's URI, no midigen on the path (the model carries its code)
    script = (
        "import sys, mlflow.pyfunc, pandas as pd\n"
        "m = mlflow.pyfunc.load_model('models:/midigen@champion')\n"
        "rows = pd.DataFrame([{'num_files': 2, 'temperature': 0.9, 'top_k': 20, 'top_p': 0.9, 'seed': 3}])\n"
        "for row in m.predict(rows).itertuples():\n"
        "    open(f'{sys.argv[1]}/piece_{row.piece}.mid', 'wb').write(row.midi)\n"
    )
    clean = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    flags = ["--num-files", "2", "--temperature", "0.9", "--top-k", "20", "--top-p", "0.9", "--seed", "3"]
    cli = [
        sys.executable,
        "-m",
        "midigen",
        "sample",
        "--checkpoint",
        "models/best.pt",
        *flags,
        "--out",
        str(tmp_path / "cli"),
    ]
    run(cli, root, env)
    import pretty_midi

    for i in range(2):
        midi = (tmp_path / f"piece_{i}.mid").read_bytes()
        assert pretty_midi.PrettyMIDI(str(tmp_path / f"piece_{i}.mid")).instruments, i  # valid MIDI with notes
        assert midi == (tmp_path / "cli" / f"sample_{i:02d}.mid").read_bytes(), i
