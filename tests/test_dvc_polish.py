"""What dvc.yaml declares for DVC's own tools: the model in the model registry (`artifacts:`),
a plot for every curve a model family writes, bar plots whose axis starts at zero."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from conftest import PROJECT_ROOT
from test_interruption import DVC, repo_env, run

from midigen import models
from midigen.models.base import Totals
from midigen.models.musicvae import GROOVE_TERMS

DVC_YAML = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text(encoding="utf-8"))


def plot_columns() -> dict[str, list[str]]:
    out = {}
    for entry in DVC_YAML["plots"]:
        ((name, spec),) = entry.items()
        out[name] = [c for cols in spec["y"].values() for c in ([cols] if isinstance(cols, str) else cols)]
    return out


@pytest.mark.parametrize("kind", models.kinds())
def test_every_curve_column_of_every_family_is_plotted(kind):
    keys = ("loss", "recon", "kl", "accuracy", *GROOVE_TERMS)  # what any family's epoch sums hold
    totals = Totals(sums=dict.fromkeys(keys, 1.0), items=10, tokens=640, step=5)
    params = {"train": {"max_beta": 0.2, "beta_rate": 0.99}}
    row = models.family(kind).epoch_row(totals, dict.fromkeys(keys, 1.0), params)  # one row of its curve
    plotted = {c for cols in plot_columns().values() for c in cols}
    # every measured column (train_* and val_*) has a plot; beta is a schedule
    assert {c for c in row if c.startswith(("train_", "val_"))} <= plotted, set(row) - plotted


def test_bar_plots_start_their_axis_at_zero():
    for entry in DVC_YAML["plots"]:
        ((name, spec),) = entry.items()
        if "bar" in spec.get("template", ""):
            template = json.loads((PROJECT_ROOT / ".dvc/plots" / f"{spec['template']}.json").read_text())
            assert template["encoding"]["x"]["scale"] == {"zero": True}, name


def test_the_model_is_in_dvcs_model_registry(tmp_path):
    from dvc.repo import Repo

    root = tmp_path / "repo"
    root.mkdir()
    env = repo_env(tmp_path / "home")
    shutil.copy(PROJECT_ROOT / "dvc.yaml", root / "dvc.yaml")
    run(["git", "init", "-q"], root, env)
    run([DVC, "init", "-q"], root, env)
    # as `dvc artifacts get` and DVC Studio read it (versions come from git tags: gto)
    with Repo(str(root)) as repo:
        assert repo.artifacts.get_path("midigen-model") == "models/best.pt"
        (artifact,) = repo.artifacts.read()["dvc.yaml"].values()
        assert artifact.type == "model"
