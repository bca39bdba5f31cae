"""Distributed training (train.nproc > 1): the train stage re-runs itself under torchrun with
DistributedDataParallel on gloo; N processes take the same optimizer steps on the same windows
as one, rank 0 alone validates, checkpoints, writes metrics and logs one MLflow run, and a run
resumes from models/last.pt. Also the memory-mapped split views the trainer reads."""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from test_interruption import make_tiny_repo, mlflow_statuses, run

from midigen.data.store import TokenStore, write_store
from midigen.data.windows import PieceStream, WindowSampler, eval_windows, split_tokens, split_view
from midigen.errors import ParamsError
from midigen.evaluation.lm_eval import evaluate_loss
from midigen.params import load_params, validate
from midigen.representations import PAD
from midigen.training.distributed import batch_slice

EPOCHS = 3


# -- sharding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size,world", [(4, 2), (5, 2), (7, 3), (3, 3)])
def test_batch_slices_split_a_global_batch_into_contiguous_shares(batch_size, world):
    parts = [batch_slice(batch_size, r, world) for r in range(world)]
    assert [p.start for p in parts] == [0] + [p.stop for p in parts[:-1]]
    assert parts[-1].stop == batch_size
    sizes = [p.stop - p.start for p in parts]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


@pytest.mark.parametrize("transpose", [0, 4])
@pytest.mark.parametrize("batch_size,world", [(8, 2), (7, 3)])
def test_the_ranks_windows_together_are_exactly_the_single_process_batch(
    chorale_streams, event_rep, transpose, batch_size, world
):
    stream = chorale_streams[0]
    one = WindowSampler(stream, 24, batch_size, seed=5, transpose=transpose, rep=event_rep)
    ranks = [
        WindowSampler(stream, 24, batch_size, seed=5, transpose=transpose, rep=event_rep, shard=(r, world))
        for r in range(world)
    ]
    for _ in range(6):
        x, y = one.batch()
        parts = [s.batch() for s in ranks]
        assert torch.equal(torch.cat([p[0] for p in parts]), x)
        assert torch.equal(torch.cat([p[1] for p in parts]), y)
    # the sampler state saved in last.pt by rank 0 is every rank's state
    assert all(s.get_state() == one.get_state() for s in ranks)


def test_params_refuse_more_processes_than_windows_in_the_batch():
    raw = load_raw_params()
    raw["train"].update(nproc=4, batch_size=2)
    with pytest.raises(ParamsError, match=r"train\.batch_size = 2 .*train\.nproc = 4"):
        validate(raw)


def load_raw_params() -> dict:
    import yaml
    from conftest import PROJECT_ROOT

    return yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))


# -- memory-mapped split views ----------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory, chorale_ids, event_rep) -> TokenStore:
    out = tmp_path_factory.mktemp("store")
    rows = [({"rel_path": f"p{i}.mid", "n_notes": 1, "duration_s": 1.0}, ids) for i, ids in enumerate(chorale_ids)]
    write_store(out, rows, event_rep)
    return TokenStore(out)


def test_a_split_view_reads_the_same_ids_as_the_concatenated_split_without_copying(store):
    # p0, p1 adjacent in the file (one segment), p2 skipped, p3 + p4 another segment
    split = pd.DataFrame(
        {"rel_path": [f"p{i}.mid" for i in range(5)], "split": ["train"] * 2 + ["val"] + ["train"] * 2}
    )
    full = split_tokens(store, split, "train")
    view = split_view(store, split, "train")
    assert isinstance(store.tokens, np.memmap) and view.tokens is store.tokens
    assert len(view.file_start) == 2, "adjacent pieces must merge into one segment"
    assert view.shape == full.shape and len(view) == len(full)
    assert np.array_equal(np.asarray(view), full)
    idx = np.random.default_rng(0).integers(0, len(full), size=(7, 33))
    got = view[idx]
    assert got.dtype == np.int64 and np.array_equal(got, full[idx])
    assert np.array_equal(view[10:500], full[10:500])
    with pytest.raises(IndexError):
        view[np.array([len(full)])]


@pytest.mark.parametrize("seq_len,batch_size", [(32, 3), (50, 8), (7, 1)])
def test_eval_windows_of_a_view_equal_those_of_the_array(store, seq_len, batch_size):
    split = pd.DataFrame({"rel_path": [f"p{i}.mid" for i in range(5)], "split": ["val", "x", "val", "val", "x"]})
    full, view = split_tokens(store, split, "val"), split_view(store, split, "val")
    a = list(eval_windows(full, seq_len, batch_size))
    b = list(eval_windows(view, seq_len, batch_size))
    n_windows = math.ceil((len(full) - 1) / seq_len)
    assert len(a) == len(b) == math.ceil(n_windows / batch_size)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # every real target appears once: the windows cover the stream exactly
    ys = torch.cat([y.reshape(-1) for _, y in a])
    assert int((ys != PAD).sum()) == len(full) - 1


def test_evaluate_loss_on_a_view_equals_the_loss_on_the_array(store, event_rep):
    from midigen.models.lstm import LSTMLM, LSTMConfig

    torch.manual_seed(0)
    model = LSTMLM(LSTMConfig(len(event_rep.vocab), emb_dim=8, hidden_dim=16, num_layers=1, dropout=0.0))
    split = pd.DataFrame({"rel_path": [f"p{i}.mid" for i in range(5)], "split": ["val"] * 5})
    cpu = torch.device("cpu")
    a = evaluate_loss(model, split_tokens(store, split, "val"), 40, 4, cpu)
    b = evaluate_loss(model, split_view(store, split, "val"), 40, 4, cpu)
    assert a == b


def test_piece_stream_skips_empty_pieces():
    tokens = np.arange(20, dtype=np.uint16)
    view = PieceStream(tokens, np.array([0, 5, 5, 12]), np.array([3, 0, 4, 2]))
    assert np.array_equal(np.asarray(view), [0, 1, 2, 5, 6, 7, 8, 12, 13])


# -- the stage under torchrun -----------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, chorale_paths):
    """A work folder with data/tokens and data/split.csv made by the stage scripts (no dvc)."""
    root = tmp_path_factory.mktemp("ddp")
    env = make_tiny_repo(root, tmp_path_factory.mktemp("home"), chorale_paths, git=False, train={"epochs": EPOCHS})
    for stage in ("ingest", "preprocess", "split"):
        run([sys.executable, f"stages/{stage}.py"], root, env)
    return root, env


def curve(root) -> list[dict[str, float]]:
    with open(root / "metrics/train_curve.csv", encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def set_param(root, section: str, **values) -> None:
    import yaml

    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def train_in_process(root, out_dir, on_epoch=None):
    """train_model in this process on the folder's data and params: the same run fingerprint
    as the stage's (same params, data and code), so the stage resumes its last.pt."""
    from midigen import models
    from midigen.data.dataset import load_split_data
    from midigen.training.loop import train_model

    params = load_params(root / "params.yaml")
    data = load_split_data(root / "data/tokens", root / "data/split.csv")
    train, val = models.family(params["model"]["kind"]).data(data)
    rep = data.store.representation
    return train_model(rep, train, val, params, out_dir, data.fingerprint(), on_epoch=on_epoch)


@pytest.mark.pipeline
def test_two_processes_train_like_one_log_one_mlflow_run_and_resume(tmp_path, prepared):
    src, env = prepared
    ddp = tmp_path / "ddp"
    shutil.copytree(src, ddp, symlinks=True)
    set_param(ddp, "train", nproc=2)
    single = train_in_process(ddp, tmp_path / "single")  # the reference: one process, same params

    def stop(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # leaves last.pt of epoch 1, as a killed run would
        train_in_process(ddp, ddp / "models", on_epoch=stop)
    assert not (ddp / "metrics/train.json").exists()
    out = run([sys.executable, "stages/train.py"], ddp, env, timeout=240)

    assert "starting 2 processes with torchrun" in out, out
    assert out.count("resuming from models/last.pt after epoch 1") == 1, out  # rank 0 speaks alone
    assert out.count("mlflow: run ") == 1, out
    assert mlflow_statuses(ddp) == ["FINISHED"]
    summary = json.loads((ddp / "metrics/train.json").read_text(encoding="utf-8"))
    assert summary["epochs"] == EPOCHS

    # Same windows and the same optimizer steps: only the floating-point summation order
    # differs (two half-batch gradients averaged by all-reduce instead of one full batch),
    # which moves the losses by ~1e-6 here. 1e-3 nats is far below what a real fault does:
    # ranks drawing their own random windows moves them by 0.01-0.05, no gradient averaging
    # (each rank its own model) by 0.02-0.07 (both measured on this data).
    one, two = single.history.rows, curve(ddp)
    assert [r["epoch"] for r in two] == list(range(1, EPOCHS + 1))
    for a, b in zip(one, two, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-3), (one, two)
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-3), (one, two)
    assert two[-1]["val_loss"] < two[0]["val_loss"] - 0.3, "training did not converge"

    last = torch.load(ddp / "models/last.pt", map_location="cpu", weights_only=True)
    rngs = last["torch_rng_ranks"]
    assert len(rngs) == 2 and not torch.equal(rngs[0], rngs[1]), "ranks must draw distinct dropout masks"
    w1 = torch.load(single.best_path, map_location="cpu", weights_only=True)["model_state"]
    w2 = torch.load(ddp / "models/best.pt", map_location="cpu", weights_only=True)["model_state"]
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-3


@pytest.mark.pipeline
def test_musicvae_trains_with_two_processes_like_one_in_the_same_loop(tmp_path, prepared):
    """The one training loop gives every family DDP: MusicVAE on chorale melodies, nproc 2."""
    src, env = prepared
    vae = tmp_path / "vae"
    shutil.copytree(src, vae, symlinks=True)
    set_param(vae, "preprocess", representation="melody", bars=2)
    model = {"kind": "musicvae", "emb_dim": 16, "num_layers": 1, "dropout": 0.0, "z_dim": 16}
    set_param(vae, "model", **model, enc_hidden=32, conductor_hidden=32, dec_hidden=32)
    set_param(vae, "train", nproc=2, epochs=2, batch_size=8, warmup_steps=2)
    for stage in ("preprocess", "split"):
        run([sys.executable, f"stages/{stage}.py"], vae, env)
    single = train_in_process(vae, tmp_path / "single")
    out = run([sys.executable, "stages/train.py"], vae, env, timeout=240)
    assert "starting 2 processes with torchrun" in out, out
    assert out.count("mlflow: run ") == 1, out
    one, two = single.history.rows, curve(vae)
    assert [r["epoch"] for r in two] == [1, 2]
    # The same windows and optimizer steps; unlike the LSTM's, the losses are not equal to 1e-3:
    # each rank draws the latent noise eps for its half of the batch from its own generator (as
    # it draws its own dropout masks), so z differs from the single process's. Measured: 0.5%.
    for a, b in zip(one, two, strict=True):
        assert b["beta"] == a["beta"], (one, two)  # the same number of steps
        for key in ("train_loss", "val_loss", "val_recon"):
            assert b[key] == pytest.approx(a[key], rel=0.02), (key, one, two)
    assert two[1]["val_loss"] < two[0]["val_loss"] - 0.3, "training did not converge"
