"""Determinism: the same tiny pipeline reproduced twice from scratch gives byte-identical data,
identical model weights, samples and evaluation, and training metrics that differ only in timing."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import VENV_BIN
from test_interruption import make_tiny_repo, run

pytestmark = pytest.mark.pipeline

DVC = str(VENV_BIN / "dvc")
BYTE_IDENTICAL = ("data/tokens/tokens.bin", "data/tokens/index.csv", "data/tokens/vocab.json", "data/split.csv")
TIMING_KEYS = {"tokens_per_s", "wall_s"}


def snapshot(root) -> dict:
    snap = {p: (root / p).read_bytes() for p in BYTE_IDENTICAL}
    snap["generated"] = {p.name: p.read_bytes() for p in sorted((root / "outputs/generated").glob("*.txt"))}
    snap["best.pt"] = (root / "models/best.pt").read_bytes()
    snap["weights"] = torch.load(root / "models/best.pt", map_location="cpu", weights_only=True)["model_state"]
    snap["eval"] = json.loads((root / "metrics/eval.json").read_text(encoding="utf-8"))
    snap["train"] = json.loads((root / "metrics/train.json").read_text(encoding="utf-8"))
    snap["curve"] = (root / "metrics/train_curve.csv").read_text(encoding="utf-8")
    return snap


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, chorale_paths):
    root = tmp_path_factory.mktemp("det_repo")
    # 9 files and 2 workers: preprocess goes through the process pool
    env = make_tiny_repo(root, tmp_path_factory.mktemp("home"), chorale_paths, data={"workers": 2})
    run([DVC, "repro"], root, env, timeout=300)
    first = snapshot(root)
    for p in ("data/raw", "data/tokens", "models", "outputs"):
        shutil.rmtree(root / p)
    (root / "data/split.csv").unlink()
    for p in (root / "metrics").iterdir():
        p.unlink()
    run([DVC, "repro", "-f"], root, env, timeout=300)
    return first, snapshot(root)


@pytest.mark.parametrize("path", BYTE_IDENTICAL)
def test_data_outputs_are_byte_identical(two_runs, path):
    first, second = two_runs
    assert first[path] == second[path], path


def test_best_weights_are_identical(two_runs):
    a, b = two_runs[0]["weights"], two_runs[1]["weights"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_best_checkpoint_is_byte_identical(two_runs):
    assert two_runs[0]["best.pt"] == two_runs[1]["best.pt"]


def test_generated_tokens_are_identical(two_runs):
    first, second = two_runs
    assert first["generated"] and first["generated"] == second["generated"]


def test_eval_metrics_are_identical(two_runs):
    assert two_runs[0]["eval"] == two_runs[1]["eval"]


def test_train_metrics_differ_only_in_timing(two_runs):
    first, second = two_runs
    strip = lambda d: {k: v for k, v in d.items() if k not in TIMING_KEYS}  # noqa: E731
    assert TIMING_KEYS <= set(first["train"]), first["train"]
    assert strip(first["train"]) == strip(second["train"])
    assert first["curve"] == second["curve"]
