"""The checkpoints the studio offers: the workspace's models folder, the models of DVC
experiments (from the DVC cache, as `dvc exp show --json` names them) and, when
MLFLOW_TRACKING_URI is set, MLflow registered models (their latest version).

A request names a model by its id only; the paths stay here, on the server.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from midigen.errors import MidigenError

#: DVC's path of the model inside a repository (dvc.yaml's train output)
MODEL_OUT = "models/best.pt"
#: registered MLflow models listed at most
MAX_REGISTERED = 20


@dataclass
class Entry:
    """One listed checkpoint: `id` (what requests name), where it comes from, what it is."""

    id: str
    source: str
    label: str
    path: Path = field(repr=False)
    info: dict[str, Any]
    data: str | None = None

    def public(self) -> dict[str, Any]:
        """What GET /api/models shows (no server path)."""
        return {"id": self.id, "source": self.source, "label": self.label, "data": self.data, **self.info}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "model"


def _entry(id_: str, source: str, label: str, path: Path, data: str | None) -> Entry | None:
    """An entry for a checkpoint file, None (with a warning) when it is no usable checkpoint."""
    from midigen.api import checkpoint_info
    from midigen.training import checkpoint

    try:
        info = checkpoint_info(checkpoint.load(path))
    except MidigenError as exc:
        print(f"warning: studio: skipping {label}: {exc}", file=sys.stderr)
        return None
    return Entry(id_, source, label, path, info, data)


def _data_source(params: dict | None) -> str | None:
    source = ((params or {}).get("data") or {}).get("source")
    return str(source) if source is not None else None


def workspace_models(models_dir: Path, root: Path) -> list[Entry]:
    """Every checkpoint in models_dir (best.pt first; last.pt, the resume state, left out)."""
    if not models_dir.is_dir():
        return []
    params = None
    if (root / "params.yaml").is_file():
        import yaml

        try:
            params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            params = None
    files = sorted(models_dir.glob("*.pt"), key=lambda p: (p.name != "best.pt", p.name))
    out = []
    for path in files:
        if path.name == "last.pt":
            continue
        label = f"{models_dir.name}/{path.name}"  # the folder's own name: no server path leaves here
        entry = _entry(_slug(path.stem), "workspace", label, path, _data_source(params))
        if entry is not None:
            out.append(entry)
    return out


def _dvc_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return None


def dvc_experiment_models(root: Path, timeout_s: float = 120) -> list[Entry]:
    """The models/best.pt of every DVC experiment of the repository at `root`, read from the
    DVC cache (`dvc exp show --json` gives each experiment's output hash); an experiment whose
    model is not in the local cache (not pulled) is left out."""
    if not (root / ".dvc").is_dir():
        return []
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "dvc", "exp", "show", "--json"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, "DVC_NO_ANALYTICS": "1"},
        )
        rows = json.loads(proc.stdout) if proc.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
        print(f"warning: studio: cannot list DVC experiments ({exc})", file=sys.stderr)
        return []
    from dvc.repo import Repo

    cache = Repo(str(root)).cache.local
    out = []
    for commit in rows if isinstance(rows, list) else []:
        for group in commit.get("experiments") or []:
            for rev in group.get("revs") or []:
                data = rev.get("data") or {}
                md5 = ((data.get("outs") or {}).get(MODEL_OUT) or {}).get("hash")
                name = rev.get("name") or str(rev.get("rev", ""))[:7]
                if not md5:
                    continue
                path = Path(cache.oid_to_path(md5))
                if not path.is_file():
                    continue
                params = ((data.get("params") or {}).get("params.yaml") or {}).get("data")
                entry = _entry(f"exp-{_slug(name)}", "dvc experiment", name, path, _data_source(params))
                if entry is not None:
                    out.append(entry)
    return out


def mlflow_models(download_dir: Path) -> list[Entry]:
    """The latest version of every MLflow registered model (MLFLOW_TRACKING_URI must be set),
    downloaded into download_dir; the first .pt file among its artifacts is its checkpoint."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return []
    try:
        from mlflow import MlflowClient
        from mlflow.artifacts import download_artifacts

        client = MlflowClient()
        out = []
        for model in client.search_registered_models(max_results=MAX_REGISTERED):
            versions = client.search_model_versions(f"name = '{model.name}'")
            if not versions:
                continue
            latest = max(versions, key=lambda v: int(v.version))
            target = download_dir / _slug(f"{model.name}-v{latest.version}")
            target.mkdir(parents=True, exist_ok=True)
            local = Path(download_artifacts(artifact_uri=latest.source, dst_path=str(target)))
            found = [local] if local.is_file() else sorted(local.rglob("*.pt"))
            if not found:
                print(f"warning: studio: {model.name} v{latest.version} holds no .pt checkpoint", file=sys.stderr)
                continue
            label = f"{model.name} v{latest.version}"
            entry = _entry(_slug(f"mlflow-{model.name}-v{latest.version}"), "mlflow", label, found[0], None)
            if entry is not None:
                out.append(entry)
        return out
    except Exception as exc:  # an unreachable or broken store must not stop the studio
        print(f"warning: studio: cannot list MLflow registered models ({type(exc).__name__}: {exc})", file=sys.stderr)
        return []


class Catalog:
    """The listed checkpoints by id, and each one's loaded midigen.api.Model (loaded on first use,
    then kept) with the lock that lets one request at a time use it."""

    def __init__(self, entries: list[Entry], device: str = "auto", cleanup: tempfile.TemporaryDirectory | None = None):
        self.entries: dict[str, Entry] = {}
        for entry in entries:
            id_, n = entry.id, 2
            while id_ in self.entries:  # two folders may hold a best.pt of the same name
                id_, n = f"{entry.id}-{n}", n + 1
            entry.id = id_
            self.entries[id_] = entry
        self.device = device
        self._models: dict[str, Any] = {}
        self._locks = {id_: threading.Lock() for id_ in self.entries}
        self._guard = threading.Lock()
        self._cleanup = cleanup
        #: id -> what is running on it now (for the page's progress line)
        self.busy: dict[str, str] = {}

    def lock(self, id_: str) -> threading.Lock:
        return self._locks[id_]

    def model(self, id_: str):
        """The loaded model of an entry (call while holding its lock)."""
        from midigen import api

        with self._guard:
            model = self._models.get(id_)
        if model is None:
            model = api.load(self.entries[id_].path, self.device)
            with self._guard:
                self._models[id_] = model
        return model

    def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup.cleanup()


def find(models_dir: str | Path = "models", device: str = "auto", experiments: bool = True) -> Catalog:
    """The catalog of a workspace: models_dir's checkpoints, its DVC repository's experiments
    (experiments=True) and MLflow's registered models."""
    models_dir = Path(models_dir).resolve()
    root = _dvc_root(models_dir.parent) or models_dir.parent
    entries = workspace_models(models_dir, root)
    if experiments:
        entries += dvc_experiment_models(root)
    downloads = tempfile.TemporaryDirectory(prefix="midigen-studio-mlflow-")
    entries += mlflow_models(Path(downloads.name))
    return Catalog(entries, device, downloads)
