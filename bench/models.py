"""Benchmark: the LSTM and the Transformer trained for the same wall-clock budget on the same data.

Both sides train with midigen.training.loop.train_model on the project's token store and split
(data/tokens, data/split.csv: the default pipeline's data, same representation, split and seed),
with params.yaml as it is except model.kind (model.preset with --preset; --set for both), one after the other
in this process, each until its training time (validation excluded) passes --budget seconds.

Printed per side: parameters, tokens seen, training tokens/s, the best validation loss of its
epochs (train_model's own validation: train.seq_len windows over the whole val stream, the same
windows for both), and sampling: --pieces pieces at once from <BOS> through the family's own
sampler (params.yaml's generate section: temperature, top-k, top-p, grammar), useful tokens
(up to each piece's <EOS>) per second. The machine may be shared: the load is printed too.
  python bench/models.py [--budget 120] [--threads 1] [--pieces 16] [--max-steps 2000]
                         [--preset transformer_cpu] [--sides lstm,transformer,transformer:alibi]
                         [--set train.seq_len=128 ...] [--data ROOT]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, enter_root, machine_line  # noqa: E402


def run_side(
    side: str, preset: str, params: dict, data, budget: float, pieces: int, max_steps: int, tmp: Path, sets=()
):
    from midigen import models
    from midigen.models.base import request_from
    from midigen.params import validate
    from midigen.representations import EOS
    from midigen.training.loop import train_model

    kind, _, position = side.partition(":")
    raw = {section: dict(values) for section, values in params.items()}
    raw["model"].update(kind=kind, preset=preset if kind == "transformer" else "none")
    if position:
        raw["model"]["position"] = position
    for assignment in sets:
        key, _, value = assignment.partition("=")
        section, _, name = key.partition(".")
        raw[section][name] = yaml.safe_load(value)
    p = validate(raw)
    family = models.family(kind)
    rep = data.store.representation
    train, val = family.data(data)
    result = train_model(rep, train, val, p, tmp / side.replace(":", "-"), data.fingerprint(), time_budget_s=budget)
    rows = result.history.rows
    from midigen.training.checkpoint import load_model

    loaded = load_model(result.best_path, "cpu")
    request = request_from(p["generate"], num=pieces, max_steps=max_steps)
    t0 = time.perf_counter()
    seqs = family.sample(loaded.model, rep, request, loaded.device)
    sample_s = time.perf_counter() - t0
    useful = sum(len(s) - 1 for s in seqs)  # every new id up to and including <EOS>
    ended = sum(1 for s in seqs if int(s[-1]) == EOS)
    m, t = p["model"], p["train"]
    if kind == "transformer":
        size = f"{m['layers']} x d{m['d_model']} ({m['heads']} heads, ff {m['d_ff']}, {m['position']})"
        size += f", context {m['context']}"
    else:
        size = f"emb {m['emb_dim']}, hidden {m['hidden_dim']} x {m['num_layers']}"
    return {
        "kind": side,
        "size": f"{size}; batch {t['batch_size']} x seq {t['seq_len']}, lr {t['lr']:g}",
        "params": sum(v.numel() for v in loaded.model.parameters()),
        "epochs": len(rows),
        "tokens_per_s": result.tokens_per_s,
        "val": min(r["val_loss"] for r in rows),
        "sample_tokens": useful,
        "sample_s": sample_s,
        "ended": ended,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=120.0, help="training seconds per side (default 120)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (train.threads; default 1)")
    ap.add_argument("--pieces", type=int, default=16, help="pieces sampled at once per side (default 16)")
    ap.add_argument("--max-steps", type=int, default=2000, help="new tokens per piece at most (default 2000)")
    ap.add_argument("--preset", default="none", help="model.preset of the transformer side (default none)")
    ap.add_argument(
        "--sides",
        default="lstm,transformer",
        help="comma-separated model.kind values; transformer:alibi sets model.position (default lstm,transformer)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a param for every side, e.g. train.seq_len=128 (repeatable)",
    )
    ap.add_argument("--data", type=Path, default=ROOT, help="folder holding data/tokens and data/split.csv")
    args = ap.parse_args()
    if min(args.budget, args.threads, args.pieces, args.max_steps) <= 0:
        ap.error("--budget, --threads, --pieces and --max-steps must be > 0")
    enter_root()
    from midigen.data.dataset import load_split_data
    from midigen.params import load_params

    params = load_params(ROOT / "params.yaml")
    params["train"]["threads"] = args.threads
    data = load_split_data(args.data / "data/tokens", args.data / "data/split.csv")
    torch.set_num_threads(args.threads)
    print(
        f"data: {args.data / 'data/tokens'} ({data.store.representation.name}), {len(data.stream('train')):,} train / "
        f"{len(data.stream('val')):,} val tokens; budget {args.budget:g} s of training per side"
    )
    print(f"machine: {machine_line()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        sides = [
            run_side(k, args.preset, params, data, args.budget, args.pieces, args.max_steps, Path(tmp), args.set)
            for k in args.sides.split(",")
        ]
    print(f"machine after: {machine_line()}")
    for s in sides:
        print(f"{s['kind']}: {s['size']}")
    print(
        f"{'model':<20}{'params':>10}{'epochs':>8}{'train tok/s':>13}{'best val':>10}"
        f"{'sampled':>9}{'sample s':>10}{'sample tok/s':>14}  ended at <EOS>"
    )
    for s in sides:
        print(
            f"{s['kind']:<20}{s['params']:>10,}{s['epochs']:>8}{s['tokens_per_s']:>13,.0f}{s['val']:>10.4f}"
            f"{s['sample_tokens']:>9,}{s['sample_s']:>10.2f}{s['sample_tokens'] / max(s['sample_s'], 1e-9):>14,.0f}"
            f"  {s['ended']}/{args.pieces}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
