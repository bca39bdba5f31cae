"""The model registry's alias and how later stages find the training run, on a real MLflow
SQLite store: the alias moves to a version with a lower val loss on the same data, or to any
version trained on other data; a checkpoint's run is found by its sha256 tag, and a checkpoint no
run trained is one line and no logging."""

from __future__ import annotations

import pytest

from midigen.training.registry import register
from midigen.training.tracking import CHECKPOINT_TAG, Run, Store, sha256_file, training_run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """One SQLite store for the module (creating its tables takes seconds): (client, experiment, uri)."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    return client, client.create_experiment("midigen", artifact_location=(folder / "mlartifacts").as_uri()), uri


@pytest.fixture
def store(database, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", database[2])
    monkeypatch.delenv("MIDIGEN_TRACKING_DISABLED", raising=False)
    return database


def new_version(client, experiment, uri, fingerprint: str, loss: float) -> str:
    run_id = client.create_run(experiment).info.run_id
    model = client.create_logged_model(experiment, name="model", source_run_id=run_id)
    tags = {"dataset_fingerprint": fingerprint, "best_val_loss": str(loss)}
    register(Run(client, run_id, Store(uri)), model.model_id, "midigen", "champion", tags)
    return str(client.get_model_version_by_alias("midigen", "champion").version)


def test_the_alias_follows_the_lowest_val_loss_on_the_same_data_and_moves_to_new_data(store, capsys):
    client, experiment, uri = store
    assert new_version(client, experiment, uri, "data-a", 1.0) == "1"
    assert new_version(client, experiment, uri, "data-a", 1.2) == "1"  # worse: the alias stays
    assert "@champion stays on version 1 (val loss 1.0)" in capsys.readouterr().out
    assert new_version(client, experiment, uri, "data-a", 0.9) == "3"
    assert new_version(client, experiment, uri, "data-b", 5.0) == "4"  # other data: a new start
    assert sorted(int(v.version) for v in client.search_model_versions("name = 'midigen'")) == [1, 2, 3, 4]


def test_a_checkpoint_finds_the_run_tagged_with_its_sha256_and_logs_evaluation_metrics(store, tmp_path, capsys):
    client, experiment, _ = store
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"weights")
    run_id = client.create_run(experiment, tags={CHECKPOINT_TAG: sha256_file(ckpt)}).info.run_id
    run = training_run(ckpt, "evaluation metrics")
    assert run.run_id == run_id
    run.log_eval_metrics({"test_nll": 1.5, "hearing": {"voice_count": {"8+": 0.25}, "ok": True}, "note": "text"})
    assert client.get_run(run_id).data.metrics == {"test_nll": 1.5, "hearing.voice_count.8plus": 0.25}

    other = tmp_path / "other.pt"
    other.write_bytes(b"other weights")
    nothing = training_run(other, "evaluation metrics")
    nothing.log_eval_metrics({"test_nll": 2.0})  # logs nothing, says nothing more
    out = capsys.readouterr().out
    assert f"mlflow: no run trained {other} (sha256 {sha256_file(other)[:12]})" in out, out
    assert out.strip().endswith("evaluation metrics not logged"), out
