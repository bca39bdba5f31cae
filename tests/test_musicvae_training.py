"""MusicVAE learns: in a short run the reconstruction accuracy on training windows rises far
above what always predicting the most common step scores, on GMD-like drums and on real folk
melodies from the music21 corpus (Ryan's Mammoth Collection)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_TRAIN
from drum_corpus import write_gmd_like

from midigen.data.ingest import export_music21_file, music21_files
from midigen.data.preprocess import preprocess
from midigen.evaluation.grid_metrics import majority_accuracy
from midigen.models.musicvae import evaluate_vae
from midigen.representations.grid import DrumGrid, MelodyGrid
from midigen.training.loop import train_model as train_vae

VAE = {
    "kind": "musicvae",
    "emb_dim": 32,
    "hidden_dim": 0,
    "num_layers": 1,
    "enc_layers": 0,
    "dec_layers": 0,
    "dropout": 0.0,
    "decoder": "hierarchical",
    "z_dim": 32,
    "enc_hidden": 64,
    "conductor_hidden": 64,
    "dec_hidden": 64,
}
GRID = {"steps_per_quarter": 4, "hop_bars": 1}
LIMITS = {
    "max_file_mb": 10,
    "max_notes": 200000,
    "max_duration_s": 3600,
    "timeout_s": 30,
    "drums": "drop",
    "time_step": 0.05,
    "max_shift_steps": 100,
    "velocity_bins": 0,
    "pitch_min": 21,
    "pitch_max": 108,
}


def vae_params(epochs: int, **model) -> dict:
    train = {**TINY_TRAIN, "epochs": epochs, "batch_size": 16, "warmup_steps": 10}
    train.update(max_beta=0.2, beta_rate=0.99, free_bits=48.0, input_transform="none")
    return {"model": {**VAE, **model}, "train": train}


def store_windows(files: list[Path], root: Path, representation: str, bars: int, out: Path) -> np.ndarray:
    manifest = [{"rel_path": str(p.relative_to(root)), "path": str(p)} for p in files]
    params = {**LIMITS, **GRID, "representation": representation, "bars": bars}
    preprocess(manifest, params, out, workers=1)
    from midigen.data.store import TokenStore

    store = TokenStore(out)
    return np.asarray(store.tokens, dtype=np.int64).reshape(-1, store.representation.seq_len)


@pytest.fixture(scope="module")
def folk_melodies(tmp_path_factory) -> tuple[Path, list[Path]]:
    """Ryan's Mammoth Collection tunes exported to MIDI as the ingest stage does (real folk tunes,
    mostly 2/4 and 2/2)."""
    out = tmp_path_factory.mktemp("folk")
    files = []
    for src in music21_files("ryans")[:20]:
        for rel, reason in export_music21_file((str(src), str(out), "ryans")):
            if reason is None:
                files.append(out / rel)
    return out, files


def per_step_majority(windows: np.ndarray) -> float:
    """Accuracy of predicting, at each step position, the id most common there: a baseline that
    knows where beats fall (stronger than one global most-common id on periodic grooves)."""
    hits = sum(np.bincount(windows[:, t]).max() for t in range(windows.shape[1]))
    return float(hits / windows.size)


def _train(windows: np.ndarray, rep, tmp_path: Path, epochs: int):
    torch.manual_seed(0)
    result = train_vae(rep, windows, windows[: max(8, len(windows) // 10)], vae_params(epochs), tmp_path, "test")
    from midigen.training.checkpoint import load_checkpoint, model_from_checkpoint

    return model_from_checkpoint(load_checkpoint(result.best_path))


@torch.no_grad()
def z_matters(model, windows: np.ndarray) -> tuple[float, float]:
    """Greedy reconstruction accuracy decoding from each window's own mu, and from the mu of a
    window half the set away (another piece: windows are stored piece by piece): if the decoder
    ignored z (posterior collapse) the two would be equal."""
    x = torch.as_tensor(windows)
    mu, _ = model.encode(x)
    own = float((model.decode(mu, 0.0) == x).float().mean())
    other = float((model.decode(mu.roll(len(windows) // 2, dims=0), 0.0) == x).float().mean())
    return own, other


def test_drum_vae_reconstructs_far_better_than_the_most_common_step(tmp_path, torch_one_thread):
    root = tmp_path / "gmd"
    write_gmd_like(root, n_files=12, seed=5, bars=12)
    windows = store_windows(sorted(root.rglob("*.mid")), root, "drums", 4, tmp_path / "tokens")
    baseline, per_step = majority_accuracy(windows), per_step_majority(windows)
    model = _train(windows, DrumGrid(), tmp_path, epochs=80)
    stats = evaluate_vae(model, windows, 64, torch.device("cpu"), 0.2, 48.0, free_running=True)
    own, other = z_matters(model, windows)
    print(
        f"drums: {len(windows)} windows, majority {baseline:.3f}, per-step majority {per_step:.3f}, "
        f"teacher-forced {stats['accuracy']:.3f}, free {stats['free_accuracy']:.3f}, other window's z {other:.3f}"
    )
    assert stats["accuracy"] > baseline + 0.3
    assert stats["accuracy"] > per_step + 0.1
    assert stats["free_accuracy"] > baseline + 0.1  # free-running errors compound: a lower bar
    assert own > other + 0.05  # the code of the window itself helps: z is used


def test_melody_vae_on_real_folk_tunes_beats_the_most_common_step(folk_melodies, tmp_path, torch_one_thread):
    root, files = folk_melodies
    windows = store_windows(files, root, "melody", 2, tmp_path / "tokens")
    assert len(windows) > 50  # 2/4 and 2/2 tunes count: without them little would be left
    baseline, per_step = majority_accuracy(windows), per_step_majority(windows)
    model = _train(windows, MelodyGrid(bars=2), tmp_path, epochs=30)
    stats = evaluate_vae(model, windows, 64, torch.device("cpu"), 0.2, 48.0, free_running=True)
    own, other = z_matters(model, windows)
    print(
        f"melody: {len(windows)} windows, majority {baseline:.3f}, per-step majority {per_step:.3f}, "
        f"teacher-forced {stats['accuracy']:.3f}, free {stats['free_accuracy']:.3f}, other window's z {other:.3f}"
    )
    assert stats["accuracy"] > baseline + 0.15
    assert stats["accuracy"] > per_step + 0.1
    assert (1 - stats["accuracy"]) < 0.67 * (1 - baseline)  # a third of the baseline's errors gone
    assert own > other + 0.05
