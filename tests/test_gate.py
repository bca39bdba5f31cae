"""The CI metrics gate (.ci/gate.py): fails on a regression beyond tolerance and on a gated
metric that is missing (or null), so renaming a metric cannot switch the gate off; nested
metrics such as the classifier two-sample test's accuracy are gated by their dotted key."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT, subprocess_env

GATE = PROJECT_ROOT / ".ci" / "gate.py"
GOOD = {"test_nll": 1.30, "distribution_score": 0.80, "c2st": {"accuracy": 0.60, "n_per_class": 41}}


def run_gate(tmp_path, baseline: dict, current: dict) -> subprocess.CompletedProcess:
    (tmp_path / "base.json").write_text(json.dumps(baseline), encoding="utf-8")
    (tmp_path / "now.json").write_text(json.dumps(current), encoding="utf-8")
    args = [
        sys.executable,
        str(GATE),
        "--baseline",
        str(tmp_path / "base.json"),
        "--current",
        str(tmp_path / "now.json"),
    ]
    return subprocess.run(args, capture_output=True, text=True, env=subprocess_env(), timeout=60)


def test_the_gate_passes_numbers_within_tolerance(tmp_path):
    proc = run_gate(tmp_path, GOOD, {"test_nll": 1.40, "distribution_score": 0.75, "c2st": {"accuracy": 0.68}})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "metrics gate: passed" in proc.stdout


def test_the_gate_fails_a_regression_beyond_tolerance(tmp_path):
    proc = run_gate(tmp_path, GOOD, {**GOOD, "test_nll": 1.50})
    assert proc.returncode == 1
    assert "FAIL test_nll" in proc.stdout


def test_the_gate_fails_when_the_classifier_tells_generated_pieces_apart_more_easily(tmp_path):
    proc = run_gate(tmp_path, GOOD, {**GOOD, "c2st": {"accuracy": 0.75, "n_per_class": 41}})
    assert proc.returncode == 1
    assert "FAIL c2st.accuracy: committed 0.6000, now 0.7500" in proc.stdout
    assert "ok   test_nll" in proc.stdout


def test_a_null_classifier_accuracy_counts_as_missing(tmp_path):
    proc = run_gate(tmp_path, GOOD, {**GOOD, "c2st": {"accuracy": None, "n_per_class": 1}})
    assert proc.returncode == 1
    assert "FAIL c2st.accuracy: missing from the current metrics" in proc.stdout


@pytest.mark.parametrize("side", ["current", "committed"])
def test_the_gate_fails_when_a_gated_metric_is_missing(tmp_path, side):
    renamed = {"test_nll_nats": 1.30, "distribution_score": 0.80, "c2st": {"accuracy": 0.60}}
    proc = run_gate(tmp_path, GOOD if side == "current" else renamed, renamed if side == "current" else GOOD)
    assert proc.returncode == 1, proc.stdout
    assert f"FAIL test_nll: missing from the {side} metrics" in proc.stdout
