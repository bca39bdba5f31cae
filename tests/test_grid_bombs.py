"""A tiny MIDI file cannot make a grid representation allocate gigabytes: the size of its grids
is computed from the note table before anything is built, and a piece over
preprocess.max_memory_mb (or max_duration_s) is rejected with the reason. The CLI's paths to a
grid (tokenize, reconstruct, interpolate) share the same check."""

from __future__ import annotations

import json
import resource
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import subprocess_env, vlq

from midigen.errors import MidiError
from midigen.generation.latent import file_window
from midigen.representations.grid import DrumGrid, MelodyGrid


def gap_bomb(gap_ticks: int, channel: int) -> bytes:
    """One tick per quarter, a 1 us tempo, two notes gap_ticks apart: 76 bytes or so."""
    on, off, pitch = 0x90 | channel, 0x80 | channel, 36 if channel == 9 else 60
    events = b"".join(
        [
            b"\x00\xff\x51\x03\x00\x00\x01",  # tempo: 1 microsecond per quarter
            b"\x00\xff\x58\x04\x04\x02\x18\x08",  # 4/4
            bytes([0, on, pitch, 100]),
            bytes([1, off, pitch, 0]),
            vlq(gap_ticks) + bytes([on, pitch, 100]),
            bytes([1, off, pitch, 0]),
            b"\x00\xff\x2f\x00",
        ]
    )
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, 1) + b"MTrk" + struct.pack(">I", len(events)) + events


CHILD = r"""
import json, sys
from pathlib import Path
from midigen.data.preprocess import preprocess
from midigen.params import DEFAULTS
from midigen.table import read_rows
manifest = [{"rel_path": Path(p).name, "path": p} for p in sys.argv[3:]]
rows = []
try:
    preprocess(manifest, {**DEFAULTS["preprocess"], "representation": sys.argv[1]}, Path(sys.argv[2]), workers=1)
except Exception as exc:  # no usable piece: the rejected table is still what we look at
    rows = [{"rel_path": "*", "reason": f"{type(exc).__name__}: {exc}"}]
rejected = rows or list(read_rows(Path(sys.argv[2]) / "rejected.csv"))
hwm_kb = next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
print(json.dumps({"rejected": rejected, "peak_mb": hwm_kb / 1024}))
"""

#: the child's address space: a grid of the bomb's size could not even be attempted below it
ADDRESS_SPACE = 3 * 1024**3


def limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


@pytest.mark.parametrize("representation,channel", [("drums", 9), ("melody", 0)])
@pytest.mark.parametrize("gap_ticks", [2**24, 2**28 - 1])  # 2**28 - 1: the longest delta MIDI can hold
def test_a_tiny_file_asking_for_gigabytes_of_grid_is_rejected_with_flat_memory(
    tmp_path, representation, channel, gap_ticks
):
    bomb = tmp_path / "bomb.mid"
    bomb.write_bytes(gap_bomb(gap_ticks, channel))
    assert bomb.stat().st_size < 100
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, representation, str(tmp_path / "tokens"), str(bomb)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limited,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    reasons = " ".join(r["reason"] for r in result["rejected"])
    assert "preprocess.max_memory_mb" in reasons, reasons
    assert result["peak_mb"] < 400, result  # what reading a 76-byte file may take, not GiB


def test_the_size_is_the_grids_a_real_file_builds_and_real_files_pass(tmp_path):
    from drum_corpus import write_gmd_like

    rows = write_gmd_like(tmp_path, 2)
    rep = DrumGrid()
    piece = rep.read_piece(tmp_path / rows[0]["midi_filename"])
    lines = [grid for grid, _ in rep._lines(piece)]
    assert rep.line_steps(piece).tolist() == [g.shape[0] for g in lines]
    assert rep.work_bytes(piece) < 5e6


def test_reconstruct_and_interpolate_refuse_the_bomb_before_building_its_grid(tmp_path):
    bomb = tmp_path / "bomb.mid"
    bomb.write_bytes(gap_bomb(2**28 - 1, 9))
    with pytest.raises(MidiError, match="preprocess.max_memory_mb"):
        file_window(bomb, DrumGrid())
    melody = tmp_path / "melody.mid"
    melody.write_bytes(gap_bomb(2**28 - 1, 0))
    with pytest.raises(MidiError, match="preprocess.max_memory_mb"):
        MelodyGrid().read_piece(melody)
    assert Path(bomb).exists()


def test_melody_windows_of_a_many_track_file_are_each_tracks_own(tmp_path):
    """Grouping notes by track in one pass (not one scan of every note per track) keeps every
    track's windows exactly what that track alone gives."""
    import dataclasses

    import numpy as np
    import pretty_midi

    rng = np.random.default_rng(0)
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    for t in range(40):
        inst = pretty_midi.Instrument(program=t % 8)
        start = float(rng.integers(0, 4)) * 0.5
        for k in range(int(rng.integers(8, 40))):
            s = start + 0.25 * k
            inst.notes.append(pretty_midi.Note(90, int(rng.integers(50, 80)), s, s + 0.25))
        pm.instruments.append(inst)
    path = tmp_path / "many.mid"
    pm.write(str(path))
    rep = MelodyGrid(bars=2)
    piece = rep.read_piece(path)
    together = rep.windows(piece)
    alone = []
    for track in rep.tracks(piece):
        only = dataclasses.replace(piece, notes=piece.notes[piece.notes["track"] == track])
        alone.append(rep.windows(only))
    assert len(rep.tracks(piece)) == 40
    np.testing.assert_array_equal(together, np.concatenate(alone))
