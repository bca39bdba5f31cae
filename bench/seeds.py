"""Benchmark: the classifier two-sample test of one checkpoint over several sampling seeds.

The evaluate stage draws one batch of pieces (as many as there are held-out test pieces) with
generate.seed and reports one classifier accuracy. With about 40 pieces a side that number moves
by several hundredths with the draw alone, more than most changes one wants to judge. This
samples the same checkpoint with each seed in --seeds, as the generate stage would (params.yaml's
generate section, with --set overrides), scores each batch against the test split as evaluate does
(midigen.evaluation.hearing), and prints each accuracy, their mean and spread, and the voice-count
TV. Nothing is trained; it takes seconds per seed.

With --groups it also asks what tells the sets apart: for each feature (a histogram, the pitch
classes, a scalar; hearing.feature_groups) the classifier's accuracy on that feature alone and on
all the others, and both sets' mean of it, averaged over the seeds. A feature whose removal lowers
the accuracy most is what the model gets most wrong as the classifier sees it.

    python bench/seeds.py [--checkpoint models/best.pt] [--seeds 7,8,9,10] [--groups]
                          [--set generate.temperature=0.95 ...] [--out results.json]

Run it from the repository root after `dvc repro` (it reads data/split.csv and data/raw/midi).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine_line  # noqa: E402


def parse_set(items: list[str], generate: dict) -> dict:
    """generate.key=value overrides, typed as params.yaml's values."""
    out = {}
    for item in items:
        dotted, _, value = item.partition("=")
        section, _, key = dotted.partition(".")
        if section != "generate" or key not in generate:
            sys.exit(f"--set {item}: only generate.<key> of params.yaml can be set here")
        old = generate[key]
        out[key] = value.lower() == "true" if isinstance(old, bool) else type(old)(value)
    return out


def by_group(groups: dict, gen_rows: np.ndarray, ref_rows: np.ndarray, evaluate: dict, seed: int) -> dict:
    """{feature: [accuracy on it alone, accuracy on all the others]} for one seed's batch;
    groups: hearing.feature_groups."""
    from midigen.evaluation import hearing

    out = {}
    for name, cols in groups.items():
        rest = np.delete(np.arange(gen_rows.shape[1]), np.arange(gen_rows.shape[1])[cols])
        runs = [
            hearing.c2st(g, r, evaluate["classifier_folds"], evaluate["classifier_resamples"], seed)
            for g, r in ((gen_rows[:, cols], ref_rows[:, cols]), (gen_rows[:, rest], ref_rows[:, rest]))
        ]
        out[name] = [run["accuracy"] for run in runs]
    return out


def print_groups(groups: dict, rows: list[dict], gen_rows: np.ndarray, ref_rows: np.ndarray) -> None:
    """The per-feature table, averaged over the seeds; the means are the last seed's batch's."""
    print(f"{'feature':<13}{'alone':>7}{'without':>9}   mean: generated (last seed) / test")
    for name, cols in groups.items():
        alone, without = np.mean([r["groups"][name] for r in rows], axis=0)
        g, t = gen_rows[:, cols].mean(0), ref_rows[:, cols].mean(0)
        means = " ".join(f"{a:.3g}/{b:.3g}" for a, b in zip(g, t, strict=True) if a or b)
        print(f"{name:<13}{alone:>7.3f}{without:>9.3f}   {means}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "models" / "best.pt"))
    ap.add_argument("--seeds", default="7,8,9,10")
    ap.add_argument("--set", action="append", default=[], help="generate.key=value")
    ap.add_argument("--groups", action="store_true", help="accuracy per feature: alone and left out")
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args()

    import torch

    from midigen.data.dataset import load_split_data
    from midigen.data.keys import of_checkpoint
    from midigen.evaluation import hearing
    from midigen.evaluation.lm_eval import source_files
    from midigen.generation.generate import write_pieces
    from midigen.models.base import context_from, request_from
    from midigen.params import load_params
    from midigen.training.checkpoint import load_model

    torch.set_num_threads(1)
    params = load_params(ROOT / "params.yaml")
    generate = {**params["generate"], **parse_set(args.set, params["generate"])}
    evaluate = params["evaluate"]
    loaded = load_model(args.checkpoint, "cpu")
    keys = of_checkpoint(loaded.ckpt)
    os.chdir(ROOT)  # the stores' paths are the pipeline's, relative to the repository
    data = load_split_data()
    rows_test = data.pieces("test", fallbacks=("val", "train")).head(evaluate["max_test_pieces"])
    test = source_files(rows_test["rel_path"].tolist())  # what the evaluate stage compares with
    reference = [hearing.listen(hearing.read_piece(p)) for p in test]
    ref_rows = np.array([hearing.feature_vector(p) for p in reference])
    groups = hearing.feature_groups(reference[0])
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    print(machine_line(), flush=True)
    for seed in seeds:
        g = {**generate, "seed": seed}
        ids = loaded.family.sample(loaded.model, loaded.rep, request_from(g, num=len(test)), loaded.device)
        with tempfile.TemporaryDirectory() as tmp:
            files = write_pieces(ids, loaded.rep, tmp, context=context_from(g), keys=keys, seed=seed)
            heard = [hearing.listen(hearing.read_piece(f)) for f in files]
        gen_rows = np.array([hearing.feature_vector(p) for p in heard])
        c2st = hearing.c2st(gen_rows, ref_rows, evaluate["classifier_folds"], evaluate["classifier_resamples"], seed)
        tv = hearing.compare(heard, reference)["tv"]["voice_count"]
        rows.append({"seed": seed, "accuracy": c2st["accuracy"], "voice_count_tv": round(tv, 4)})
        if args.groups:
            rows[-1]["groups"] = by_group(groups, gen_rows, ref_rows, evaluate, seed)
        print(f"seed {seed}: classifier accuracy {c2st['accuracy']:.3f}, voice-count TV {tv:.3f}", flush=True)
    acc = np.array([r["accuracy"] for r in rows])
    summary = {"mean": round(float(acc.mean()), 4), "min": float(acc.min()), "max": float(acc.max())}
    print(
        f"{len(seeds)} seeds, {len(test)} pieces each: mean accuracy {summary['mean']:.3f} "
        f"({summary['min']:.3f} .. {summary['max']:.3f})"
    )
    if args.groups:
        print_groups(groups, rows, gen_rows, ref_rows)
    if args.out:
        Path(args.out).write_text(json.dumps({"seeds": rows, **summary}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
