"""Interruption: a training killed with SIGKILL resumes from models/last.pt on the next
`dvc repro`; a corrupt last.pt is skipped with a warning; Ctrl-C (SIGINT) and SIGTERM end the
MLflow run as KILLED (or FAILED), never leaving it RUNNING.

`make_tiny_repo` (a throwaway git + DVC repo of the project with a tiny corpus) is shared with
test_determinism.py and test_parallel_experiments.py.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import (
    FOLDER_REPRESENTATION,
    PROJECT_ROOT,
    TINY_MODEL,
    TINY_TRAIN,
    VENV_BIN,
    random_melody,
    subprocess_env,
    write_pretty_midi,
)

DVC = str(VENV_BIN / "dvc")
WATCHED = "data/external/tiny"


def repo_env(home: Path) -> dict[str, str]:
    env = subprocess_env()
    for var in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        env.pop(var, None)
    env["DVC_SITE_CACHE_DIR"] = str(home / "site")
    env["DVC_GLOBAL_CONFIG_DIR"] = str(home / "global")
    env["DVC_SYSTEM_CONFIG_DIR"] = str(home / "system")
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_CONFIG_GLOBAL"] = str(home / "gitconfig")
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run(cmd: list[str], cwd: Path, env: dict, timeout: int = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def write_corpus(folder: Path, chorale_paths: list[Path], n_melodies: int = 4) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for p in chorale_paths:
        shutil.copy(p, folder / p.name)
    for i in range(n_melodies):
        write_pretty_midi(folder / f"melody_{i}.mid", random_melody(500 + i, n=40))


def tiny_params_yaml(
    root: Path, model: dict | None = None, train: dict | None = None, corpus: str = WATCHED, **sections
) -> dict:
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["data"].update(source=corpus, watch=corpus, max_pieces=0, workers=1)
    params["preprocess"]["representation"] = FOLDER_REPRESENTATION
    params["model"].update({**TINY_MODEL, **(model or {})})
    params["train"].update({**TINY_TRAIN, **(train or {})})
    params["generate"].update(num_files=2, max_steps=50)
    params["evaluate"].update(max_test_pieces=4)
    for section, values in sections.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return params


def make_tiny_repo(
    root: Path, home: Path, chorale_paths: list[Path], git: bool = True, corpus: str = WATCHED, **params
) -> dict:
    """A copy of the project (dvc.yaml, stages, midigen, tiny params) with a tiny watched corpus
    at `corpus` (data.source = data.watch); with git=True also `git init` + `dvc init` and one
    commit (a corpus under data/external/ is git-ignored, as in the project)."""
    root.mkdir(parents=True, exist_ok=True)
    env = repo_env(home)
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    for folder in ("stages", "midigen"):
        # dvc.yaml's deps name these files; the code that runs is still the installed package
        shutil.copytree(PROJECT_ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "metrics").mkdir(exist_ok=True)
    tiny_params_yaml(root, corpus=corpus, **params)
    write_corpus(root / corpus, chorale_paths)
    if git:
        run(["git", "init", "-q"], root, env)
        run(["git", "config", "user.name", "midigen tests"], root, env)
        run(["git", "config", "user.email", "tests@example.invalid"], root, env)
        run([DVC, "init", "-q"], root, env)
        run(["git", "add", "-A"], root, env)
        run(["git", "commit", "-q", "-m", "tiny"], root, env)
    return env


def mlflow_statuses(root: Path) -> list[str]:
    with sqlite3.connect(root / "mlflow.db") as db:
        return [r[0] for r in db.execute("select status from runs order by start_time")]


def wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"process ended ({proc.returncode}) before {what}:\n{out}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a process we started and everything it started."""
    try:
        parent = psutil.Process(proc.pid)
        family = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=10)


# an epoch of ~1 s on a busy core: slow enough to be killed mid-run, fast enough for a test
SLOW_MODEL = {"emb_dim": 32, "hidden_dim": 512}
EPOCHS = 6


# -- SIGKILL under dvc repro, then resume -----------------------------------------------------


@pytest.mark.pipeline
def test_a_killed_dvc_repro_resumes_training_from_last_pt(tmp_path, chorale_paths):
    root = tmp_path / "repo"
    env = make_tiny_repo(root, tmp_path / "home", chorale_paths, model=SLOW_MODEL, train={"epochs": EPOCHS})
    last = root / "models" / "last.pt"
    proc = subprocess.Popen(
        [DVC, "repro", "train"], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for(last.exists, 180, proc, "models/last.pt (the first epoch)")
        trainer = [
            p for p in psutil.Process(proc.pid).children(recursive=True) if "stages/train.py" in " ".join(p.cmdline())
        ]
        assert trainer, "no `python stages/train.py` under dvc"
        # dvc first, as the OOM killer or a power cut would: killed after the trainer, dvc may
        # be caught rewriting .dvc/tmp/rwlock for the stage that just died and leave it empty
        proc.kill()
        proc.wait(30)
        for p in trainer:
            p.kill()
        psutil.wait_procs(trainer, timeout=30)
    finally:
        kill_tree(proc)
    first_out = proc.stdout.read()
    assert "Running stage 'train'" in first_out, first_out
    assert not (root / "metrics/train.json").exists(), "killed too late: training had finished"

    again = run([DVC, "repro", "train"], root, env, timeout=300)
    assert "resuming from models/last.pt after epoch" in again, again
    train = json.loads((root / "metrics/train.json").read_text(encoding="utf-8"))
    assert train["epochs"] == EPOCHS, train
    curve = (root / "metrics/train_curve.csv").read_text(encoding="utf-8").splitlines()
    assert curve[0].startswith("epoch,")
    assert [int(r.split(",")[0]) for r in curve[1:]] == list(range(1, EPOCHS + 1)), curve
    statuses = mlflow_statuses(root)
    assert statuses[-1] == "FINISHED", statuses


# -- a corrupt last.pt ------------------------------------------------------------------------


def test_a_corrupt_last_pt_is_skipped_with_a_warning(tmp_path, event_rep, chorale_streams, capsys, torch_one_thread):
    from conftest import tiny_params

    from midigen.training.loop import train_model

    params = tiny_params(epochs=3)
    train, val = chorale_streams
    out = tmp_path / "models"

    def stop_after_first(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(event_rep, train, val, params, out, "fp", on_epoch=stop_after_first)
    good = (out / "last.pt").read_bytes()

    (out / "last.pt").write_bytes(good[: len(good) // 2])
    capsys.readouterr()
    result = train_model(event_rep, train, val, params, out, "fp")
    printed = capsys.readouterr().out
    assert "warning: ignoring unreadable" in printed and "last.pt" in printed, printed
    assert "resuming" not in printed
    assert result.resumed_from_epoch == 0
    assert [r["epoch"] for r in result.history.rows] == [1, 2, 3]

    # control: the intact file would have been resumed
    (out / "last.pt").write_bytes(good)
    (out / "best.pt").unlink()
    result = train_model(event_rep, train, val, params, out, "fp")
    assert result.resumed_from_epoch == 1
    assert [r["epoch"] for r in result.history.rows] == [1, 2, 3]


def test_a_zero_byte_or_garbage_last_pt_is_skipped_too(tmp_path, event_rep, chorale_streams, capsys, torch_one_thread):
    from conftest import tiny_params

    from midigen.training.loop import train_model

    train, val = chorale_streams
    out = tmp_path / "models"
    out.mkdir()
    for junk in (b"", b"not a checkpoint at all" * 10):
        (out / "last.pt").write_bytes(junk)
        result = train_model(event_rep, train, val, tiny_params(epochs=1), out, "fp")
        assert result.resumed_from_epoch == 0
        assert "warning: ignoring unreadable" in capsys.readouterr().out


# -- Ctrl-C and SIGTERM -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, chorale_paths):
    """A work folder with data/tokens and data/split.csv made by the stage scripts (no dvc)."""
    root = tmp_path_factory.mktemp("signals")
    env = make_tiny_repo(
        root, tmp_path_factory.mktemp("home"), chorale_paths, git=False, model=SLOW_MODEL, train={"epochs": 30}
    )
    for stage in ("ingest", "preprocess", "split"):
        run([sys.executable, f"stages/{stage}.py"], root, env)
    return root, env


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_training_ends_the_mlflow_run_killed(tmp_path, prepared, sig):
    src, env = prepared
    root = tmp_path / "work"
    shutil.copytree(src, root, symlinks=True)
    proc = subprocess.Popen(
        [sys.executable, "stages/train.py"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # a shell without job control may start children with SIGINT ignored; a terminal would not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_for((root / "models/last.pt").exists, 120, proc, "the first epoch")
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        kill_tree(proc)
    assert proc.returncode != 0, out
    assert proc.returncode == 130, (proc.returncode, out)
    assert "Traceback" not in out, out
    assert "interrupted" in out, out
    statuses = mlflow_statuses(root)
    assert len(statuses) == 1 and statuses[0] in ("KILLED", "FAILED"), statuses
    assert not (root / "metrics/train.json").exists()
