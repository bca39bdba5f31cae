"""MLflow tracking: one run per execution of the train stage.

Default store: SQLite at the repository root (mlflow.db) with artifacts in mlartifacts/, both
git-ignored. Queued DVC experiments run in a temporary copy of the repo; DVC_ROOT points back
at the real root, so every run lands in the same database. MLFLOW_TRACKING_URI overrides all
of this (e.g. a shared tracking server).
"""

from __future__ import annotations

import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

EXPERIMENT = "midigen"


def repo_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=repo_root()
        ).stdout.strip()
    except Exception:
        return "unknown"


class Run:
    """Thin wrapper so the training code does not depend on MLflow's module-level state."""

    def __init__(self, mlflow_module):
        self._mlflow = mlflow_module

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str | Path) -> None:
        self._mlflow.log_artifact(str(path))

    def set_tags(self, tags: dict[str, str]) -> None:
        self._mlflow.set_tags(tags)


class _NoRun(Run):
    """What ranks other than 0 of a distributed run log to: nothing (one MLflow run in all)."""

    def __init__(self):
        super().__init__(None)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, path: str | Path) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass


@contextmanager
def no_run():
    yield _NoRun()


def _ensure_experiment() -> None:
    import mlflow

    if mlflow.get_experiment_by_name(EXPERIMENT) is None and not os.environ.get("MLFLOW_TRACKING_URI"):
        try:
            mlflow.create_experiment(EXPERIMENT, artifact_location=(repo_root() / "mlartifacts").as_uri())
        except Exception:
            # another experiment of a parallel queue created it first: fine if it exists now
            if mlflow.get_experiment_by_name(EXPERIMENT) is None:
                raise
    mlflow.set_experiment(EXPERIMENT)


def _with_retries(fn, attempts: int = 6, delay_s: float = 0.5):
    """Parallel experiments share one SQLite file: creating its tables or the experiment can race.
    SQLite waits for locks itself (MLflow sets busy_timeout); this covers what is left."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts - 1:
                raise
            print(f"mlflow: retrying after {type(exc).__name__} ({attempt + 1}/{attempts - 1})")
            time.sleep(delay_s * (2**attempt))


@contextmanager
def start_run(params: dict[str, Any], tags: dict[str, str]):
    """Open an MLflow run; it ends FINISHED, FAILED, or KILLED (on Ctrl-C), never left running."""
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(tracking_uri())
    _with_retries(_ensure_experiment)
    exp_name = os.environ.get("DVC_EXP_NAME")
    run = _with_retries(lambda: mlflow.start_run(run_name=exp_name or None))
    status = "FAILED"
    try:
        mlflow.log_params({k: str(v)[:500] for k, v in flatten(params).items()})
        mlflow.set_tags({"git_commit": git_commit(), **({"dvc_exp_name": exp_name} if exp_name else {}), **tags})
        yield Run(mlflow)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        mlflow.end_run(status=status)
        print(f"mlflow: run {run.info.run_id} {status.lower()} ({tracking_uri()})")
