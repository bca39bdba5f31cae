"""Training loop for the next-token models: AdamW, warm-up + cosine LR, clipping, best/last
checkpoints, resumable, deterministic on CPU; DistributedDataParallel when started by torchrun
(midigen.training.distributed), torch.compile and bf16 autocast on CUDA."""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from midigen.data.windows import WindowSampler, eval_windows
from midigen.models import build_model, load_checkpoint, save_checkpoint
from midigen.parallel import progress
from midigen.representations import PAD, Representation
from midigen.training import distributed


def pick_device(name: str) -> torch.device:
    from midigen.errors import ParamsError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ParamsError("train.device = 'cuda' but no CUDA device is available (use auto or cpu)")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def perplexity(loss: float) -> float:
    return float(math.exp(min(loss, 50.0)))


def lr_at(step: int, total: int, base_lr: float, warmup: int, schedule: str) -> float:
    if warmup and step < warmup:
        return base_lr * (step + 1) / warmup
    if schedule == "cosine":
        progress_frac = (step - warmup) / max(1, total - warmup)
        return base_lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress_frac))))
    if schedule == "exponential":  # Magenta's MusicVAE: decay 0.9999 per step towards 1e-5
        return (base_lr - 1e-5) * 0.9999 ** (step - warmup) + 1e-5
    return base_lr


def fingerprint(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


@torch.no_grad()
def evaluate_loss(model: nn.Module, stream: np.ndarray, seq_len: int, batch_size: int, device: torch.device) -> float:
    """Mean cross-entropy (nats/token) over every position of a stream, <PAD> targets ignored."""
    model.eval()
    total, count = 0.0, 0
    for x, y in eval_windows(stream, seq_len, batch_size):
        x, y = x.to(device), y.to(device)
        with autocast(device):
            logits, _ = model(x)
        loss = nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=PAD, reduction="sum"
        )
        total += loss.item()
        count += int((y != PAD).sum())
    return total / max(1, count)


def autocast(device: torch.device):
    """bf16 autocast on CUDA; a no-op on CPU (where fp32 is both faster and exact)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def maybe_compile(net: nn.Module, mode: str, device: torch.device) -> nn.Module:
    """train.compile: 'auto' compiles on CUDA only (on CPU the LSTM kernels gain nothing and the
    compilation costs seconds), 'always' everywhere, 'never' nowhere."""
    if mode == "always" or (mode == "auto" and device.type == "cuda"):
        return torch.compile(net)
    return net


@dataclass
class History:
    rows: list[dict] = field(default_factory=list)

    def best(self) -> dict:
        return min(self.rows, key=lambda r: r["val_loss"])


@dataclass
class TrainResult:
    history: History
    best_path: Path
    tokens_per_s: float
    wall_s: float
    device: str
    resumed_from_epoch: int


def cpu_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a model's weights, as checkpoints hold them."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def checkpoint(
    model: nn.Module,
    kind: str,
    rep: Any,
    epoch: int,
    history: History,
    run_fp: str,
    data_fp: str,
    state: dict[str, torch.Tensor],
    extra: dict[str, Any] | None = None,
    resume: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A self-describing checkpoint: model config and weights, representation and vocabulary,
    history, fingerprints, then `extra` and (for last.pt) the `resume` state."""
    ckpt = {
        "format": 1,
        "model": {"kind": kind, **model.config_dict()},
        "model_state": state,
        "representation": rep.config(),
        "vocab": rep.vocab,
        "epoch": epoch,
        # timings stay out, so the same run writes byte-identical checkpoints on any machine
        "history": [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in history.rows],
        "run_fingerprint": run_fp,
        "data_fingerprint": data_fp,
    }
    ckpt.update(extra or {})
    ckpt.update(resume or {})
    return ckpt


def resume_state(best_state: dict[str, torch.Tensor], optimizer, sampler) -> dict[str, Any]:
    """What last.pt adds to resume a run; the best weights travel with it, so a resumed run
    still writes the true best.pt."""
    return {
        "best_model_state": best_state,
        "optimizer_state": optimizer.state_dict(),
        "sampler_state": json.dumps(sampler.get_state()),
        "torch_rng": torch.get_rng_state(),
    }


def training_summary(result: TrainResult) -> dict[str, Any]:
    """metrics/train.json: the best epoch's numbers, run length, speed and device."""
    best = result.history.best()
    summary = {
        "best_epoch": best["epoch"],
        "best_val_loss": best["val_loss"],
        "best_val_perplexity": best["val_perplexity"],
        "epochs": len(result.history.rows),
        "tokens_per_s": round(result.tokens_per_s, 1),
        "wall_s": round(result.wall_s, 1),
        "device": result.device,  # for the report (cpu, cuda, cuda:0, ...)
    }
    summary.update({k: best[k] for k in ("val_accuracy", "val_kl") if k in best})  # musicvae
    return summary


def train_model(
    rep: Representation,
    train_stream: np.ndarray,
    val_stream: np.ndarray,
    params: dict[str, Any],
    out_dir: Path,
    data_fingerprint: str,
    on_epoch: Callable[[dict], None] | None = None,
    time_budget_s: float | None = None,
) -> TrainResult:
    """Train params["model"] on the streams; write out_dir/best.pt and out_dir/last.pt.

    Under torchrun (distributed.init called first) each rank trains on its share of every
    global batch of train.batch_size windows and DDP averages the gradients, so N processes
    take the same optimizer steps on the same windows as one; only rank 0 validates, writes
    checkpoints, prints and calls on_epoch."""
    t_start = time.perf_counter()
    tp, mp = params["train"], params["model"]
    world = distributed.world()
    main = world.is_main
    seed_everything(tp["seed"])
    threads = tp["threads"] or (distributed.threads_per_rank(0, world.local_size) if world.size > 1 else 0)
    if threads:
        torch.set_num_threads(threads)
    device = distributed.local_device(pick_device(tp["device"]))
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    # nproc stays out: any number of processes sees the same windows, so a run killed on 4 GPUs
    # may resume on 2
    same_run = {k: v for k, v in tp.items() if k != "nproc"}
    run_fp = fingerprint({"train": same_run, "model": mp, "data": data_fingerprint, "rep": rep.config()})

    model = build_model(mp, len(rep.vocab)).to(device)
    if world.rank:  # same initial weights on every rank, but distinct dropout masks
        torch.manual_seed(distributed.shard_seed(tp["seed"], world.rank))
    net = maybe_compile(distributed.wrap(model, device), tp["compile"], device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tp["lr"], weight_decay=tp["weight_decay"])
    sampler = WindowSampler(
        train_stream, tp["seq_len"], tp["batch_size"], tp["seed"], tp["transpose"], rep, (world.rank, world.size)
    )
    # DDP averages gradients over ranks; weighting each rank's mean loss by its share of the
    # global batch makes that average the mean over the whole batch, even for uneven shares
    share = (sampler.local.stop - sampler.local.start) * world.size / tp["batch_size"]
    steps_per_epoch = sampler.batches_per_epoch()
    total_steps = steps_per_epoch * tp["epochs"]
    warmup = min(tp["warmup_steps"], total_steps // 2)

    history = History()
    start_epoch = 0
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    best_val = float("inf")
    best_state: dict[str, torch.Tensor] = {}
    resumed = _try_resume(last_path, run_fp, model, optimizer, sampler, history, tp["epochs"], best_state)
    if resumed:
        start_epoch = resumed
        best_val = history.best()["val_loss"]

    def weights() -> dict[str, torch.Tensor]:
        return cpu_weights(model)

    def payload(epoch: int, with_optimizer: bool, state: dict[str, torch.Tensor] | None = None) -> dict:
        resume = None
        if with_optimizer:
            resume = resume_state(best_state, optimizer, sampler)
            if world.size > 1:
                resume["torch_rng_ranks"] = rng_states
        weights_now = state if state is not None else weights()
        return checkpoint(model, mp["kind"], rep, epoch, history, run_fp, data_fingerprint, weights_now, resume=resume)

    t0 = time.perf_counter()
    trained_tokens, train_time = 0, 0.0
    step = start_epoch * steps_per_epoch
    rng_states: list[torch.Tensor] = []
    for epoch in range(start_epoch + 1, tp["epochs"] + 1):
        net.train()
        bar = progress(range(steps_per_epoch), desc=f"epoch {epoch}/{tp['epochs']}", unit="batch", disable=not main)
        ep_loss, ep_tokens, ep_t0 = 0.0, 0, time.perf_counter()
        for _ in bar:
            lr = lr_at(step, total_steps, tp["lr"], warmup, tp["schedule"])
            for g in optimizer.param_groups:
                g["lr"] = lr
            x, y = sampler.batch()
            x, y = x.to(device), y.to(device)
            with autocast(device):
                logits, _ = net(x)
            loss = nn.functional.cross_entropy(
                logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=PAD
            )
            optimizer.zero_grad(set_to_none=True)
            (loss * share if world.size > 1 else loss).backward()
            nn.utils.clip_grad_norm_(model.parameters(), tp["grad_clip"])
            optimizer.step()
            step += 1
            if step == start_epoch * steps_per_epoch + 1 and main:
                # bench/scale.py reads this line: start-up time until training really runs
                print(f"train: first optimizer step after {time.perf_counter() - t_start:.2f} s", flush=True)
            n_tok = int((y != PAD).sum())
            ep_loss += loss.item() * n_tok
            ep_tokens += n_tok
            elapsed = time.perf_counter() - ep_t0
            bar.set_postfix(
                loss=f"{ep_loss / ep_tokens:.3f}", tok_s=f"{ep_tokens / max(elapsed, 1e-9):,.0f}", lr=f"{lr:.2e}"
            )
            if time_budget_s is not None and distributed.any_rank(train_time + elapsed > time_budget_s):
                break
        bar.close()
        ep_time = time.perf_counter() - ep_t0
        ep_loss, ep_tokens = distributed.all_reduce_sum([ep_loss, ep_tokens])
        train_time += ep_time
        trained_tokens += ep_tokens
        train_loss = ep_loss / max(1, ep_tokens)
        # decided together: ranks' clocks differ, and one leaving early would hang the others
        out_of_time = time_budget_s is not None and distributed.any_rank(train_time > time_budget_s)
        if world.size > 1:
            rng_states = distributed.gather_objects(torch.get_rng_state())
        if not main:  # rank 0 validates and writes; the others wait for its row of the history
            history.rows.append(distributed.broadcast_object(None))
            if out_of_time:
                break
            continue
        val_loss = evaluate_loss(model, val_stream, tp["seq_len"], tp["batch_size"] * 2, device)
        row = {
            "epoch": epoch,
            "train_loss": round(train_loss, 5),
            "val_loss": round(val_loss, 5),
            "train_perplexity": round(perplexity(train_loss), 4),
            "val_perplexity": round(perplexity(val_loss), 4),
            "tokens_per_s": round(ep_tokens / max(ep_time, 1e-9), 1),
            "lr": lr,
        }
        history.rows.append(distributed.broadcast_object(row))
        improved = val_loss < best_val
        if improved:
            best_val = val_loss
            best_state = weights()
            save_checkpoint(best_path, payload(epoch, with_optimizer=False, state=best_state))
        save_checkpoint(last_path, payload(epoch, with_optimizer=True))
        print(
            f"epoch {epoch}: train {train_loss:.4f} (ppl {row['train_perplexity']:.2f})  "
            f"val {val_loss:.4f} (ppl {row['val_perplexity']:.2f}){'  *best' if improved else ''}"
        )
        if on_epoch:
            on_epoch(row)
        if out_of_time:
            break
    if main and not best_path.exists():  # resumed, and no epoch after the resume beat the earlier best
        save_checkpoint(best_path, payload(history.best()["epoch"], with_optimizer=False, state=best_state))
    return TrainResult(
        history=history,
        best_path=best_path,
        tokens_per_s=trained_tokens / max(train_time, 1e-9),
        wall_s=time.perf_counter() - t0,
        device=str(device),
        resumed_from_epoch=start_epoch,
    )


def _try_resume(
    path: Path, run_fp: str, model, optimizer, sampler, history: History, epochs: int, best_state: dict
) -> int:
    """Restore from last.pt when it belongs to this very run and is unfinished; return its epoch.

    Under DDP rank 0 reads the file and sends it to the others (they may not share its disk)."""
    ckpt = _resumable(path, run_fp, epochs) if distributed.is_main() else None
    ckpt = distributed.broadcast_object(ckpt)
    if ckpt is None:
        return 0
    model.load_state_dict(ckpt["model_state"])
    best_state.update(ckpt["best_model_state"])
    optimizer.load_state_dict(ckpt["optimizer_state"])
    sampler.set_state(json.loads(ckpt["sampler_state"]))
    world = distributed.world()
    rngs = ckpt.get("torch_rng_ranks") or []
    if len(rngs) == world.size:
        torch.set_rng_state(rngs[world.rank])
    else:  # saved by another number of processes: rank 0 continues, the others get their own
        torch.set_rng_state(ckpt["torch_rng"])
        if world.rank:
            torch.manual_seed(distributed.shard_seed(int(ckpt["epoch"]), world.rank))
    history.rows.extend(ckpt["history"])
    if world.is_main:
        print(f"resuming from {path} after epoch {ckpt['epoch']}")
    return int(ckpt["epoch"])


def _resumable(path: Path, run_fp: str, epochs: int) -> dict | None:
    """last.pt's contents when it belongs to this very run and is unfinished, else None."""
    if not path.exists():
        return None
    try:
        ckpt = load_checkpoint(path)
    except Exception as exc:
        print(f"warning: ignoring unreadable {path} ({exc}); starting from scratch")
        return None
    if (
        ckpt.get("run_fingerprint") != run_fp
        or "optimizer_state" not in ckpt
        or "best_model_state" not in ckpt
        or ckpt["epoch"] >= epochs
    ):
        return None
    return ckpt
