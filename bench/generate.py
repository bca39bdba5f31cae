"""Benchmark: sampling speed from one checkpoint, seed-style one-piece-at-a-time vs ours (one batch).

Both sides use the same model object loaded from --checkpoint, on the CPU, with torch's default
thread count.

Seed-style (our rewrite of the reference design's loop): for each of 2 pieces, start from <BOS>
and run model(x, hidden) on one token of one sequence per step, carrying the LSTM state;
logits / temperature, top-k 50, softmax, torch.multinomial, .item() into a list; 4000 steps,
no stop at <EOS> (so exactly 2 x 4000 new tokens).
Ours: midigen.generation.generate.sample_ids for 16 pieces with max_steps 4000 and params.yaml's generate
section (temperature, top_k, top_p, seed): all pieces in one batch. A row stops at its <EOS>, so
ours may produce fewer than 16 x 4000 tokens; the tokens actually produced are counted and shown
with tokens/s. To also compare equal work, ours is run a second time with <EOS> ignored
(model.generate with an impossible eos id), i.e. exactly 16 x 4000 new tokens; --no-full-length
skips that run.

Useful tokens: a piece's new tokens up to and including its first <EOS> (the seed-style loop runs
past it; what comes after is thrown away when the piece is written). The headline is useful
tokens per second of the whole process: `python -m midigen sample` run as a user runs it, timed
from start to exit (interpreter start, imports, checkpoint load, sampling, writing MIDI), against
the seed-style loop's useful tokens per second of sampling alone; --no-process skips that run.

Timing is wall clock around each side's sampling (with --repeats N, the fastest of N runs);
ours' sample_ids time includes its own checkpoint load (shown separately). Run from anywhere:
  python bench/generate.py [--checkpoint models/best.pt] [--pieces 16] [--seed-pieces 2] [--steps 4000]
                           [--repeats 1] [--no-full-length] [--no-process]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, enter_root, machine_line  # noqa: E402

TARGET = 1.0


@torch.no_grad()
def seed_style(model, bos: int, pieces: int, steps: int, temperature: float, top_k: int, seed: int) -> list[list[int]]:
    """The reference loop: one piece at a time, one token per model call."""
    model.eval()
    torch.manual_seed(seed)
    out = []
    for _ in range(pieces):
        tokens = [bos]
        x = torch.tensor([[bos]], dtype=torch.long)
        hidden = None
        for _ in range(steps):
            logits, hidden = model(x, hidden)
            logits = logits[0, -1, :] / temperature
            values, indices = torch.topk(logits, top_k)
            probs = torch.softmax(values, dim=-1)
            nxt = int(indices[torch.multinomial(probs, 1)].item())
            tokens.append(nxt)
            x = torch.tensor([[nxt]], dtype=torch.long)
        out.append(tokens)
    return out


def useful(seqs, eos: int, prompt_len: int = 1) -> int:
    """New tokens up to and including each piece's first <EOS> (all of them when it has none)."""
    total = 0
    for s in seqs:
        new = [int(t) for t in s[prompt_len:]]
        total += new.index(eos) + 1 if eos in new else len(new)
    return total


def whole_process(ckpt: Path, pieces: int, steps: int) -> tuple[float, int]:
    """(wall seconds, useful tokens) of `python -m midigen sample` in a fresh process, on the CPU."""
    import os
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        cmd = [sys.executable, "-m", "midigen", "sample", "--checkpoint", str(ckpt), "--device", "cpu"]
        cmd += ["--num-files", str(pieces), "--max-steps", str(steps), "--out", str(Path(tmp) / "out")]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
        wall = time.perf_counter() - t0
        tokens = [p.read_text(encoding="utf-8").split() for p in sorted((Path(tmp) / "out").glob("sample_*.txt"))]
    return wall, sum(len(t) - 1 for t in tokens)  # the files end at <EOS>; <BOS> is no new token


def describe(seqs, eos: int, prompt_len: int = 1) -> tuple[int, str]:
    """(new tokens, a summary of the row lengths and how many rows ended at <EOS>)."""
    new = np.array([len(s) - prompt_len for s in seqs])
    at_eos = sum(1 for s in seqs if len(s) > prompt_len and int(s[-1]) == eos)
    return int(new.sum()), (
        f"rows {len(seqs)}: new tokens min {new.min()} / median {int(np.median(new))} / "
        f"max {new.max()}, {at_eos} ended at <EOS>"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--checkpoint",
        type=Path,
        default=Path("models/best.pt"),
        help="relative paths are taken from the project root (default models/best.pt)",
    )
    ap.add_argument("--pieces", type=int, default=16, help="ours: pieces in one batch (default 16)")
    ap.add_argument("--seed-pieces", type=int, default=2, help="seed-style: pieces, one at a time (default 2)")
    ap.add_argument("--steps", type=int, default=4000, help="new tokens per piece (ours: at most) (default 4000)")
    ap.add_argument("--seed-top-k", type=int, default=50, help="seed-style top-k (default 50)")
    ap.add_argument("--no-full-length", action="store_true", help="skip ours' second run with <EOS> ignored")
    ap.add_argument("--no-process", action="store_true", help="skip the whole-process `midigen sample` run")
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="time every side this many times and keep its fastest run (default 1; the machine is shared)",
    )
    args = ap.parse_args()
    if min(args.pieces, args.seed_pieces, args.steps, args.seed_top_k, args.repeats) < 1:
        ap.error("--pieces, --seed-pieces, --steps, --seed-top-k and --repeats must be >= 1")
    ckpt = args.checkpoint if args.checkpoint.is_absolute() else ROOT / args.checkpoint
    if not ckpt.is_file():
        print(
            f"{args.checkpoint}: no checkpoint; train a model first with `dvc repro train` (or pass --checkpoint PATH)",
            file=sys.stderr,
        )
        return 2
    enter_root()
    from midigen.generation.generate import sample_ids
    from midigen.params import load_params
    from midigen.representations import BOS, EOS
    from midigen.training.checkpoint import load_model

    gp = load_params(ROOT / "params.yaml", sections=("generate",))["generate"]
    temperature, top_k, top_p, seed = gp["temperature"], gp["top_k"], gp["top_p"], gp["seed"]

    t0 = time.perf_counter()
    model = load_model(ckpt, "cpu").model
    load_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    cfg = model.config_dict() if hasattr(model, "config_dict") else {}
    print(f"checkpoint: {ckpt} ({n_params:,} parameters, {cfg}), load {load_s:.2f} s")
    print(f"machine: {machine_line()}", flush=True)

    def timed(fn):
        """(fastest wall seconds over --repeats runs, every run's seconds, the result); same seed each run."""
        times, result = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t0)
        return min(times), times, result

    # seed-style: one piece at a time
    seed_s, seed_times, seed_seqs = timed(
        lambda: seed_style(model, BOS, args.seed_pieces, args.steps, temperature, args.seed_top_k, seed)
    )
    seed_tokens, seed_desc = describe(seed_seqs, EOS)
    seed_useful = useful(seed_seqs, EOS)

    # ours: midigen.generation.generate.sample_ids, one batch, rows stop at <EOS>
    ours_s, ours_times, (ours_seqs, _) = timed(
        lambda: sample_ids(ckpt, args.pieces, args.steps, temperature, top_k, top_p, seed, device="cpu")
    )
    ours_tokens, ours_desc = describe(ours_seqs, EOS)

    full = None
    if not args.no_full_length:  # same model and sampling settings, <EOS> never ends a row
        full_s, full_times, full_seqs = timed(
            lambda: model.generate(
                [[BOS]] * args.pieces,
                args.steps,
                -1,
                temperature,
                top_k,
                top_p,
                generator=torch.Generator().manual_seed(seed),
            )
        )
        full = (full_s, *describe(full_seqs, EOS))
    process = None if args.no_process else whole_process(ckpt, args.pieces, args.steps)

    print(f"machine after: {machine_line()}")
    print(
        f"seed-style: temperature {temperature:g}, top-k {args.seed_top_k}; ours: temperature {temperature:g}, "
        f"top-k {top_k}, top-p {top_p:g} (params.yaml generate), seed {seed}"
    )
    print(f"{'side':<26}{'pieces':>7}{'new tokens':>12}{'seconds':>9}{'tokens/s':>10}  rows")
    rows = [
        ("seed-style (1 at a time)", args.seed_pieces, seed_tokens, seed_s, seed_desc),
        ("ours (sample_ids)", args.pieces, ours_tokens, ours_s, ours_desc),
    ]
    if full:
        rows.append(("ours, <EOS> ignored", args.pieces, full[1], full[0], full[2]))
    for name, pieces, tokens, secs, desc in rows:
        print(f"{name:<26}{pieces:>7}{tokens:>12,}{secs:>9.2f}{tokens / max(secs, 1e-9):>10,.0f}  {desc}")
    if args.repeats > 1:
        runs = [("seed-style", seed_times), ("ours", ours_times)]
        if full:
            runs.append(("ours <EOS> ignored", full_times))
        print(
            f"fastest of {args.repeats} runs shown; all runs (s): "
            + "; ".join(f"{n} " + ", ".join(f"{t:.2f}" for t in ts) for n, ts in runs)
        )
    print(f"(ours' sample_ids time includes loading the checkpoint, {load_s:.2f} s when timed above)")
    if ours_tokens < args.pieces * args.steps:
        print(
            f"note: ours produced {ours_tokens:,} of at most {args.pieces * args.steps:,} tokens because rows "
            "stopped at <EOS>; compare tokens/s" + (" or the <EOS>-ignored run" if full else "")
        )
    seed_rate, ours_rate = seed_tokens / max(seed_s, 1e-9), ours_tokens / max(ours_s, 1e-9)
    print(
        f"tokens/s: ours {ours_rate:,.0f} vs seed-style {seed_rate:,.0f}: ratio {ours_rate / max(seed_rate, 1e-9):.1f}"
    )
    if full:
        full_rate = full[1] / max(full[0], 1e-9)
        print(
            f"equal length: {args.pieces} x {args.steps} tokens (ours, <EOS> ignored) in {full[0]:.2f} s, "
            f"{full_rate:,.0f} tokens/s = {full_rate / max(seed_rate, 1e-9):.1f}x seed-style's tokens/s"
        )
    seed_useful_rate = seed_useful / max(seed_s, 1e-9)
    print(
        f"useful tokens (up to each piece's first <EOS>): seed-style {seed_useful:,} in {seed_s:.2f} s = "
        f"{seed_useful_rate:,.0f}/s; ours {ours_tokens:,} in {ours_s:.2f} s = {ours_rate:,.0f}/s"
    )
    if process:
        wall, tokens = process
        rate = tokens / max(wall, 1e-9)
        print(
            f"whole process (python -m midigen sample, {args.pieces} pieces): {tokens:,} useful tokens in {wall:.2f} s "
            f"= {rate:,.0f} useful tokens/s = {rate / max(seed_useful_rate, 1e-9):.1f}x seed-style's useful tokens/s"
        )
    ratio = seed_s / max(ours_s, 1e-9)
    verdict = "" if ratio > TARGET else "  BELOW TARGET"
    print(
        f"{args.pieces} pieces (ours) in {ours_s:.2f} s vs {args.seed_pieces} pieces (seed-style) in {seed_s:.2f} s: "
        f"ratio Y/X = {ratio:.2f} (target > {TARGET:g}){verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
