"""The GPU path without a GPU: train.compile and the device plumbing run the same code on the
CPU device, and a compiled run writes the same plain checkpoints as an eager one."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_params

from midigen.errors import ParamsError
from midigen.training.checkpoint import load_checkpoint, model_from_checkpoint
from midigen.training.devices import autocast, maybe_compile, pick_device
from midigen.training.loop import train_model

CPU = torch.device("cpu")


def test_compile_auto_stays_off_on_cpu_and_always_compiles():
    net = torch.nn.Linear(2, 2)
    assert maybe_compile(net, "auto", CPU) is net
    assert maybe_compile(net, "never", CPU) is net
    compiled = maybe_compile(net, "always", CPU)
    assert compiled is not net and compiled._orig_mod is net


def test_a_compiled_run_on_cpu_trains_like_an_eager_one_and_saves_a_plain_checkpoint(
    tmp_path, chorale_streams, event_rep, torch_one_thread
):
    train, val = chorale_streams
    eager = train_model(event_rep, train, val, tiny_params(epochs=1), tmp_path / "eager", "fp")
    compiled = train_model(event_rep, train, val, tiny_params(epochs=1, compile="always"), tmp_path / "comp", "fp")
    for a, b in zip(eager.history.rows, compiled.history.rows, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-4)
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-4)
    ckpt = load_checkpoint(compiled.best_path)
    # the weights of the model itself, not of torch.compile's wrapper ("_orig_mod." keys)
    assert ckpt["model_state"].keys() == load_checkpoint(eager.best_path)["model_state"].keys()
    model = model_from_checkpoint(ckpt)
    logits, _ = model(torch.tensor([[1, 5, 9]]))
    assert logits.shape == (1, 3, len(event_rep.vocab))


def test_device_plumbing_on_cpu():
    assert pick_device("cpu") == CPU
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ParamsError, match="train.device = 'cuda'"):
            pick_device("cuda")
    with autocast(CPU):  # bf16 autocast is for CUDA: on CPU matmuls stay fp32 (exact, faster there)
        out = torch.nn.Linear(4, 4)(torch.ones(1, 4))
    assert out.dtype == torch.float32
