"""The groove representation (GrooVAE): hits keep their velocities and timing offsets from the
file to the ids and back to MIDI; its hits are exactly the `drums` representation's; the task
transforms (humanize, tapify) do what Magenta's do. On built files and on real songs (Debian's
openttd-openmsx)."""

from __future__ import annotations

import numpy as np
import pretty_midi
import pytest
from drum_corpus import CLOSED_HH, KICK, SNARE

from midigen.data.midi_io import read_notes
from midigen.errors import MidiError
from midigen.representations import from_params, names
from midigen.representations.grid import DrumGrid
from midigen.representations.groove import (
    MAX_Q,
    OFFSET_RES,
    TAP_CLASS,
    GrooveGrid,
    cell_ids,
    cell_values,
    humanize_input,
    tapify_input,
)

BPM = 100.0
STEP_S = 60.0 / BPM / 4


def write_played(path, hits: list[tuple[int, int, int, float]], bars: int = 4, piano: bool = False):
    """(step, pitch, velocity, offset in steps) hits as a drum track at BPM, `bars` bars long."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=BPM)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    for step, pitch, velocity, offset in hits:
        t = (step + offset) * STEP_S
        drums.notes.append(pretty_midi.Note(velocity=velocity, pitch=pitch, start=t, end=t + STEP_S / 2))
    # a quiet hit on the last step keeps the file `bars` bars long
    drums.notes.append(pretty_midi.Note(velocity=1, pitch=KICK, start=(bars * 16 - 1) * STEP_S, end=bars * 16 * STEP_S))
    pm.instruments.append(drums)
    if piano:
        keys = pretty_midi.Instrument(program=0)
        for beat in range(bars * 4):
            keys.notes.append(
                pretty_midi.Note(velocity=60, pitch=60, start=beat * 4 * STEP_S, end=(beat * 4 + 2) * STEP_S)
            )
        pm.instruments.append(keys)
    pm.write(str(path))
    return path


#: a played bar: accents on the beat, ghost notes, a laid-back snare, a rushed hi-hat
PLAYED = [
    (0, KICK, 120, 0.0),
    (4, SNARE, 110, 0.25),
    (6, SNARE, 30, -0.125),
    (8, KICK, 95, 0.0625),
    (12, SNARE, 105, 0.3),
    *[(s, CLOSED_HH, 70 + 5 * (s % 4), -0.2 if s % 4 == 2 else 0.0) for s in range(0, 16, 2)],
]


def test_groove_is_a_registered_representation_with_nine_cells_per_step():
    assert "groove" in names()
    rep = from_params({"representation": "groove", "steps_per_quarter": 4, "bars": 2, "hop_bars": 1})
    assert isinstance(rep, GrooveGrid)
    assert rep.steps == 32 and rep.seq_len == 32 * 9 and rep.cells_per_step == 9
    assert rep.head == "groove" and rep.class_names == DrumGrid.class_names
    assert len(rep.vocab) == 1 + 128 * (2 * MAX_Q + 1)


def test_played_hits_keep_their_velocity_and_offset(tmp_path):
    path = write_played(tmp_path / "played.mid", PLAYED, bars=1)
    rep = GrooveGrid(bars=1)
    (window,) = rep.windows(rep.read_piece(path))
    hit, velocity, shift = rep.features(window[None])
    cls = {KICK: 0, SNARE: 1, CLOSED_HH: 2}
    for step, pitch, vel, offset in PLAYED:
        c = cls[pitch]
        assert hit[0, step, c]
        assert velocity[0, step, c] == vel
        # the file's ticks (220 per quarter) and the 1/64-step cells each round a little
        assert shift[0, step, c] == pytest.approx(offset, abs=1 / OFFSET_RES)
    assert hit.sum() == len(PLAYED) + 1  # and the last step's quiet kick


def test_decoded_midi_plays_the_velocities_and_shifted_onsets_on_channel_ten(tmp_path):
    rep = GrooveGrid(bars=1)
    src = write_played(tmp_path / "played.mid", PLAYED, bars=1)
    (window,) = rep.windows(rep.read_piece(src))
    out = tmp_path / "out.mid"
    rep.write_midi(window, out)
    pm = pretty_midi.PrettyMIDI(str(out))
    assert [inst.is_drum for inst in pm.instruments] == [True]
    notes = sorted(pm.instruments[0].notes, key=lambda n: (n.start, n.pitch))
    played = sorted(
        [(max(s + o, 0.0) * 60 / 120 / 4, p, v) for s, p, v, o in PLAYED] + [(15 * 60 / 120 / 4, KICK, 1)]
    )  # written at the default 120 bpm
    assert len(notes) == len(played)
    for note, (start, pitch, vel) in zip(notes, played, strict=True):
        assert note.pitch == pitch and note.velocity == vel
        assert note.start == pytest.approx(start, abs=60 / 120 / 4 / 32)
    assert len({n.velocity for n in notes}) > 5
    assert pm.get_end_time() == pytest.approx(4 * 60 / 120, abs=1e-3)


def test_of_two_hits_of_one_class_in_one_step_the_loudest_is_kept(tmp_path):
    path = write_played(tmp_path / "flam.mid", [(4, SNARE, 40, -0.3), (4, 40, 100, 0.1), (8, SNARE, 90, 0.0)], bars=1)
    rep = GrooveGrid(bars=1)
    hit, velocity, shift = rep.features(rep.windows(rep.read_piece(path)))
    assert hit[0, 4, 1] and velocity[0, 4, 1] == 100  # pitch 40 is a snare too (Magenta's map)
    assert shift[0, 4, 1] == pytest.approx(0.1, abs=1 / OFFSET_RES)


def test_cell_ids_round_trip_and_clip():
    hit = np.array([True, True, True, False])
    ids = cell_ids(hit, np.array([1, 127, 300, 50]), np.array([-0.5, 0.49, 0.2, 0.3]))
    got_hit, velocity, shift = cell_values(ids)
    assert got_hit.tolist() == [True, True, True, False]
    assert velocity.tolist() == [1, 127, 127, 0]
    assert shift[:3] == pytest.approx([-0.5, 0.484375, 0.203125])
    assert ids[3] == 0
    rep = GrooveGrid()
    assert rep.tokens_to_ids(rep.ids_to_tokens(ids)).tolist() == ids.tolist()
    assert rep.ids_to_tokens(ids[:1]) == ["HIT_V1_T-32"]


def test_humanize_input_zeroes_velocity_and_offset_and_tapify_keeps_the_loudest_hit(tmp_path):
    rep = GrooveGrid(bars=1)
    window = rep.windows(rep.read_piece(write_played(tmp_path / "p.mid", PLAYED, bars=1)))
    human = humanize_input(window)
    hit, velocity, shift = rep.features(human)
    assert (hit == rep.class_hits(window)).all() and not velocity.any() and not shift.any()

    tap = tapify_input(window)
    t_hit, t_velocity, t_shift = rep.features(tap)
    _, velocity, shift = rep.features(window)
    assert (t_hit[..., TAP_CLASS] == rep.onsets(window)).all()
    assert t_hit.sum() == rep.onsets(window).sum()  # one hit per step with any hit
    loudest = velocity.max(axis=-1)
    assert (t_velocity[..., TAP_CLASS] == loudest).all()
    # the tap at step 0 is the kick (120), not the hi-hat (70): its offset goes with it
    assert t_shift[0, 4, TAP_CLASS] == pytest.approx(0.25, abs=1 / OFFSET_RES)


def test_tap_piece_reads_every_note_of_the_file_as_one_rhythm(tmp_path):
    path = write_played(tmp_path / "band.mid", [(0, KICK, 100, 0.0), (6, SNARE, 80, 0.0)], bars=1, piano=True)
    rep = GrooveGrid(bars=1)
    (tap,) = rep.windows(rep.tap_piece(rep.read_piece(path)))
    hits = rep.class_hits(tap[None])[0]
    assert hits[:, TAP_CLASS].sum() == len({0, 4, 6, 8, 12, 15})  # piano beats, drums, last kick
    assert not np.delete(hits, TAP_CLASS, axis=1).any()


def test_a_file_without_drums_or_in_three_four_says_why(tmp_path):
    rep = GrooveGrid()
    pm = pretty_midi.PrettyMIDI()
    pm.instruments.append(pretty_midi.Instrument(program=0))
    pm.instruments[0].notes.append(pretty_midi.Note(velocity=80, pitch=60, start=0, end=1))
    pm.write(str(tmp_path / "piano.mid"))
    with pytest.raises(MidiError, match="no drum track"):
        rep.windows(rep.read_piece(tmp_path / "piano.mid"))


def test_on_real_songs_the_hits_are_the_drums_tokens_and_the_playing_is_kept(openmsx_dir):
    groove, drums = GrooveGrid(), DrumGrid()
    velocities, off_grid, windows = set(), 0, 0
    for path in sorted(openmsx_dir.glob("*.mid")):
        try:
            w = groove.windows(groove.read_piece(path))
        except MidiError:
            continue
        assert (groove.step_ids(w) == drums.windows(drums.read_piece(path))).all(), path.name
        hit, velocity, shift = groove.features(w)
        notes = read_notes(path)
        assert set(np.unique(velocity[hit])) <= set(notes["velocity"][notes["is_drum"]].tolist()), path.name
        velocities |= set(velocity[hit].tolist())
        off_grid += int((shift[hit] != 0).sum())
        windows += w.shape[0]
    assert windows > 1000
    assert len(velocities) > 40  # real dynamics, not one velocity
    assert off_grid > 1000  # and real timing: several songs are played off the grid
