"""No drift: onsets stay within half a step of the original over a 30-minute piece.

Rounding every gap to the grid separately (the seed design) lets the rounding errors add up like a
random walk; the tests also rebuild that naive reconstruction on the same data and show it drifts,
so they would catch a return to per-gap rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

from midigen.data.midi_io import make_notes, read_notes
from midigen.representations import EventRepresentation

TIME_STEP = 0.05
EPS = 1e-9
PITCHES = np.arange(48, 72)  # several pitches that overlap in time


@pytest.fixture(scope="module")
def long_piece() -> np.ndarray:
    """~30 minutes, ~7100 notes at irregular float times with overlapping pitches (fixed seed)."""
    rng = np.random.default_rng(20240601)
    gaps = rng.uniform(0.013, 0.49, size=8000)
    starts = np.cumsum(gaps)
    starts = starts[starts < 1800.0]
    durations = rng.uniform(0.02, 1.7, size=starts.shape[0])
    pitch = rng.choice(PITCHES, size=starts.shape[0])
    notes = make_notes(starts, starts + durations, pitch, velocity=rng.integers(30, 120, size=starts.shape[0]))
    assert notes["start_s"].max() > 1790 and notes.shape[0] > 3000
    return notes


def _per_gap_rounding_max_error(times: np.ndarray, time_step: float) -> float:
    """The seed's scheme: round each gap between consecutive events, rebuild times by summing."""
    times = np.sort(times)
    shifts = np.rint(np.diff(times, prepend=0.0) / time_step)
    rebuilt = np.cumsum(shifts) * time_step
    return float(np.max(np.abs(rebuilt - times)))


def _assert_onsets_within_half_a_step(original: np.ndarray, decoded: np.ndarray, time_step: float) -> None:
    """Per pitch: as many decoded notes as distinct grid steps, each original onset near a decoded one."""
    worst = 0.0
    for pitch in np.unique(original["pitch"]):
        orig = np.sort(original["start_s"][original["pitch"] == pitch])
        dec = np.sort(decoded["start_s"][decoded["pitch"] == pitch])
        assert dec.shape[0] == np.unique(np.rint(orig / time_step)).shape[0], f"pitch {pitch}: note count changed"
        idx = np.clip(np.searchsorted(dec, orig), 1, dec.shape[0] - 1)
        nearest = np.minimum(np.abs(dec[idx] - orig), np.abs(dec[idx - 1] - orig))
        worst = max(worst, float(nearest.max()))
    assert set(np.unique(decoded["pitch"]).tolist()) == set(np.unique(original["pitch"]).tolist())
    assert worst <= time_step / 2 + EPS, f"an onset moved by {worst:.4f} s (> half a step {time_step / 2})"


def test_per_gap_rounding_would_drift_on_this_piece(long_piece):
    """The control: the naive reconstruction exceeds half a step on the very same data."""
    events = np.concatenate([long_piece["start_s"], long_piece["end_s"]])
    assert _per_gap_rounding_max_error(events, TIME_STEP) > TIME_STEP / 2
    assert _per_gap_rounding_max_error(long_piece["start_s"], TIME_STEP) > TIME_STEP / 2


def test_note_array_keeps_every_onset_within_half_a_step_for_thirty_minutes(long_piece):
    rep = EventRepresentation(TIME_STEP, 100, 0, 0, 127)
    decoded = rep.decode(rep.encode(long_piece))
    _assert_onsets_within_half_a_step(long_piece, decoded, TIME_STEP)
    # the last notes are the ones a drifting scheme would misplace most
    late = long_piece[long_piece["start_s"] > 1700]
    assert late.shape[0] > 100
    _assert_onsets_within_half_a_step(late, decoded[decoded["start_s"] > 1700 - TIME_STEP], TIME_STEP)


def test_midi_file_keeps_every_onset_within_half_a_step_for_thirty_minutes(long_piece, tmp_path):
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(resolution=960, initial_tempo=120.0)
    inst = pretty_midi.Instrument(program=0)
    for n in long_piece:
        inst.notes.append(
            pretty_midi.Note(
                velocity=int(n["velocity"]), pitch=int(n["pitch"]), start=float(n["start_s"]), end=float(n["end_s"])
            )
        )
    pm.instruments.append(inst)
    path = tmp_path / "thirty_minutes.mid"
    pm.write(str(path))

    read = read_notes(path)
    assert read.shape[0] == long_piece.shape[0]
    # reading back is itself drift-free: every onset within one tick of what was written
    tick = 0.5 / 960
    assert np.max(np.abs(np.sort(read["start_s"]) - np.sort(long_piece["start_s"]))) <= tick
    assert _per_gap_rounding_max_error(read["start_s"], TIME_STEP) > TIME_STEP / 2

    rep = EventRepresentation(TIME_STEP, 100, 0, 0, 127)
    decoded = rep.decode(rep.encode(read))
    _assert_onsets_within_half_a_step(read, decoded, TIME_STEP)


@pytest.mark.parametrize("time_step", [0.01, 0.03, 0.1])
def test_onsets_stay_within_half_a_step_on_other_grids(long_piece, time_step):
    rep = EventRepresentation(time_step, 37, 0, 0, 127)
    decoded = rep.decode(rep.encode(long_piece))
    _assert_onsets_within_half_a_step(long_piece, decoded, time_step)
