"""Params are validated before any work, through the real stage scripts: a bad params.yaml gives
exit code 2, one stderr line naming the key, the value and what is allowed, no traceback, and
no outputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT, run_stage, subprocess_env

DEFAULTS = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))

# (stage, dotted key, bad value, substrings the one error line must contain)
CASES = [
    ("train", "train.lrr", 0.01, ["train.lrr", "unknown key", "known:", "lr"]),
    ("train", "train.lr", 0, ["train.lr", "0", "> 0"]),
    ("train", "train.epochs", "ten", ["train.epochs", "'ten'", "an integer"]),
    ("train", "train.batch_size", 3.5, ["train.batch_size", "3.5", "an integer"]),
    ("train", "model.kind", "gpt", ["model.kind", "'gpt'", "one of 'lstm'"]),
    ("train", "train.device", "tpu", ["train.device", "'tpu'", "one of"]),
    ("generate", "generate.top_p", 1.5, ["generate.top_p", "1.5", "<= 1"]),
    ("generate", "generate.temperature", "hot", ["generate.temperature", "'hot'", "a number"]),
    ("split", "split.val_ratio+test_ratio", (0.6, 0.5), ["split.val_ratio", "split.test_ratio", "1.1", "< 1"]),
    ("split", "split.seed", -1, ["split.seed", "-1", ">= 0"]),
    ("preprocess", "preprocess.max_shift_steps", 0, ["preprocess.max_shift_steps", "0", ">= 1"]),
    ("preprocess", "preprocess.time_step", "fast", ["preprocess.time_step", "'fast'", "a number"]),
    ("preprocess", "preprocess.pitch_min+pitch_max", (100, 50), ["preprocess.pitch_min", "100", "50"]),
    ("preprocess", "preprocess.drums", True, ["preprocess.drums", "True", "'drop'"]),
    ("ingest", "data.max_pieces", -5, ["data.max_pieces", "-5", ">= 0"]),
    ("ingest", "data.surce", "x", ["data.surce", "unknown key", "source"]),
    ("evaluate", "evaluate.ngram", 0, ["evaluate.ngram", "0", ">= 1"]),
    ("evaluate", "train.seq_len", 1, ["train.seq_len", "1", ">= 2"]),
    ("train", "section trian", {"epochs": 1}, ["trian", "unknown section"]),
    ("train", "train.lr", float("nan"), ["train.lr", "nan"]),
]


def bad_params(key: str, value) -> dict:
    params = yaml.safe_load(yaml.safe_dump(DEFAULTS))
    if key.startswith("section "):
        params[key.split()[1]] = value
    elif key == "split.val_ratio+test_ratio":
        params["split"]["val_ratio"], params["split"]["test_ratio"] = value
    elif key == "preprocess.pitch_min+pitch_max":
        params["preprocess"]["pitch_min"], params["preprocess"]["pitch_max"] = value
    else:
        section, name = key.split(".")
        params[section][name] = value
    return params


@pytest.mark.parametrize(("stage", "key", "value", "expected"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_a_bad_param_stops_the_stage_before_any_work(tmp_path: Path, stage, key, value, expected):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad_params(key, value), sort_keys=False), encoding="utf-8")
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run_stage(tmp_path, stage, 60)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines
    for word in expected:
        assert word in lines[0], (word, lines[0])
    assert proc.stdout == "", proc.stdout
    after = sorted(p.name for p in tmp_path.iterdir())
    assert after == before, f"{stage} wrote {set(after) - set(before)} despite bad params"


def test_a_params_file_that_is_not_yaml_is_one_error_line(tmp_path):
    (tmp_path / "params.yaml").write_text("train: [unclosed\n  lr: 1\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "stages" / "train.py")],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "not valid YAML" in lines[0], proc.stderr


def test_a_missing_params_file_is_one_error_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "stages" / "split.py")],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.strip()] == [
        "error: params.yaml: not found (run from the project root)"
    ]
