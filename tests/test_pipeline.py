"""End to end: `dvc repro` of the data stages in a throwaway git repo on a tiny watched folder.

Only the data stages (ingest -> preprocess -> split) are reproduced (`dvc repro split`), so the
test does not depend on the training stages that follow them in dvc.yaml.
"""

from __future__ import annotations

import shutil
import subprocess

import pandas as pd
import pytest
import yaml
from conftest import PROJECT_ROOT, VENV_BIN, random_melody, subprocess_env, write_pretty_midi

pytestmark = pytest.mark.pipeline

TARGET = "split"
WATCHED = "data/external/tiny"


def run(cmd: list[str], cwd, env) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline_repo")
    env = subprocess_env()
    dvc_home = tmp_path_factory.mktemp("dvc_home")
    env["DVC_SITE_CACHE_DIR"] = str(dvc_home / "site")
    env["DVC_GLOBAL_CONFIG_DIR"] = str(dvc_home / "global")
    env["DVC_SYSTEM_CONFIG_DIR"] = str(dvc_home / "system")
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    run(["git", "init", "-q"], root, env)
    run(["git", "config", "user.name", "midigen tests"], root, env)
    run(["git", "config", "user.email", "tests@example.invalid"], root, env)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    shutil.copytree(PROJECT_ROOT / "stages", root / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    # dvc.yaml's deps name midigen/*.py; the code that runs is still the installed package
    shutil.copytree(PROJECT_ROOT / "midigen", root / "midigen", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    params["data"].update(source=WATCHED, max_pieces=0, workers=1)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    for i in range(6):
        write_pretty_midi(root / WATCHED / f"tune_{i}.mid", random_melody(100 + i, n=16))
    run([str(VENV_BIN / "dvc"), "init", "-q"], root, env)
    return root, env


def repro(repo) -> str:
    root, env = repo
    proc = run([str(VENV_BIN / "dvc"), "repro", TARGET], root, env)
    return proc.stdout + proc.stderr


def test_dvc_repro_builds_tokens_and_split_then_skips_then_notices_a_new_file(repo):
    root, _ = repo
    first = repro(repo)
    for stage in ("ingest", "preprocess", "split"):
        assert f"Running stage '{stage}'" in first, first
    for out in ("data/tokens/tokens.bin", "data/tokens/index.csv", "data/split.csv"):
        assert (root / out).is_file(), f"{out} missing after dvc repro:\n{first}"
    index = pd.read_csv(root / "data/tokens/index.csv")
    assert sorted(index["rel_path"]) == [f"tune_{i}.mid" for i in range(6)]
    split = pd.read_csv(root / "data/split.csv")
    assert sorted(split["rel_path"]) == sorted(index["rel_path"])
    assert "train" in set(split["split"]) and set(split["split"]) <= {"train", "val", "test"}
    assert (root / "data/tokens/tokens.bin").stat().st_size == 2 * int(index["length"].sum())

    second = repro(repo)
    assert "Running stage" not in second, second

    write_pretty_midi(root / WATCHED / "late" / "tune_new.MID", random_melody(200, n=16))
    third = repro(repo)
    assert "Running stage 'ingest'" in third, third
    index = pd.read_csv(root / "data/tokens/index.csv")
    assert "late/tune_new.MID" in set(index["rel_path"])
    assert len(index) == 7
