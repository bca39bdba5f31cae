"""Benchmark: every token representation side by side on the Bach chorales, at one training
budget, judged by what the evaluate stage hears (the figures of the README's table).

For each configuration the whole pipeline (`dvc repro evaluate`) runs in one fresh clone of this
repository (HEAD, with the working tree's params.yaml), params.yaml changed only as the
configuration says, and with the same number of optimizer steps for all: train.epochs is set so
that epochs x batches per epoch is about --steps (a representation that needs more tokens per
piece does not get more training for it). Everything else is params.yaml's: model, sampling, the
constrained sampler, the evaluation (one batch of as many pieces as held-out test pieces).

    python bench/listening.py [--steps 1100] [--only events-beats,voices] [--out results.json]
                              [--set train.threads=1 ...]

Prints a markdown table: classifier two-sample accuracy (0.5 = cannot tell generated from held
out), hanging-note share and each set's longest note, onsets on the sixteenth grid, voice-count
total variation, the distribution score, test NLL (per token: not comparable across
representations), tokens, training minutes. Takes about 10 minutes per configuration on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine_line  # noqa: E402

#: name -> params overrides ("section.key": value)
CONFIGS: dict[str, dict[str, object]] = {
    "events-seconds": {"preprocess.representation": "events", "preprocess.time_unit": "seconds"},
    "events-beats": {"preprocess.representation": "events", "preprocess.time_unit": "beats"},
    "voices": {"preprocess.representation": "voices"},
    "notes_chords": {"preprocess.representation": "notes_chords"},
    "pitch_duration": {"preprocess.representation": "pitch_duration"},
}


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def set_params(path: Path, base: dict, overrides: dict[str, object]) -> dict:
    params = json.loads(json.dumps(base))
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        params[section][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return params


def train_tokens(repo: Path) -> int:
    """Tokens of the train split of the store preprocess wrote."""
    import pandas as pd

    index = pd.read_csv(repo / "data/tokens/index.csv")
    split = pd.read_csv(repo / "data/split.csv").set_index("rel_path")["split"]
    return int(index.loc[index["rel_path"].map(split).eq("train"), "length"].sum())


def measure(name: str, repo: Path, base: dict, steps: int, env: dict[str, str]) -> dict:
    params = set_params(repo / "params.yaml", base, CONFIGS[name])
    run(["dvc", "repro", "split"], repo, env)
    t = params["train"]
    per_epoch = max(1, (train_tokens(repo) - 1) // (t["seq_len"] * t["batch_size"]))
    epochs = max(1, math.ceil(steps / per_epoch))
    set_params(repo / "params.yaml", base, {**CONFIGS[name], "train.epochs": epochs})
    t0 = time.perf_counter()
    run(["dvc", "repro", "evaluate"], repo, env)
    ev = json.loads((repo / "metrics/eval.json").read_text(encoding="utf-8"))
    train = json.loads((repo / "metrics/train.json").read_text(encoding="utf-8"))
    data = json.loads((repo / "metrics/data.json").read_text(encoding="utf-8"))
    h = ev["hearing"]
    return {
        "name": name,
        "epochs": epochs,
        "steps": epochs * per_epoch,
        "pieces": data["pieces"],
        "tokens": data["tokens"],
        "train_min": round(train["wall_s"] / 60, 1),
        "pipeline_min": round((time.perf_counter() - t0) / 60, 1),
        "test_nll": ev["test_nll"],
        "c2st": ev["c2st"],
        "hanging": h["hanging_note_share"],
        "longest_gen": h["generated"]["longest_note_beats"],
        "longest_test": h["test"]["longest_note_beats"],
        "grid_gen": h["generated"]["on_grid_share"],
        "grid_test": h["test"]["on_grid_share"],
        "voice_tv": h["tv"]["voice_count"],
        "distribution_score": ev["distribution_score"],
        "num_test": ev["num_test"],
    }


def table(rows: list[dict]) -> str:
    head = (
        "| representation | classifier accuracy [95%] | hanging notes (longest: gen / test, beats) "
        "| on grid (gen / test) | voice TV | distribution score | test NLL | pieces kept, tokens | steps, train min |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        c = r["c2st"]
        acc = "n/a" if c["accuracy"] is None else f"{c['accuracy']:.2f} [{c['ci_low']:.2f}, {c['ci_high']:.2f}]"
        lines.append(
            f"| {r['name']} | {acc} | {r['hanging']:.3f} ({r['longest_gen']:g} / {r['longest_test']:g}) "
            f"| {r['grid_gen']:.3f} / {r['grid_test']:.3f} | {r['voice_tv']:.3f} | {r['distribution_score']:.3f} "
            f"| {r['test_nll']:.3f} | {r['pieces']}, {r['tokens']:,} | {r['steps']}, {r['train_min']} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1100, help="optimizer steps per configuration (default 1100)")
    ap.add_argument("--only", default="", help="comma-separated configuration names (default: all)")
    ap.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    ap.add_argument("--keep", type=Path, default=None, help="run in this folder (kept) instead of a temporary one")
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a params override for every configuration"
    )
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(CONFIGS)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        sys.exit(f"--only: unknown configuration {unknown[0]!r} (choose from {', '.join(CONFIGS)})")
    base = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    for item in args.set:
        dotted, _, value = item.partition("=")
        section, key = dotted.split(".")
        base[section][key] = yaml.safe_load(value)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["DVC_NO_ANALYTICS"] = "1"
    env.pop("MLFLOW_TRACKING_URI", None)
    print(machine_line(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        repo = args.keep or Path(tmp) / "repo"
        if not (repo / ".git").exists():
            run(["git", "clone", "-q", str(ROOT), str(repo)], Path(tmp), env)
        env["PYTHONPATH"] = str(repo)  # the clone's code, whatever midigen the venv has installed
        rows = []
        for name in names:
            rows.append(measure(name, repo, base, args.steps, env))
            print(json.dumps(rows[-1]), flush=True)
            if args.out:
                args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
