"""read_notes (symusic + our tempo map) agrees with pretty_midi, and with hand-computed times."""

from __future__ import annotations

import mido
import numpy as np
import pretty_midi
import pytest

from midigen.data.midi_io import make_notes, read_notes, ticks_to_seconds, write_midi
from midigen.errors import MidiError

TPQ = 480
# (tick, microseconds per quarter): 120 bpm, 80 bpm, 150 bpm, an odd 98.0 bpm, 61 bpm
TEMPO_MAP = [(0, 500000), (960, 750000), (2400, 400000), (3000, 612245), (5000, 983607)]
# (track, pitch, start tick, end tick, velocity); some notes span a tempo change
TEMPO_NOTES = [
    (1, 60, 0, 480, 80),
    (1, 64, 240, 1200, 90),  # spans 960
    (1, 67, 960, 1440, 100),
    (1, 72, 2300, 2500, 70),  # spans 2400
    (1, 60, 2999, 3001, 60),  # spans 3000
    (2, 40, 0, 6000, 50),  # spans every change
    (2, 43, 4321, 5123, 55),
    (2, 45, 5000, 5000 + 7, 65),
]


def seconds_at(tick: int) -> float:
    """Independent tick -> seconds through TEMPO_MAP."""
    t = 0.0
    for (t0, mspq), (t1, _) in zip(TEMPO_MAP, TEMPO_MAP[1:] + [(10**9, 0)], strict=True):
        if tick <= t0:
            break
        t += (min(tick, t1) - t0) * mspq / 1e6 / TPQ
    return t


@pytest.fixture(scope="module")
def tempo_change_file(tmp_path_factory):
    """A type-1 file built with mido: tempo map in track 0, notes in two tracks (note_on vel 0 as off)."""
    mid = mido.MidiFile(type=1, ticks_per_beat=TPQ)
    conductor = mido.MidiTrack()
    last = 0
    for tick, mspq in TEMPO_MAP:
        conductor.append(mido.MetaMessage("set_tempo", tempo=mspq, time=tick - last))
        last = tick
    conductor.append(mido.MetaMessage("end_of_track", time=0))
    mid.tracks.append(conductor)
    for track_no, program in ((1, 0), (2, 33)):
        events = []
        for tr, pitch, on, off, vel in TEMPO_NOTES:
            if tr == track_no:
                events.append((on, 1, mido.Message("note_on", note=pitch, velocity=vel, channel=track_no)))
                events.append((off, 0, mido.Message("note_on", note=pitch, velocity=0, channel=track_no)))
        events.sort(key=lambda e: (e[0], e[1]))
        track = mido.MidiTrack([mido.Message("program_change", program=program, channel=track_no, time=0)])
        last = 0
        for tick, _, msg in events:
            track.append(msg.copy(time=tick - last))
            last = tick
        mid.tracks.append(track)
    path = tmp_path_factory.mktemp("tempo") / "tempo_changes.mid"
    mid.save(str(path))
    return path


def pretty_midi_notes(path) -> np.ndarray:
    pm = pretty_midi.PrettyMIDI(str(path))
    rows = [(n.start, n.end, n.pitch) for inst in pm.instruments for n in inst.notes]
    arr = np.array(rows, dtype=[("start", "f8"), ("end", "f8"), ("pitch", "i8")])
    return arr[np.lexsort((arr["pitch"], arr["start"]))]


def assert_agrees_with_pretty_midi(path):
    ours = read_notes(path)
    theirs = pretty_midi_notes(path)
    assert ours.shape[0] == theirs.shape[0], f"{path.name}: {ours.shape[0]} notes vs pretty_midi {theirs.shape[0]}"
    assert ours["pitch"].tolist() == theirs["pitch"].tolist()
    assert np.max(np.abs(ours["start_s"] - theirs["start"])) <= 1e-6
    # both parsers pair note-offs the same way on these files
    assert np.max(np.abs(np.sort(ours["end_s"]) - np.sort(theirs["end"]))) <= 1e-6


def test_read_notes_agrees_with_pretty_midi_on_chorales(chorale_paths):
    for path in chorale_paths:
        assert_agrees_with_pretty_midi(path)


def test_read_notes_agrees_with_pretty_midi_across_tempo_changes(tempo_change_file):
    assert_agrees_with_pretty_midi(tempo_change_file)


def test_read_notes_matches_hand_computed_times_across_tempo_changes(tempo_change_file):
    notes = read_notes(tempo_change_file)
    expected = sorted((seconds_at(on), seconds_at(off), p, v) for _, p, on, off, v in TEMPO_NOTES)
    got = sorted(
        zip(
            notes["start_s"].tolist(),
            notes["end_s"].tolist(),
            notes["pitch"].tolist(),
            notes["velocity"].tolist(),
            strict=True,
        )
    )
    assert len(got) == len(expected)
    for (gs, ge, gp, gv), (es, ee, ep, ev) in zip(got, expected, strict=True):
        assert (gp, gv) == (ep, ev)
        assert gs == pytest.approx(es, abs=1e-9) and ge == pytest.approx(ee, abs=1e-9)
    # the bass note spanning every change ends at the hand-computed time, not at 6000 ticks of 120 bpm
    assert seconds_at(6000) != pytest.approx(6000 / TPQ * 0.5)
    assert notes["program"][notes["pitch"] == 40].tolist() == [33]


def test_read_notes_sorts_by_start_then_pitch(chorale_paths):
    notes = read_notes(chorale_paths[0])
    order = np.lexsort((notes["pitch"], notes["start_s"]))
    assert (order == np.arange(notes.shape[0])).all()


def test_ticks_to_seconds_assumes_120_bpm_before_the_first_tempo():
    secs = ticks_to_seconds(np.array([0, 480, 960, 1440]), np.array([960]), np.array([1_000_000.0]), 480)
    assert secs.tolist() == pytest.approx([0.0, 0.5, 1.0, 2.0])


def test_read_notes_raises_midi_error_with_max_notes(chorale_paths):
    with pytest.raises(MidiError, match="max_notes"):
        read_notes(chorale_paths[0], max_notes=10)


def test_write_midi_then_read_notes_keeps_notes_and_instruments(tmp_path):
    notes = make_notes([0.0, 0.25, 1.5], [0.5, 2.0, 1.75], [60, 36, 64], velocity=[10, 127, 64], program=[0, 33, 0])
    notes["is_drum"][2] = True
    write_midi(notes, tmp_path / "out" / "x.mid")
    back = read_notes(tmp_path / "out" / "x.mid")
    assert back["pitch"].tolist() == [60, 36, 64]
    assert back["start_s"].tolist() == pytest.approx([0.0, 0.25, 1.5], abs=1e-3)
    assert back["end_s"].tolist() == pytest.approx([0.5, 2.0, 1.75], abs=1e-3)
    assert back["velocity"].tolist() == [10, 127, 64]
    assert back["program"][:2].tolist() == [0, 33]
    assert back["is_drum"].tolist() == [False, False, True]
