"""The one training loop, for every model family: seeding, threads, device, bf16 autocast and
torch.compile on CUDA, AdamW with a warm-up and an LR schedule, clipping, a progress bar,
validation after every epoch, best/last checkpoints, resume after kill -9, deterministic on CPU,
and DistributedDataParallel when started by torchrun (midigen.training.distributed).

The family (midigen.models.base) supplies what differs: its batches, the loss of one step,
validation and the fields of a history row. A family that learns from counts
(trains_by_gradient = False) is fitted once and validated like the others.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from midigen import models
from midigen.models.base import Totals
from midigen.parallel import progress
from midigen.representations import Representation
from midigen.training import checkpoint, distributed
from midigen.training.devices import maybe_compile, pick_device, seed_everything


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
    summary.update({k: best[k] for k in ("val_accuracy", "val_kl") if k in best})
    return summary


def train_model(
    rep: Representation,
    train_data: Any,
    val_data: Any,
    params: dict[str, Any],
    out_dir: Path,
    data_fingerprint: str,
    on_epoch: Callable[[dict], None] | None = None,
    time_budget_s: float | None = None,
    extra: dict[str, Any] | None = None,
) -> TrainResult:
    """Train the family params["model"]["kind"] names on train_data (its layout: an id stream
    or windows); write out_dir/best.pt and out_dir/last.pt.

    Under torchrun (distributed.init called first) each rank trains on its share of every
    global batch of train.batch_size items and DDP averages the gradients, so N processes
    take the same optimizer steps on the same data as one; only rank 0 validates, writes
    checkpoints, prints and calls on_epoch."""
    t_start = time.perf_counter()
    tp, mp = params["train"], params["model"]
    family = models.family(mp["kind"])
    models.check_fits(mp["kind"], rep.name, rep.layout)
    family.check_params(params)
    world = distributed.world()
    main = world.is_main
    seed_everything(tp["seed"])
    threads = tp["threads"] or (distributed.threads_per_rank(0, world.local_size) if world.size > 1 else 0)
    if threads:
        torch.set_num_threads(threads)
    device = distributed.local_device(pick_device(tp["device"]))
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    # nproc stays out: any number of processes sees the same batches, so a run killed on 4 GPUs
    # may resume on 2
    same_run = {k: v for k, v in tp.items() if k != "nproc"}
    run_fp = fingerprint({"train": same_run, "model": mp, "data": data_fingerprint, "rep": rep.config()})

    model = family.build(mp, rep).to(device)
    history = History()
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    # the data's entries (the training pieces' keys, midigen.data.keys), then the family's
    extra = {**(extra or {}), **family.checkpoint_extra(params)}

    def payload(epoch: int, state: dict[str, torch.Tensor], resume: dict | None = None) -> dict:
        return checkpoint.build(model, family, rep, epoch, history.rows, run_fp, data_fingerprint, state, extra, resume)

    if not family.trains_by_gradient:
        return _fit(family, model, rep, train_data, val_data, params, history, best_path, payload, on_epoch, device)

    if world.rank:  # same initial weights on every rank, but distinct dropout masks
        torch.manual_seed(distributed.shard_seed(tp["seed"], world.rank))
    net = maybe_compile(distributed.wrap(model, device), tp["compile"], device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tp["lr"], weight_decay=tp["weight_decay"])
    sampler = family.batches(train_data, params, rep, (world.rank, world.size))
    # DDP averages gradients over ranks; weighting each rank's mean loss by its share of the
    # global batch makes that average the mean over the whole batch, even for uneven shares
    share = (sampler.local.stop - sampler.local.start) * world.size / tp["batch_size"]
    steps_per_epoch = sampler.batches_per_epoch()
    total_steps = steps_per_epoch * tp["epochs"]
    warmup = min(tp["warmup_steps"], total_steps // 2)

    start_epoch = 0
    best_val = float("inf")
    best_state: dict[str, torch.Tensor] = {}
    resumed = _try_resume(last_path, run_fp, model, optimizer, sampler, history, tp["epochs"], best_state)
    if resumed:
        start_epoch = resumed
        best_val = history.best()["val_loss"]

    def resume_state() -> dict[str, Any]:
        """What last.pt adds to resume a run; the best weights travel with it, so a resumed
        run still writes the true best.pt."""
        state = {
            "best_model_state": best_state,
            "optimizer_state": optimizer.state_dict(),
            "sampler_state": json.dumps(sampler.get_state()),
            "torch_rng": torch.get_rng_state(),
        }
        if world.size > 1:
            state["torch_rng_ranks"] = rng_states
        return state

    t0 = time.perf_counter()
    trained_tokens, train_time = 0, 0.0
    step = start_epoch * steps_per_epoch
    rng_states: list[torch.Tensor] = []
    for epoch in range(start_epoch + 1, tp["epochs"] + 1):
        net.train()
        bar = progress(range(steps_per_epoch), desc=f"epoch {epoch}/{tp['epochs']}", unit="batch", disable=not main)
        sums: dict[str, float] = {}
        items, ep_tokens, ep_t0 = 0, 0, time.perf_counter()
        lr = tp["lr"]
        for _ in bar:
            lr = lr_at(step, total_steps, tp["lr"], warmup, tp["schedule"])
            for g in optimizer.param_groups:
                g["lr"] = lr
            out = family.train_step(net, _to(sampler.batch(), device), step, params)
            optimizer.zero_grad(set_to_none=True)
            (out.loss * share if world.size > 1 else out.loss).backward()
            nn.utils.clip_grad_norm_(model.parameters(), tp["grad_clip"])
            optimizer.step()
            step += 1
            if step == start_epoch * steps_per_epoch + 1 and main:
                # bench/scale.py reads this line: start-up time until training really runs
                print(f"train: first optimizer step after {time.perf_counter() - t_start:.2f} s", flush=True)
            for k, v in out.sums.items():
                sums[k] = sums.get(k, 0.0) + v
            items += out.items
            ep_tokens += out.tokens
            elapsed = time.perf_counter() - ep_t0
            totals = Totals(sums, items, ep_tokens, step)
            bar.set_postfix(
                **family.postfix(totals, params), tok_s=f"{ep_tokens / max(elapsed, 1e-9):,.0f}", lr=f"{lr:.2e}"
            )
            if time_budget_s is not None and distributed.any_rank(train_time + elapsed > time_budget_s):
                break
        bar.close()
        ep_time = time.perf_counter() - ep_t0
        keys = sorted(sums)
        *totals, items, ep_tokens = distributed.all_reduce_sum([*(sums[k] for k in keys), items, ep_tokens])
        sums = dict(zip(keys, totals, strict=True))
        train_time += ep_time
        trained_tokens += ep_tokens
        # decided together: ranks' clocks differ, and one leaving early would hang the others
        out_of_time = time_budget_s is not None and distributed.any_rank(train_time > time_budget_s)
        if world.size > 1:
            rng_states = distributed.gather_objects(torch.get_rng_state())
        if not main:  # rank 0 validates and writes; the others wait for its row of the history
            history.rows.append(distributed.broadcast_object(None))
            if out_of_time:
                break
            continue
        val = family.validate(model, val_data, params, device)
        row = {
            "epoch": epoch,
            **family.epoch_row(Totals(sums, items, ep_tokens, step), val, params),
            "tokens_per_s": round(ep_tokens / max(ep_time, 1e-9), 1),
            "lr": lr,
        }
        history.rows.append(distributed.broadcast_object(row))
        improved = row["val_loss"] < best_val
        if improved:
            best_val = row["val_loss"]
            best_state = cpu_weights(model)
            checkpoint.save(best_path, payload(epoch, best_state))
        checkpoint.save(last_path, payload(epoch, cpu_weights(model), resume_state()))
        print(family.epoch_line(row) + ("  *best" if improved else ""))
        if on_epoch:
            on_epoch(row)
        if out_of_time:
            break
    if main and not best_path.exists():  # resumed, and no epoch after the resume beat the earlier best
        checkpoint.save(best_path, payload(history.best()["epoch"], best_state))
    if main:
        # the family's last word on the best model (MusicVAE: its latent attribute vectors)
        model.load_state_dict(best_state)
        if family.finish(model, rep, train_data, params, device):
            checkpoint.save(best_path, payload(history.best()["epoch"], best_state))
    return TrainResult(
        history=history,
        best_path=best_path,
        tokens_per_s=trained_tokens / max(train_time, 1e-9),
        wall_s=time.perf_counter() - t0,
        device=str(device),
        resumed_from_epoch=start_epoch,
    )


def _to(batch: Any, device: torch.device) -> Any:
    """A batch (a tensor or a tuple of tensors) on `device`."""
    if isinstance(batch, tuple):
        return tuple(b.to(device) for b in batch)
    return batch.to(device)


def _fit(family, model, rep, train_data, val_data, params, history, best_path, payload, on_epoch, device):
    """A family that learns from counts: fit once, validate, write best.pt; one history row."""
    t0 = time.perf_counter()
    totals = family.fit(model, train_data, params)
    fit_s = time.perf_counter() - t0
    if not distributed.world().is_main:
        history.rows.append(distributed.broadcast_object(None))
    else:
        val = family.validate(model, val_data, params, device)
        speed = round(totals.tokens / max(fit_s, 1e-9), 1)
        row = {"epoch": 1, **family.epoch_row(totals, val, params), "tokens_per_s": speed, "lr": 0.0}
        history.rows.append(distributed.broadcast_object(row))
        checkpoint.save(best_path, payload(1, cpu_weights(model)))
        print(family.epoch_line(row) + "  *best")
        if on_epoch:
            on_epoch(row)
    return TrainResult(
        history=history,
        best_path=best_path,
        tokens_per_s=totals.tokens / max(fit_s, 1e-9),
        wall_s=time.perf_counter() - t0,
        device=str(device),
        resumed_from_epoch=0,
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
        ckpt = checkpoint.load(path)
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
