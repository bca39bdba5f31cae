"""A checkpoint whose parts do not fit together is refused on load with one line naming the file
and the mismatch (never garbage tokens with exit 0, never a traceback): the stored vocabulary
against the representation and the model, the config against the weights, a changed kind, a
missing representation, NaN weights."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import subprocess_env

from midigen.errors import DataError
from midigen.training.checkpoint import load_checkpoint, load_model, save_checkpoint


def _edit_vocab(c):
    c["vocab"] = c["vocab"][:-1] + ["NOT_A_TOKEN"]


def _shrink_vocab(c):
    c["vocab"] = c["vocab"][:-3]


def _bad_representation(c):
    c["representation"] = {**c["representation"], "name": "no_such_tokens"}


def _wider_model(c):
    c["model"] = {**c["model"], "hidden_dim": c["model"]["hidden_dim"] * 2}


def _unknown_key(c):
    c["model"] = {**c["model"], "attention_heads": 4}


def _changed_kind(c):
    c["model"] = {**c["model"], "kind": "musicvae"}


def _no_representation(c):
    del c["representation"]


def _nan_weights(c):
    key = next(k for k in c["model_state"] if k.endswith("weight"))
    c["model_state"] = {**c["model_state"], key: torch.full_like(c["model_state"][key], float("nan"))}


CASES = {
    "edited vocabulary": (_edit_vocab, "stored vocabulary"),
    "shorter vocabulary": (_shrink_vocab, "stored vocabulary"),
    "unknown representation": (_bad_representation, "representation config cannot be rebuilt"),
    "wider model": (_wider_model, "weights do not fit its model config"),
    "unknown config key": (_unknown_key, "model config does not describe a lstm model"),
    "changed kind": (_changed_kind, "model config does not describe a musicvae model"),
    "no representation": (_no_representation, "missing representation"),
    "nan weights": (_nan_weights, "NaN or infinite"),
}


@pytest.fixture(scope="module")
def good(trained_run):
    out_dir, _, _ = trained_run
    return out_dir / "best.pt"


@pytest.mark.parametrize("case", list(CASES))
def test_a_checkpoint_whose_parts_do_not_fit_is_one_error_naming_the_file_and_the_mismatch(good, tmp_path, case):
    edit, words = CASES[case]
    ckpt = load_checkpoint(good)
    edit(ckpt)
    path = tmp_path / "edited.pt"
    save_checkpoint(path, ckpt)
    with pytest.raises(DataError) as info:
        load_model(path, "cpu")
    message = str(info.value)
    assert str(path) in message and words in message, message
    assert "\n" not in message


def test_the_cli_refuses_an_edited_checkpoint_instead_of_writing_garbage(good, tmp_path):
    ckpt = load_checkpoint(good)
    _edit_vocab(ckpt)
    save_checkpoint(tmp_path / "edited.pt", ckpt)
    cmd = [sys.executable, "-m", "midigen", "sample", "--checkpoint", "edited.pt", "--num-files", "1", "--out", "out"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: edited.pt: its stored vocabulary") and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
