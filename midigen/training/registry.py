"""The trained model in MLflow: a pyfunc model of the training run (midigen.training.pyfunc),
registered as tracking.registered_model_name with the alias tracking.model_alias.

The alias names the best version for the current data: it moves to a new version unless the
version holding it was trained on the same data (dataset_fingerprint) to a lower or equal
best_val_loss. Like all logging, a failure here is one warning and never stops the stage.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

from midigen.training.tracking import CHECKPOINT_TAG, Run


def log_model(run: Run, checkpoint: str | Path, generate_params: dict[str, Any], name: str, alias: str) -> None:
    """Log `checkpoint` as the run's pyfunc model; register it as `name` ("" = do not)."""

    def log():
        from mlflow.entities import LoggedModelStatus

        from midigen.training import pyfunc

        client = run.client
        info = client.get_run(run.run_id)
        tags = {k: v for k, v in info.data.tags.items() if k in ("dataset_fingerprint", CHECKPOINT_TAG)}
        tags["best_val_loss"] = str(info.data.metrics.get("best_val_loss", math.nan))
        logged = client.create_logged_model(
            info.info.experiment_id, name="model", source_run_id=run.run_id, tags=tags, model_type="midigen"
        )
        with tempfile.TemporaryDirectory() as tmp:
            client.log_model_artifacts(logged.model_id, str(pyfunc.save(checkpoint, generate_params, Path(tmp) / "m")))
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        if name:
            register(run, logged.model_id, name, alias, tags)

    with run.as_default():
        run.guarded("logging the model", log)


def register(run: Run, model_id: str, name: str, alias: str, tags: dict[str, str]) -> None:
    from mlflow.exceptions import MlflowException

    client = run.client
    try:
        client.create_registered_model(name)
    except MlflowException:
        pass  # it exists (or a parallel experiment created it just now)
    version = client.create_model_version(
        name, source=f"models:/{model_id}", run_id=run.run_id, tags=tags, model_id=model_id
    )
    moved = ""
    if alias:
        try:
            holder = client.get_model_version_by_alias(name, alias)
        except MlflowException:
            holder = None
        if (
            holder is None
            or holder.tags.get("dataset_fingerprint") != tags.get("dataset_fingerprint")
            or not (float(holder.tags.get("best_val_loss", "nan")) <= float(tags["best_val_loss"]))
        ):
            client.set_registered_model_alias(name, alias, version.version)
            moved = f", now @{alias}"
        else:
            moved = f"; @{alias} stays on version {holder.version} (val loss {holder.tags.get('best_val_loss')})"
    print(f"mlflow: registered model {name!r} version {version.version}{moved}", flush=True)
