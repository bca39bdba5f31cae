"""Benchmark: MIDI -> tokens, reference-style baseline vs midigen.data.preprocess. Prints the speed-up.

Baseline (our fresh rewrite of the reference design's algorithm, single process):
  for each file: pretty_midi.PrettyMIDI(path); collect (note.start, "NOTE_ON_p") and
  (note.end, "NOTE_OFF_p") from every instrument; sort by time; emit "<BOS>", then per event
  steps = int(round((t - prev_t) / 0.05)) as "TIME_SHIFT_k" chunks of at most 100, the event
  string, prev_t = t; then "<EOS>". Afterwards build a vocab in data order (first appearance,
  then <PAD>/<BOS>/<EOS> if missing), encode with vocab.get(t, pad_id) and json.dump
  {"vocab": ...} and {"sequences": [...]} into a temporary folder.
Ours: midigen.data.preprocess.preprocess(manifest, params["preprocess"], out_dir, workers) into a
  temporary token store (symusic parser, vectorised encoder, process pool; workers 0 = all cores).

Each run is a fresh `python` subprocess timed by wall clock from the parent, so interpreter
start-up, imports and pool start-up count for both sides. The best (min) time of each side is
compared; ours' first (cold) run is shown too. Run from the project root:
  python bench/preprocess.py [--files N] [--ours-runs 3] [--baseline-runs 2] [--workers 0]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIDI_DIR = ROOT / "data/raw/midi/bach"
MANIFEST = ROOT / "data/raw/manifest.csv"
TARGET = 10.0


def baseline(paths: list[str], out_dir: Path, step: float = 0.05, max_shift: int = 100) -> int:
    """The reference algorithm; returns the number of tokens written."""
    import pretty_midi

    sequences: list[list[str]] = []
    for path in paths:
        pm = pretty_midi.PrettyMIDI(path)
        events: list[tuple[float, str]] = []
        for inst in pm.instruments:
            for note in inst.notes:
                events.append((note.start, f"NOTE_ON_{note.pitch}"))
                events.append((note.end, f"NOTE_OFF_{note.pitch}"))
        events.sort(key=lambda e: e[0])
        tokens, prev_t = ["<BOS>"], 0.0
        for t, event in events:
            steps = int(round((t - prev_t) / step))
            while steps > 0:
                k = min(steps, max_shift)
                tokens.append(f"TIME_SHIFT_{k}")
                steps -= k
            tokens.append(event)
            prev_t = t
        tokens.append("<EOS>")
        sequences.append(tokens)
    vocab: dict[str, int] = {}
    for tokens in sequences:
        for tok in tokens:
            vocab.setdefault(tok, len(vocab))
    for special in ("<PAD>", "<BOS>", "<EOS>"):
        vocab.setdefault(special, len(vocab))
    pad_id = vocab["<PAD>"]
    encoded = [[vocab.get(t, pad_id) for t in tokens] for tokens in sequences]
    with open(out_dir / "vocab.json", "w", encoding="utf-8") as f:
        json.dump({"vocab": vocab}, f)
    with open(out_dir / "sequences.json", "w", encoding="utf-8") as f:
        json.dump({"sequences": encoded}, f)
    return sum(len(seq) for seq in encoded)


def ours(manifest_csv: Path, out_dir: Path, workers: int) -> int:
    """midigen's preprocess stage on the same files; returns the number of tokens stored."""
    from midigen.data.preprocess import preprocess
    from midigen.params import load_params

    params = load_params(ROOT / "params.yaml", sections=("preprocess",))
    return preprocess(manifest_csv, params["preprocess"], out_dir / "tokens", workers=workers).tokens


def child(side: str, manifest_csv: Path, out_dir: Path, workers: int) -> None:
    """Subprocess entry point: run one side, print its token count as JSON."""
    t0 = time.perf_counter()
    if side == "baseline":
        with open(manifest_csv, newline="", encoding="utf-8") as f:
            tokens = baseline([row["path"] for row in csv.DictReader(f)], out_dir)
    else:
        tokens = ours(manifest_csv, out_dir, workers)
    print(json.dumps({"tokens": tokens, "work_s": time.perf_counter() - t0}))


def timed_run(side: str, manifest_csv: Path, tmp: Path, run: int, workers: int) -> tuple[float, dict]:
    """Run one side in a fresh interpreter; return (wall seconds, the child's report)."""
    out_dir = tmp / f"{side}{run}"
    out_dir.mkdir()
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        side,
        "--manifest",
        str(manifest_csv),
        "--out",
        str(out_dir),
        "--workers",
        str(workers),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{side} run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=None, help="use only the first N files (default: all)")
    ap.add_argument("--ours-runs", type=int, default=3)
    ap.add_argument("--baseline-runs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0, help="ours' process count (0 = one per core)")
    ap.add_argument("--child", choices=("baseline", "ours"), help=argparse.SUPPRESS)
    ap.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.manifest, args.out, args.workers)
        return 0
    if not MIDI_DIR.is_dir() or not MANIFEST.is_file():
        print(
            f"{MIDI_DIR.relative_to(ROOT)} or {MANIFEST.relative_to(ROOT)} is missing: "
            "export the Bach chorales first with `dvc repro ingest`",
            file=sys.stderr,
        )
        return 2
    if args.files is not None and args.files < 1 or min(args.ours_runs, args.baseline_runs) < 1:
        ap.error("--files and the run counts must be >= 1")

    with open(MANIFEST, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames or [], list(reader)
    n_listed = len(rows)
    seen: set[str] = set()  # the manifest may list a file twice; time each file once on both sides
    rows = [
        r for r in rows if r["path"] not in seen and not seen.add(r["path"]) and (ROOT / r["path"]).parent == MIDI_DIR
    ]
    n_dupes = n_listed - len(seen)
    rows = rows[: args.files]
    if not rows:
        print(f"no manifest rows point into {MIDI_DIR.relative_to(ROOT)}: run `dvc repro ingest`", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="bench-preprocess-") as tmp_name:
        tmp = Path(tmp_name)
        subset = tmp / "manifest.csv"
        with open(subset, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        results = {
            side: [timed_run(side, subset, tmp, i, args.workers) for i in range(n)]
            for side, n in (("ours", args.ours_runs), ("baseline", args.baseline_runs))
        }

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = args.workers or cores
    print(
        f"files: {len(rows)} (manifest: {n_listed} rows, {n_dupes} duplicate skipped); "
        f"ours: {workers} worker(s) on {cores} core(s), baseline: 1 process"
    )
    print(f"{'side':<10}{'tokens':>10}{'best s':>9}{'first s':>9}{'work s':>9}  runs")
    best = {}
    for side, runs in results.items():
        walls = [w for w, _ in runs]
        best[side] = min(walls)
        rep = runs[walls.index(best[side])][1]
        print(
            f"{side:<10}{rep['tokens']:>10,}{best[side]:>9.2f}{walls[0]:>9.2f}{rep['work_s']:>9.2f}"
            f"  {', '.join(f'{w:.2f}' for w in walls)}"
        )
    ratio = best["baseline"] / best["ours"]
    print(f"speed-up: {ratio:.1f}x (target >= {TARGET:g}x)" + ("  BELOW TARGET" if ratio < TARGET else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
