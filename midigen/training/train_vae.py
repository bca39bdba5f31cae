"""Training loop for MusicVAE on fixed-length grid windows: the negative ELBO with annealed beta
and free bits, AdamW with warm-up + cosine LR, clipping, best/last checkpoints, resumable and
deterministic on CPU like the next-token trainer (midigen.training.loop), whose helpers it shares.

Per-epoch numbers are per step of the grid (nats/step) so their curves sit beside the event
model's: loss = (recon + beta * max(KL - free_bits, 0)) / steps, perplexity = exp(recon / steps).
The best checkpoint is the one with the lowest validation loss at the final beta (max_beta), so
an epoch early in the beta warm-up cannot win by paying less for its KL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from midigen.errors import DataError, ParamsError
from midigen.models import build_model, save_checkpoint
from midigen.models.musicvae import MusicVAE, beta_schedule
from midigen.parallel import progress
from midigen.representations.grid import NOTE_ON_BASE, GridRepresentation, MelodyGrid
from midigen.training.loop import (
    History,
    TrainResult,
    _try_resume,
    autocast,
    checkpoint,
    cpu_weights,
    fingerprint,
    lr_at,
    perplexity,
    pick_device,
    resume_state,
    seed_everything,
)


class WindowBatches:
    """Random batches of whole windows (with replacement), reproducible from a seed.

    With `transpose` > 0 (melody only), each window's notes move by a random number of semitones
    in [-transpose, transpose], limited to what keeps that window inside MIDI's 0..127.
    """

    def __init__(self, windows: np.ndarray, batch_size: int, seed: int, transpose: int = 0, rep=None):
        if windows.ndim != 2 or windows.shape[0] == 0:
            raise DataError("the training split has no windows")
        if transpose and not isinstance(rep, MelodyGrid):
            raise ParamsError("train.transpose > 0 applies to melodies only (set it to 0 for drums)")
        self.windows = windows
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.transpose = transpose

    def batches_per_epoch(self) -> int:
        return max(1, self.windows.shape[0] // self.batch_size)

    def get_state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def batch(self) -> torch.Tensor:
        idx = self.rng.integers(0, self.windows.shape[0], size=self.batch_size)
        win = np.asarray(self.windows[idx], dtype=np.int64)
        if self.transpose:
            win = self._transpose(win)
        return torch.from_numpy(win)

    def _transpose(self, win: np.ndarray) -> np.ndarray:
        note = win >= NOTE_ON_BASE
        pitch = win - NOTE_ON_BASE
        lo = np.where(note, pitch, 10**6).min(axis=1)
        hi = np.where(note, pitch, -(10**6)).max(axis=1)
        down = np.minimum(self.transpose, np.maximum(lo, 0))
        up = np.minimum(self.transpose, np.maximum(127 - hi, 0))
        shift = np.floor(self.rng.random(win.shape[0]) * (up + down + 1)).astype(np.int64) - down
        shift = np.where(note.any(axis=1), shift, 0)
        return np.where(note, win + shift[:, None], win)


@torch.no_grad()
def evaluate_vae(
    model: MusicVAE,
    windows: np.ndarray,
    batch_size: int,
    device: torch.device,
    beta: float,
    free_bits: float,
    seed: int = 0,
    free_running: bool = False,
) -> dict[str, float]:
    """Means per window over `windows` (n, T): loss, recon, kl, elbo (recon + kl, i.e. beta 1) in
    nats; accuracy = teacher-forced share of steps whose argmax is right; with free_running also
    free_accuracy = the same for reconstructions decoded greedily from mu. z is sampled from a
    generator seeded with `seed`, so repeated evaluations of one model agree."""
    model.eval()
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    totals = {"loss": 0.0, "recon": 0.0, "kl": 0.0, "accuracy": 0.0, "free_accuracy": 0.0}
    n = 0
    for i in range(0, windows.shape[0], batch_size):
        x = torch.as_tensor(np.asarray(windows[i : i + batch_size], dtype=np.int64), device=device)
        with autocast(device):
            out = model.loss(x, beta, free_bits, generator=gen)
        b = x.shape[0]
        for key in ("loss", "recon", "kl", "accuracy"):
            totals[key] += float(out[key]) * b
        if free_running:
            totals["free_accuracy"] += float((model.reconstruct(x) == x).float().mean()) * b
        n += b
    if n == 0:
        raise DataError("no windows to evaluate")
    result = {k: v / n for k, v in totals.items()}
    result["elbo"] = result["recon"] + result["kl"]
    if not free_running:
        del result["free_accuracy"]
    return result


def majority_accuracy(windows: np.ndarray) -> float:
    """Share of steps equal to the most common id: what 'always predict one token' scores."""
    counts = np.bincount(np.asarray(windows, dtype=np.int64).reshape(-1))
    return float(counts.max() / counts.sum()) if counts.size else 0.0


def train_vae(
    rep: GridRepresentation,
    train_windows: np.ndarray,
    val_windows: np.ndarray,
    params: dict[str, Any],
    out_dir: Path,
    data_fingerprint: str,
    on_epoch: Callable[[dict], None] | None = None,
    time_budget_s: float | None = None,
) -> TrainResult:
    """Train MusicVAE on (n, T) windows; write out_dir/best.pt and out_dir/last.pt."""
    tp, mp = params["train"], params["model"]
    seed_everything(tp["seed"])
    if tp["threads"]:
        torch.set_num_threads(tp["threads"])
    device = pick_device(tp["device"])
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    run_fp = fingerprint({"train": tp, "model": mp, "data": data_fingerprint, "rep": rep.config()})
    steps_per_window = rep.seq_len

    model = build_model(mp, len(rep.vocab), rep).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tp["lr"], weight_decay=tp["weight_decay"])
    sampler = WindowBatches(train_windows, tp["batch_size"], tp["seed"], tp["transpose"], rep)
    steps_per_epoch = sampler.batches_per_epoch()
    total_steps = steps_per_epoch * tp["epochs"]
    warmup = min(tp["warmup_steps"], total_steps // 2)
    max_beta, beta_rate, free_bits = tp["max_beta"], tp["beta_rate"], tp["free_bits"]

    history = History()
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    best_state: dict[str, torch.Tensor] = {}
    start_epoch = _try_resume(last_path, run_fp, model, optimizer, sampler, history, tp["epochs"], best_state)
    best_val = history.best()["val_loss"] if start_epoch else float("inf")

    def weights() -> dict[str, torch.Tensor]:
        return cpu_weights(model)

    def payload(epoch: int, state: dict[str, torch.Tensor], resumable: bool) -> dict:
        loss = {"loss": {"max_beta": max_beta, "beta_rate": beta_rate, "free_bits": free_bits}}
        resume = resume_state(best_state, optimizer, sampler) if resumable else None
        return checkpoint(model, "musicvae", rep, epoch, history, run_fp, data_fingerprint, state, loss, resume)

    t0 = time.perf_counter()
    trained_steps, train_time = 0, 0.0
    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch + 1, tp["epochs"] + 1):
        model.train()
        bar = progress(range(steps_per_epoch), desc=f"epoch {epoch}/{tp['epochs']}", unit="batch")
        sums = {"loss": 0.0, "recon": 0.0, "kl": 0.0, "accuracy": 0.0}
        n_win, ep_t0 = 0, time.perf_counter()
        beta = beta_schedule(step, max_beta, beta_rate)
        lr = tp["lr"]
        for _ in bar:
            lr = lr_at(step, total_steps, tp["lr"], warmup, tp["schedule"])
            for g in optimizer.param_groups:
                g["lr"] = lr
            beta = beta_schedule(step, max_beta, beta_rate)
            x = sampler.batch().to(device)
            with autocast(device):
                out = model.loss(x, beta, free_bits)
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            nn.utils.clip_grad_norm_(model.parameters(), tp["grad_clip"])
            optimizer.step()
            step += 1
            b = x.shape[0]
            for key in sums:
                sums[key] += float(out[key].detach()) * b
            n_win += b
            elapsed = time.perf_counter() - ep_t0
            bar.set_postfix(
                loss=f"{sums['loss'] / n_win / steps_per_window:.3f}",
                acc=f"{sums['accuracy'] / n_win:.3f}",
                kl=f"{sums['kl'] / n_win:.1f}",
                beta=f"{beta:.3f}",
            )
            if time_budget_s is not None and train_time + elapsed > time_budget_s:
                break
        bar.close()
        ep_time = time.perf_counter() - ep_t0
        train_time += ep_time
        trained_steps += n_win * steps_per_window
        train = {k: v / max(1, n_win) for k, v in sums.items()}
        val = evaluate_vae(model, val_windows, tp["batch_size"] * 2, device, max_beta, free_bits, seed=tp["seed"])
        row = {
            "epoch": epoch,
            "train_loss": round(train["loss"] / steps_per_window, 5),
            "val_loss": round(val["loss"] / steps_per_window, 5),
            "train_perplexity": round(perplexity(train["recon"] / steps_per_window), 4),
            "val_perplexity": round(perplexity(val["recon"] / steps_per_window), 4),
            "train_recon": round(train["recon"], 4),
            "val_recon": round(val["recon"], 4),
            "train_kl": round(train["kl"], 4),
            "val_kl": round(val["kl"], 4),
            "beta": round(beta, 6),
            "train_accuracy": round(train["accuracy"], 5),
            "val_accuracy": round(val["accuracy"], 5),
            "tokens_per_s": round(n_win * steps_per_window / max(ep_time, 1e-9), 1),
            "lr": lr,
        }
        history.rows.append(row)
        improved = row["val_loss"] < best_val
        if improved:
            best_val = row["val_loss"]
            best_state = weights()
            save_checkpoint(best_path, payload(epoch, best_state, resumable=False))
        save_checkpoint(last_path, payload(epoch, weights(), resumable=True))
        print(
            f"epoch {epoch}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f}  "
            f"val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f} KL {row['val_kl']:.1f} "
            f"(beta {beta:.3f}){'  *best' if improved else ''}"
        )
        if on_epoch:
            on_epoch(row)
        if time_budget_s is not None and train_time > time_budget_s:
            break
    if not best_path.exists():  # resumed, and no epoch after the resume beat the earlier best
        save_checkpoint(best_path, payload(history.best()["epoch"], best_state, resumable=False))
    return TrainResult(
        history=history,
        best_path=best_path,
        tokens_per_s=trained_steps / max(train_time, 1e-9),
        wall_s=time.perf_counter() - t0,
        device=str(device),
        resumed_from_epoch=start_epoch,
    )
