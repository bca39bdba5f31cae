"""Benchmark: validation loss after the same wall-clock training budget, seed-style baseline vs ours.

Both sides train on the same token store and the same train/val split (data/tokens, data/split.csv),
one after the other in this process, with torch's default thread count and torch.manual_seed(42).

Seed-style baseline (our faithful rewrite of the reference design's algorithm):
  Embedding(vocab, 256) -> LSTM(256 -> 512, 2 layers, dropout 0.2, batch_first) -> Dropout(0.2)
  -> Linear(512, vocab); AdamW(lr 3e-4, torch's default weight decay 0.01), no LR schedule;
  CrossEntropyLoss over every position; grad-norm clip 1.0. Data: the train stream cut into
  non-overlapping chunks of seq_len 256 (x = stream[i:i+L], y = stream[i+1:i+L+1], i = idx*L),
  DataLoader(batch_size 16, shuffle=True, drop_last=True); validation after every epoch.
Ours: midigen.training.loop.train_model with params.yaml's model/train sections as they are.

Budget: each side trains until its training time (validation excluded, as in train_model) exceeds
--budget seconds, checked after every batch; the interrupted epoch then gets its final validation.
Scoring: every end-of-epoch model of both sides (the final one included) is scored with the same
function, midigen.training.loop.evaluate_loss, at seq_len 256 over the whole val stream; "final" is the last
model, "best" the lowest of those scores. (Ours is scored from its last.pt after every epoch; this
scoring is outside its budget, like its own validation.) Run from anywhere:
  python bench/train.py [--budget 330]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, enter_root, machine_line  # noqa: E402

SEED = 42
EVAL_SEQ_LEN = 256
EVAL_BATCH = 32
TARGET = 1.8


class SeedLSTM(nn.Module):
    """The reference model; forward(x, hidden) -> (logits, hidden) like midigen's LSTMLM."""

    def __init__(
        self, vocab_size: int, emb_dim: int = 256, hidden_dim: int = 512, num_layers: int = 2, dropout: float = 0.2
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_dim)
        self.lstm = nn.LSTM(emb_dim, hidden_dim, num_layers=num_layers, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_dim, vocab_size)

    def forward(self, x: torch.Tensor, hidden=None):
        out, hidden = self.lstm(self.embedding(x), hidden)
        return self.fc(self.dropout(out)), hidden


class ChunkDataset(torch.utils.data.Dataset):
    """Non-overlapping seq_len chunks of one flattened stream, target shifted by one."""

    def __init__(self, stream: np.ndarray, seq_len: int):
        self.data = torch.from_numpy(np.asarray(stream, dtype=np.int64))
        self.seq_len = seq_len

    def __len__(self) -> int:
        return (len(self.data) - 1) // self.seq_len

    def __getitem__(self, idx: int):
        i = idx * self.seq_len
        return self.data[i : i + self.seq_len], self.data[i + 1 : i + self.seq_len + 1]


def run_seed(
    rep,
    train_stream,
    val_stream,
    budget: float,
    device: torch.device,
    ckpt_dir: Path,
    batch_size: int = 16,
    seq_len: int = 256,
    lr: float = 3e-4,
    grad_clip: float = 1.0,
) -> dict:
    from midigen.evaluation.lm_eval import evaluate_loss

    torch.manual_seed(SEED)
    model = SeedLSTM(len(rep.vocab)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    criterion = nn.CrossEntropyLoss()
    loader = torch.utils.data.DataLoader(
        ChunkDataset(train_stream, seq_len), batch_size=batch_size, shuffle=True, drop_last=True
    )
    if len(loader) == 0:
        sys.exit(f"seed-style: the train stream is shorter than one batch of {batch_size} x {seq_len} tokens")
    t0, cpu0 = time.perf_counter(), time.process_time()
    train_time, tokens, batches, epoch = 0.0, 0, 0, 0
    scores: list[float] = []
    out_of_budget = False
    while not out_of_budget:
        epoch += 1
        model.train()
        ep_t0, ep_loss, ep_tokens = time.perf_counter(), 0.0, 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits, _ = model(x)
            loss = criterion(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            batches += 1
            ep_tokens += y.numel()
            ep_loss += loss.item() * y.numel()
            if train_time + (time.perf_counter() - ep_t0) > budget:
                out_of_budget = True
                break
        ep_time = time.perf_counter() - ep_t0
        train_time += ep_time
        tokens += ep_tokens
        val = evaluate_loss(model, val_stream, EVAL_SEQ_LEN, EVAL_BATCH, device)
        if not scores or val < min(scores):
            torch.save(model.state_dict(), ckpt_dir / "seed_best.pt")
        scores.append(val)
        print(
            f"seed-style epoch {epoch}: train {ep_loss / max(1, ep_tokens):.4f}  val {val:.4f}"
            f"  ({ep_tokens / max(ep_time, 1e-9):,.0f} tokens/s)",
            flush=True,
        )
    return {
        "side": "seed-style",
        "epochs": batches / len(loader),
        "tokens": tokens,
        "train_s": train_time,
        "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - cpu0,
        "final": scores[-1],
        "best": min(scores),
        "params": sum(p.numel() for p in model.parameters()),
    }


def run_ours(
    rep, train_stream, val_stream, params: dict, data_fp: str, budget: float, device: torch.device, ckpt_dir: Path
) -> dict:
    import midigen.data.windows as mw
    import midigen.training.loop as mt
    from midigen.evaluation.lm_eval import evaluate_loss
    from midigen.representations import PAD
    from midigen.training.checkpoint import load_checkpoint, model_from_checkpoint

    counts = {"batches": 0, "tokens": 0, "per_epoch": 1}

    class CountingSampler(mw.WindowSampler):
        """train_model's own sampler, counting the batches and tokens it hands out."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            counts["per_epoch"] = self.batches_per_epoch()

        def batch(self):
            x, y = super().batch()
            counts["batches"] += 1
            counts["tokens"] += int((y != PAD).sum())
            return x, y

    scores: list[float] = []
    out_dir = ckpt_dir / "ours"

    def score_epoch(_row: dict) -> None:  # last.pt holds the model of the epoch that just ended
        model = model_from_checkpoint(load_checkpoint(out_dir / "last.pt")).to(device)
        scores.append(evaluate_loss(model, val_stream, EVAL_SEQ_LEN, EVAL_BATCH, device))
        print(f"ours epoch {_row['epoch']}: val {scores[-1]:.4f} at seq_len {EVAL_SEQ_LEN}", flush=True)

    was_deterministic = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    torch.manual_seed(SEED)  # train_model seeds itself too, from train.seed
    mw.WindowSampler, original = CountingSampler, mw.WindowSampler  # the lstm family's batches
    t0, cpu0 = time.perf_counter(), time.process_time()
    try:
        result = mt.train_model(
            rep, train_stream, val_stream, params, out_dir, data_fp, on_epoch=score_epoch, time_budget_s=budget
        )
    finally:
        mw.WindowSampler = original
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(threads)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "side": "ours",
        "epochs": counts["batches"] / counts["per_epoch"],
        "tokens": counts["tokens"],
        "train_s": counts["tokens"] / max(result.tokens_per_s, 1e-9),
        "wall_s": wall,
        "cpu_s": cpu,
        "final": scores[-1],
        "best": min(scores),
        "params": sum(v.numel() for v in model_from_checkpoint(load_checkpoint(out_dir / "last.pt")).parameters()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=330.0, help="training seconds per side (default 330)")
    args = ap.parse_args()
    if args.budget <= 0:
        ap.error("--budget must be > 0")
    enter_root()
    from midigen.data.dataset import load_split_data
    from midigen.params import load_params
    from midigen.training.devices import pick_device

    params = load_params(ROOT / "params.yaml")
    data = load_split_data()
    rep = data.store.representation
    train_stream, val_stream = data.stream("train"), data.stream("val")
    device = pick_device(params["train"]["device"])
    mp, tp = params["model"], params["train"]
    print(
        f"data: {len(train_stream):,} train / {len(val_stream):,} val tokens, vocab {len(rep.vocab)}; "
        f"budget {args.budget:g} s of training per side on {device}"
    )
    print(f"machine: {machine_line()}")
    print(
        f"ours: lstm emb {mp['emb_dim']} hidden {mp['hidden_dim']} x{mp['num_layers']} dropout {mp['dropout']}, "
        f"batch {tp['batch_size']} x seq {tp['seq_len']}, lr {tp['lr']:g} ({tp['schedule']}, "
        f"{tp['epochs']} epochs planned), threads {tp['threads'] or 'default'}"
    )
    print("seed-style: lstm emb 256 hidden 512 x2 dropout 0.2, batch 16 x seq 256, lr 3e-4 constant", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp_name:
        tmp = Path(tmp_name)
        seed = run_seed(rep, train_stream, val_stream, args.budget, device, tmp)
        ours = run_ours(rep, train_stream, val_stream, params, data.fingerprint(), args.budget, device, tmp)

    print(f"machine after: {machine_line()}")
    print(
        "cpu/wall = process CPU seconds per wall second over the side's run (about the thread count when "
        "the cores are free; lower means it was waiting for CPU)"
    )
    print(
        f"val loss = midigen.training.loop.evaluate_loss at seq_len {EVAL_SEQ_LEN} "
        f"over all {len(val_stream):,} val tokens, "
        "after every epoch (final = last model, best = lowest)"
    )
    print(
        f"{'side':<12}{'params':>11}{'epochs':>8}{'tokens seen':>13}{'tokens/s':>10}{'train s':>9}{'wall s':>8}"
        f"{'cpu/wall':>9}{'final val':>11}{'best val':>10}"
    )
    for r in (seed, ours):
        print(
            f"{r['side']:<12}{r['params']:>11,}{r['epochs']:>8.2f}{r['tokens']:>13,}"
            f"{r['tokens'] / max(r['train_s'], 1e-9):>10,.0f}{r['train_s']:>9.1f}{r['wall_s']:>8.1f}"
            f"{r['cpu_s'] / max(r['wall_s'], 1e-9):>9.2f}"
            f"{r['final']:>11.4f}{r['best']:>10.4f}"
        )
    verdict = "" if ours["best"] <= TARGET else "  ABOVE TARGET"
    print(f"val loss: ours {ours['best']:.2f} vs seed-style {seed['best']:.2f} (target <= {TARGET:g}){verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
