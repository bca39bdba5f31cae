"""Benchmark: how preprocessing and training start-up grow with the corpus (1k, 10k, 50k pieces).

The corpus is synthetic but made of real music: the Bach chorales of the music21 corpus
(exported by the ingest stage), each transposed by -5..+6 semitones and time-stretched by
0.75..1.25, written as MIDI files with midigen.data.midi_io.write_midi (piece i is chorale i mod 410
under variant i div 410, so every size is a prefix of the largest). For each size the real
stage scripts run as child processes in a scratch folder:

  ingest      data.max_pieces = N (listing + sha1 of each file)          -> time
  preprocess  all cores (data.workers = 0)                               -> time, peak memory
  split
  train       a tiny model, stopped at its first optimizer step          -> start-up time, peak memory

Peak memory is VmHWM from /proc/<pid>/status, read by the child itself as it exits (preprocess)
or by us just before stopping it (train); ru_maxrss would carry over the parent's peak across
exec. The pool workers' peaks are polled and shown separately. The last lines give each size's
ratio to the smallest: time should grow like the corpus, memory should not.

  python bench/scale.py                       # 1000,10000,50000 (the 50k corpus takes a while)
  python bench/scale.py --sizes 1000,5000     # quick
  python bench/scale.py --workdir /tmp/scale  # keep the corpus between runs (default: that folder)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, cores, machine_line  # noqa: E402

TRANSPOSE = tuple(range(-5, 7))  # 12 keys
STRETCH = tuple(np.round(np.linspace(0.75, 1.25, 11), 3))  # 11 tempi: 132 variants of each chorale
FIRST_STEP = "train: first optimizer step after"
HWM_MARK = "bench-vmhwm-kb:"

# a child that reports its own peak memory when it exits, whatever the stage script does
WRAPPER = (
    "import atexit, runpy, sys\n"
    "def hwm():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    f"            print('{HWM_MARK}', line.split()[1], file=sys.stderr, flush=True)\n"
    "atexit.register(hwm)\n"
    "sys.argv = [sys.argv[1]]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def vmhwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


# -- the synthetic corpus ---------------------------------------------------------------------


def chorales(work: Path) -> list[np.ndarray]:
    """The music21 Bach chorales as note arrays (exported once by the ingest stage's code)."""
    from midigen.data.ingest import ingest
    from midigen.data.midi_io import read_notes

    raw = work / "chorales"
    if not (raw / "manifest.csv").exists():
        shutil.rmtree(raw, ignore_errors=True)
        raw.mkdir(parents=True)
        manifest, _ = ingest("music21:bach", raw, 0, 0)
        manifest.to_csv(raw / "manifest.csv", index=False)
    paths = sorted((raw / "midi").rglob("*.mid"))
    return [read_notes(p) for p in paths]


def variant(notes: np.ndarray, i: int, n_base: int) -> np.ndarray:
    k = i // n_base
    shift, stretch = TRANSPOSE[k % len(TRANSPOSE)], STRETCH[(k // len(TRANSPOSE)) % len(STRETCH)]
    out = notes.copy()
    out["pitch"] = np.clip(out["pitch"] + shift, 0, 127)
    out["start_s"] *= stretch
    out["end_s"] *= stretch
    return out


_BASE: list[np.ndarray] = []


def _write(job: tuple[int, str]) -> None:
    from midigen.data.midi_io import write_midi

    i, path = job
    write_midi(variant(_BASE[i % len(_BASE)], i, len(_BASE)), path)


def corpus_path(corpus: Path, i: int) -> Path:
    return corpus / f"{i // 1000:03d}" / f"{i:06d}.mid"  # sorted paths = piece order


def build_corpus(work: Path, n: int) -> Path:
    """work/corpus with pieces 0..n-1 (only the missing ones are written)."""
    import multiprocessing as mp

    global _BASE
    corpus = work / "corpus"
    missing = [(i, str(corpus_path(corpus, i))) for i in range(n) if not corpus_path(corpus, i).exists()]
    if not missing:
        return corpus
    _BASE = chorales(work)
    for d in {Path(p).parent for _, p in missing}:
        d.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(cores()) as pool:
        for done, _ in enumerate(pool.imap_unordered(_write, missing, chunksize=64), 1):
            if done % 5000 == 0:
                print(f"  corpus: {done:,}/{len(missing):,} files written", flush=True)
    print(f"  corpus: wrote {len(missing):,} MIDI files in {time.perf_counter() - t0:.0f} s", flush=True)
    return corpus


# -- running the stages -----------------------------------------------------------------------


def stage_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME"):
        env.pop(var, None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_stage(name: str, cwd: Path, stop_at: str | None = None) -> dict:
    """Run stages/<name>.py in cwd; return wall seconds, own peak and the workers' peak (MB).
    With stop_at, stop the child (SIGTERM) once that line appears and time until then."""
    cmd = [sys.executable, "-c", WRAPPER, str(ROOT / "stages" / f"{name}.py")]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=stage_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
    )
    peaks: dict[int, int] = {}
    err: list[str] = []
    done = threading.Event()

    def poll() -> None:  # pool workers come and go: sample their peaks
        while not done.is_set():
            for c in children(proc.pid):
                peaks[c] = max(peaks.get(c, 0), vmhwm_kb(c))
            done.wait(0.05)

    threading.Thread(target=poll, daemon=True).start()
    threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True).start()
    out, wall, own = [], None, 0
    for line in proc.stdout:
        out.append(line)
        if stop_at and line.startswith(stop_at):
            wall = time.perf_counter() - t0
            own = vmhwm_kb(proc.pid)
            proc.terminate()
            break
    proc.wait()
    done.set()
    wall = wall if wall is not None else time.perf_counter() - t0
    if stop_at is None:
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed ({proc.returncode}):\n{''.join(out)}{''.join(err)[-3000:]}")
        time.sleep(0.1)  # the stderr reader may still hold the last line
        marks = [line for line in err if line.startswith(HWM_MARK)]
        own = int(marks[-1].split()[1]) if marks else 0
    elif own == 0:
        raise SystemExit(f"{name} ended before {stop_at!r}:\n{''.join(out)}{''.join(err)[-3000:]}")
    workers = max(peaks.values(), default=0)
    return {"s": wall, "mb": own / 1024, "worker_mb": workers / 1024, "out": "".join(out)}


def prepare_run(work: Path, corpus: Path, n: int) -> Path:
    run = work / "runs" / str(n)
    shutil.rmtree(run, ignore_errors=True)
    (run / "metrics").mkdir(parents=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["data"].update(source=str(corpus), watch=str(corpus), max_pieces=n, workers=0)
    params["model"].update(emb_dim=16, hidden_dim=32, num_layers=1, dropout=0.0)
    params["train"].update(epochs=1, batch_size=8, seq_len=64, threads=1, device="cpu", nproc=1)
    (run / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return run


def measure(work: Path, corpus: Path, n: int) -> dict:
    run = prepare_run(work, corpus, n)
    ingest = run_stage("ingest", run)
    pre = run_stage("preprocess", run)
    run_stage("split", run)
    train = run_stage("train", run, stop_at=FIRST_STEP)
    data = json.loads((run / "metrics/data.json").read_text(encoding="utf-8"))
    tokens_mb = (run / "data/tokens/tokens.bin").stat().st_size / 1e6
    shutil.rmtree(run / "data/tokens", ignore_errors=True)  # the big part; the corpus stays for next time
    return {
        "pieces": data["pieces"],
        "tokens": data["tokens"],
        "tokens_mb": tokens_mb,
        "ingest_s": ingest["s"],
        "pre_s": pre["s"],
        "pre_mb": pre["mb"],
        "pre_worker_mb": pre["worker_mb"],
        "start_s": train["s"],
        # of which inside train_model (sampler, model, resume check): the rest is imports,
        # reading the index and split, the data fingerprint and opening the MLflow run
        "start_in_trainer_s": float(train["out"].split(FIRST_STEP)[1].split()[0]),
        "train_mb": train["mb"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000,50000", help="comma-separated corpus sizes (pieces)")
    ap.add_argument("--workdir", default="/tmp/midigen_scale", help="scratch folder; the corpus is kept there")
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)
    print(machine_line())
    corpus = build_corpus(work, sizes[-1])
    rows = []
    for n in sizes:
        print(f"-- {n:,} pieces", flush=True)
        r = measure(work, corpus, n)
        rows.append(r)
        print(
            f"   ingest {r['ingest_s']:.1f} s | preprocess {r['pre_s']:.1f} s, peak {r['pre_mb']:.0f} MB "
            f"(workers {r['pre_worker_mb']:.0f} MB) | {r['tokens']:,} tokens ({r['tokens_mb']:.0f} MB) | "
            f"train start-up {r['start_s']:.1f} s ({r['start_in_trainer_s']:.2f} s in train_model), "
            f"peak {r['train_mb']:.0f} MB",
            flush=True,
        )
    print()
    print(
        "| pieces | tokens | ingest s | preprocess s | ms/piece | peak MB (main / worker) | train start-up s | ", end=""
    )
    print("train peak MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['pieces']:,} | {r['tokens']:,} | {r['ingest_s']:.1f} | {r['pre_s']:.1f} | "
            f"{1000 * r['pre_s'] / r['pieces']:.2f} | {r['pre_mb']:.0f} / {r['pre_worker_mb']:.0f} | "
            f"{r['start_s']:.1f} | {r['train_mb']:.0f} |"
        )
    base = rows[0]
    print()
    for r in rows[1:]:
        print(
            f"{r['pieces'] / base['pieces']:.1f}x the pieces: preprocess time {r['pre_s'] / base['pre_s']:.2f}x, "
            f"preprocess peak memory {r['pre_mb'] / base['pre_mb']:.2f}x "
            f"(workers {r['pre_worker_mb'] / max(base['pre_worker_mb'], 1e-9):.2f}x), "
            f"train start-up {r['start_s'] / base['start_s']:.2f}x, "
            f"train peak memory {r['train_mb'] / base['train_mb']:.2f}x"
        )


if __name__ == "__main__":
    main()
