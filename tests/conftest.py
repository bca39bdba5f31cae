"""Shared fixtures: real Bach chorales exported to MIDI once per session, plus small helpers."""

from __future__ import annotations

import os
import sys
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
