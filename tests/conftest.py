"""Shared fixtures: real Bach chorales exported to MIDI once per session, plus small helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

# Five chorales of different lengths; bwv66.6 and bwv1.6 contain unison notes between voices.
CHORALES = ("bach/bwv66.6", "bach/bwv1.6", "bach/bwv4.8", "bach/bwv10.7", "bach/bwv11.6")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "pipeline: end-to-end `dvc repro` in a temporary git repo (slow; select with -m pipeline)"
    )


@pytest.fixture(scope="session")
def chorale_dir(tmp_path_factory) -> Path:
    """A folder of real Bach chorales exported to MIDI with music21."""
    from music21 import corpus

    out = tmp_path_factory.mktemp("chorales")
    for name in CHORALES:
        score = corpus.parse(name)
        score.write("midi", fp=str(out / (name.split("/")[1] + ".mid")))
    return out


@pytest.fixture(scope="session")
def chorale_paths(chorale_dir) -> list[Path]:
    paths = sorted(chorale_dir.glob("*.mid"))
    assert len(paths) == len(CHORALES)
    return paths


@pytest.fixture(scope="session")
def bach_corpus(tmp_path_factory) -> list[Path]:
    """Every Bach chorale of the music21 corpus, exported to MIDI as the ingest stage does
    (about a minute on two cores): for properties that must hold on the whole corpus."""
    from midigen.data.ingest import ingest_music21

    out = tmp_path_factory.mktemp("bach")
    manifest, failed = ingest_music21("bach", out, 0, 2)
    assert len(failed) == 0, failed
    return sorted((out / "midi").rglob("*.mid"))


#: where tests keep Debian's openttd-openmsx between sessions (MIDIGEN_TEST_CACHE overrides)
TEST_CACHE = Path(os.environ.get("MIDIGEN_TEST_CACHE", Path.home() / ".cache" / "midigen-tests"))
OPENMSX_MIDI = Path("usr/share/games/openttd/baseset/openmsx")


def _fetch_openmsx(root: Path) -> str | None:
    """apt-get download + dpkg-deb -x of openttd-openmsx into root; why not, or None."""
    import shutil
    import tempfile

    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        return "apt-get and dpkg-deb are not available (not a Debian-like system)"
    with tempfile.TemporaryDirectory() as tmp:
        got = subprocess.run(
            ["apt-get", "download", "openttd-openmsx"], cwd=tmp, capture_output=True, text=True, timeout=300
        )
        debs = sorted(Path(tmp).glob("openttd-openmsx_*.deb"))
        if got.returncode or not debs:
            last = (got.stderr.strip().splitlines() or ["no .deb written"])[-1]
            return f"apt-get download openttd-openmsx failed ({last}; run apt-get update?)"
        part = root.with_name(root.name + ".part")
        shutil.rmtree(part, ignore_errors=True)
        part.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(part)], check=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)
        part.rename(root)  # complete or absent: an interrupted fetch is never taken for the corpus
    return None


@pytest.fixture(scope="session")
def openmsx_dir() -> Path:
    """Debian's openttd-openmsx (GPL-2): 31 real multi-track songs, 30 with a drum track (about
    30,000 hits, mostly 4/4, many with varied velocities, some played off the grid). Fetched
    once with apt into TEST_CACHE; the test is skipped, saying why, where apt cannot get it."""
    root = TEST_CACHE / "openmsx"
    midi = root / OPENMSX_MIDI
    if not any(midi.glob("*.mid")):
        reason = _fetch_openmsx(root)
        if reason:
            pytest.skip(f"real drum corpus unavailable: {reason}")
    return midi


@pytest.fixture(scope="session")
def folk_paths(tmp_path_factory) -> list[Path]:
    """Eight real folk melodies (music21's essenFolksong/teste.abc), exported to MIDI by ingest."""
    from music21 import corpus

    from midigen.data.ingest import export_music21_file

    out = tmp_path_factory.mktemp("folk")
    src = next(p for p in corpus.getComposer("essenFolksong") if p.name == "teste.abc")
    results = export_music21_file((str(src), str(out), "essen"))
    assert all(reason is None for _, reason in results), results
    return sorted(out.glob("essen/*.mid"))


#: what the tests of folder sources (hostile, edge-case and real-world MIDI files) tokenize
#: with: events takes any MIDI file; the default, voices, only four-part scores
FOLDER_REPRESENTATION = "events"


def folder_preprocess_params() -> dict:
    """params.yaml's preprocess section as the pipeline uses it for a folder of MIDI files, with
    the events representation (any MIDI file, where the default voices wants four-part scores)
    and preprocess.time_unit auto made concrete: seconds, as for data.source = a folder."""
    from midigen.params import load_params, resolve_time_unit

    params = load_params(PROJECT_ROOT / "params.yaml")["preprocess"]
    return resolve_time_unit({**params, "representation": "events"}, "a/folder")


def subprocess_env() -> dict[str, str]:
    """Environment for child processes: the venv's bin first on PATH, no DVC analytics."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def write_pretty_midi(path: Path, notes: list[tuple[int, float, float]], program: int = 0, velocity: int = 90) -> Path:
    """Write (pitch, start, end) triples to a one-instrument MIDI file with pretty_midi."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program)
    for pitch, start, end in notes:
        inst.notes.append(pretty_midi.Note(velocity=velocity, pitch=int(pitch), start=float(start), end=float(end)))
    pm.instruments.append(inst)
    path.parent.mkdir(parents=True, exist_ok=True)
    pm.write(str(path))
    return path


def random_melody(seed: int, n: int = 24) -> list[tuple[int, float, float]]:
    """A short reproducible melody with irregular timing."""
    rng = np.random.default_rng(seed)
    t = 0.0
    out = []
    for _ in range(n):
        dur = float(rng.uniform(0.1, 0.6))
        out.append((int(rng.integers(48, 84)), t, t + dur))
        t += float(rng.uniform(0.05, 0.5))
    return out


# -- scores: the notes of a MIDI file and of its MusicXML, in quarter notes ---------------------


def midi_notes(path) -> list[tuple[int, int, Fraction, Fraction]]:
    """(track, pitch, onset, duration) of every note of a MIDI file, in quarter notes from its ticks;
    a pitch struck twice at once in one track counts once (a score has one note for it)."""
    from midigen.data.midi_io import read_tick_notes

    t = read_tick_notes(path)
    return sorted(
        {
            (int(k), int(p), Fraction(int(a), t.tpq), Fraction(int(b - a), t.tpq))
            for k, p, a, b in zip(t.track, t.pitch, t.start_tick, t.end_tick, strict=True)
        }
    )


def score_notes(path) -> list[tuple[int, int, Fraction, Fraction]]:
    """(part number, pitch, onset, duration) of every note of a MusicXML file."""
    from midigen.export.musicxml import read_musicxml_notes

    rows = read_musicxml_notes(path)
    names = list(dict.fromkeys(name for name, *_ in rows))
    return sorted((names.index(name), p, o, d) for name, p, o, d in rows)


def nabiya_project(root: Path, representation: str = "pitch_duration", **preprocess_params) -> dict:
    """A project folder as the pipeline leaves it after train, on builtin:nabiya's one 54-note
    song: params.yaml (the shipped one, tiny model and training, the song's pitch range),
    data/tokens, data/split.csv and models/best.pt (one epoch, the data fingerprint the train
    stage passes, and its checkpoint entries: the training pieces' keys). `preprocess_params`: more
    preprocess params. Returns the params. Seconds on one core."""
    import pandas as pd
    import yaml

    from midigen.data import keys
    from midigen.data.dataset import load_split_data
    from midigen.data.ingest import ingest
    from midigen.data.preprocess import preprocess
    from midigen.data.split import make_split
    from midigen.training.loop import train_model

    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["data"]["source"] = "builtin:nabiya"
    params["preprocess"].update(representation=representation, pitch_min=55, pitch_max=84, **preprocess_params)
    params["model"] = {**params["model"], **TINY_MODEL}
    params["train"] = {**params["train"], **TINY_TRAIN, "epochs": 1}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    manifest, _ = ingest("builtin:nabiya", root / "data/raw")
    preprocess(manifest.to_dict("records"), params["preprocess"], root / "data/tokens", workers=1)
    split, _ = make_split(pd.read_csv(root / "data/tokens/index.csv"), 0.1, 0.1, 1234, True)
    split.to_csv(root / "data/split.csv", index=False)
    data = load_split_data(root / "data/tokens", root / "data/split.csv")
    stream = data.stream("train")
    extra = keys.checkpoint_entry(data.pieces("train"))
    train_model(data.store.representation, stream, stream, params, root / "models", data.fingerprint(), extra=extra)
    return params


# -- train / generate / evaluate ("Event-token LSTM") ------------------------------------------

#: the piano range of params.yaml, so token ids match what the pipeline produces
PITCH_MIN, PITCH_MAX = 21, 108

#: a model and a training run small enough for a few seconds on one CPU core
TINY_MODEL = {"kind": "lstm", "emb_dim": 16, "hidden_dim": 32, "num_layers": 1, "dropout": 0.0}
TINY_TRAIN = {
    "epochs": 2,
    "batch_size": 4,
    "seq_len": 32,
    "lr": 0.003,
    "weight_decay": 0.01,
    "grad_clip": 1.0,
    "schedule": "cosine",
    "warmup_steps": 5,
    "transpose": 0,
    "stateful": False,
    "seed": 42,
    "device": "cpu",
    # one thread: fast on a busy 2-core machine (OpenMP threads otherwise fight over the cores)
    "threads": 1,
    "nproc": 1,
    "compile": "never",
}


def tiny_params(model: dict | None = None, **train) -> dict:
    """params["model"] and params["train"] for train_model, with train keys overridden."""
    return {"model": {**TINY_MODEL, **(model or {})}, "train": {**TINY_TRAIN, **train}}


@pytest.fixture(scope="session")
def event_rep():
    from midigen.representations import EventRepresentation

    return EventRepresentation(0.05, 100, 0, PITCH_MIN, PITCH_MAX)


@pytest.fixture(scope="session")
def chorale_ids(chorale_paths, event_rep) -> list[np.ndarray]:
    """Each session chorale encoded as the pipeline would (<BOS> ... <EOS>), as int64 ids."""
    from midigen.data.midi_io import read_notes

    return [event_rep.encode(read_notes(p)).astype(np.int64) for p in chorale_paths]


@pytest.fixture(scope="session")
def chorale_streams(chorale_ids) -> tuple[np.ndarray, np.ndarray]:
    """(train stream, val stream): four chorales back to back, and the fifth."""
    return np.concatenate(chorale_ids[:4]), chorale_ids[4]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, chorale_streams, event_rep):
    """One tiny train_model run on the chorales: (out_dir, TrainResult, params)."""
    from midigen.training.loop import train_model

    out_dir = tmp_path_factory.mktemp("trained")
    params = tiny_params()
    train, val = chorale_streams
    result = train_model(event_rep, train, val, params, out_dir, data_fingerprint="chorales")
    return out_dir, result, params


#: a GrooVAE small enough for a few seconds on one CPU core
TINY_GROOVAE = {
    "kind": "musicvae",
    "emb_dim": 16,
    "hidden_dim": 0,
    "num_layers": 1,
    "enc_layers": 0,
    "dec_layers": 0,
    "dropout": 0.0,
    "decoder": "flat",
    "z_dim": 16,
    "enc_hidden": 32,
    "conductor_hidden": 32,
    "dec_hidden": 32,
    "preset": "none",
}


@pytest.fixture(scope="session")
def tiny_groovae(tmp_path_factory):
    """A GrooVAE (2-bar windows, trained with input_transform humanize) trained for two epochs on
    drum performances built by tests/drum_corpus.py: (best.pt, the MIDI files it learnt from,
    one per groove)."""
    import torch
    from drum_corpus import GROOVES, drum_bars, write_drum_midi

    from midigen.representations.groove import GrooveGrid
    from midigen.training.loop import train_model

    root = tmp_path_factory.mktemp("grooves")
    rng = np.random.default_rng(0)
    files = [write_drum_midi(root / f"{g}.mid", drum_bars(g, 8, rng), 96 + 8 * i) for i, g in enumerate(GROOVES)]
    rep = GrooveGrid(bars=2)
    windows = np.concatenate([rep.windows_with_starts(rep.read_piece(f), hop_bars=1)[0] for f in files])
    train = {**TINY_TRAIN, "batch_size": 8, "max_beta": 0.2, "beta_rate": 0.99, "free_bits": 0.0}
    params = {"model": TINY_GROOVAE, "train": {**train, "input_transform": "humanize"}}
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train_model(rep, windows.astype(np.int64), windows[:4].astype(np.int64), params, root / "out", "drums")
    finally:
        torch.set_num_threads(before)
    return result.best_path, files


@pytest.fixture(scope="session")
def studio_workspace(trained_run, tiny_groovae, tmp_path_factory) -> Path:
    """A folder with models/: the tiny LSTM as best.pt, the tiny GrooVAE as groove.pt and a
    notes.pt that is no checkpoint (what `midigen studio` finds there)."""
    import shutil

    root = tmp_path_factory.mktemp("studio")
    (root / "models").mkdir()
    shutil.copy(trained_run[1].best_path, root / "models" / "best.pt")
    shutil.copy(tiny_groovae[0], root / "models" / "groove.pt")
    (root / "models" / "notes.pt").write_text("not a checkpoint")
    return root


@pytest.fixture(scope="module")
def torch_one_thread():
    """Torch on one CPU thread for a module: tiny models run faster than with threads that
    compete for 2 busy cores, and results do not depend on the machine's core count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- raw MIDI bytes and stage scripts run as a user would ----------------------------------------


def vlq(n: int) -> bytes:
    """A MIDI variable-length quantity (delta times, meta lengths): 7 bits a byte, high bit = more."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def stage_workdir(tmp_path: Path, source: Path, workers: int = 2) -> Path:
    """tmp_path/work with the project's params.yaml reading data.source from `source`."""
    import yaml

    work = tmp_path / "work"
    work.mkdir()
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["data"].update(source=str(source), workers=workers)
    params["preprocess"]["representation"] = FOLDER_REPRESENTATION
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return work


def run_stage(work: Path, name: str, timeout: float) -> subprocess.CompletedProcess:
    """stages/<name>.py in `work`, as DVC would run it; timeout only catches a hang."""
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "stages" / f"{name}.py")],
        cwd=work,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stop_process_group(proc: subprocess.Popen, grace_s: float) -> None:
    """End a server started with start_new_session=True: SIGTERM its group, SIGKILL after grace_s."""
    import signal

    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
