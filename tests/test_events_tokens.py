"""Token ordering rules and vocabulary of the event representation, on hand-built note arrays."""

from __future__ import annotations

import numpy as np
import pytest

from midigen.data.midi_io import empty_notes, make_notes
from midigen.representations import BOS, EOS, PAD, EventRepresentation, from_config, from_params


def tokens(rep, notes) -> list[str]:
    return rep.ids_to_tokens(rep.encode(notes))


def notes_of(*rows, velocity=100):
    """rows of (pitch, start, end)."""
    pitch, start, end = zip(*rows, strict=True)
    return make_notes(list(start), list(end), list(pitch), velocity=velocity)


@pytest.fixture
def rep():
    return EventRepresentation(time_step=0.05, max_shift_steps=100, velocity_bins=0, pitch_min=0, pitch_max=127)


def test_empty_notes_encode_to_bos_eos_only(rep):
    assert rep.encode(empty_notes()).tolist() == [BOS, EOS]
    assert len(rep.decode(np.array([BOS, EOS]))) == 0


def test_simple_melody_encodes_to_the_expected_tokens(rep):
    got = tokens(rep, notes_of((60, 0.0, 0.5), (64, 0.5, 0.75)))
    assert got == [
        "<BOS>",
        "NOTE_ON_60",
        "TIME_SHIFT_10",
        "NOTE_OFF_60",
        "NOTE_ON_64",
        "TIME_SHIFT_5",
        "NOTE_OFF_64",
        "<EOS>",
    ]


@pytest.mark.parametrize("first,second", [(60, 64), (64, 60), (60, 60)])
def test_note_off_comes_before_note_on_at_equal_times(rep, first, second):
    got = tokens(rep, notes_of((first, 0.0, 0.5), (second, 0.5, 1.0)))
    i_off = got.index(f"NOTE_OFF_{first}")
    i_on = [i for i, t in enumerate(got) if t == f"NOTE_ON_{second}"][-1]
    assert i_off < i_on
    # nothing but the two events sits between them: they share one time position
    assert got[i_off + 1 : i_on] == []


def test_note_offs_precede_note_ons_for_chords_at_the_same_step(rep):
    got = tokens(rep, notes_of((72, 0.0, 0.5), (48, 0.0, 0.5), (50, 0.5, 1.0), (70, 0.5, 1.0)))
    step = got[got.index("TIME_SHIFT_10") + 1 : got.index("TIME_SHIFT_10") + 5]
    assert sorted(step[:2]) == ["NOTE_OFF_48", "NOTE_OFF_72"]
    assert sorted(step[2:]) == ["NOTE_ON_50", "NOTE_ON_70"]


def test_pitch_struck_again_while_sounding_is_closed_first(rep):
    notes = notes_of((60, 0.0, 1.0), (60, 0.5, 1.5))
    got = tokens(rep, notes)
    assert got == [
        "<BOS>",
        "NOTE_ON_60",
        "TIME_SHIFT_10",
        "NOTE_OFF_60",
        "NOTE_ON_60",
        "TIME_SHIFT_20",
        "NOTE_OFF_60",
        "<EOS>",
    ]
    decoded = rep.decode(rep.encode(notes))
    assert decoded["start_s"].tolist() == pytest.approx([0.0, 0.5])
    assert decoded["end_s"].tolist() == pytest.approx([0.5, 1.5])


def test_restrike_inside_a_long_note_never_leaves_two_open_notes_of_a_pitch(rep):
    notes = notes_of((60, 0.0, 3.0), (60, 1.0, 1.2), (60, 2.0, 2.5), (62, 0.2, 2.8))
    got = tokens(rep, notes)
    open_ = set()
    for t in got:
        if t.startswith("NOTE_ON_"):
            assert t[8:] not in open_, f"{t} while already sounding: {got}"
            open_.add(t[8:])
        elif t.startswith("NOTE_OFF_"):
            assert t[9:] in open_
            open_.remove(t[9:])
    assert not open_


def test_same_pitch_twice_at_the_same_step_is_kept_once_and_the_longer_wins(rep):
    notes = notes_of((60, 0.0, 0.3), (60, 0.01, 1.0), (67, 0.0, 0.3))
    decoded = rep.decode(rep.encode(notes))
    assert decoded["pitch"].tolist() == [60, 67]
    assert decoded["end_s"][decoded["pitch"] == 60][0] == pytest.approx(1.0)


@pytest.mark.parametrize("length", [0.0, 0.01, 0.024])
def test_zero_length_and_very_short_notes_last_one_step(rep, length):
    notes = notes_of((60, 0.2, 0.2 + length))
    got = tokens(rep, notes)
    assert got == ["<BOS>", "TIME_SHIFT_4", "NOTE_ON_60", "TIME_SHIFT_1", "NOTE_OFF_60", "<EOS>"]
    decoded = rep.decode(rep.encode(notes))
    assert decoded["end_s"][0] - decoded["start_s"][0] == pytest.approx(0.05)


def test_notes_outside_the_pitch_range_are_dropped():
    rep = EventRepresentation(0.05, 100, 0, 21, 108)
    got = tokens(rep, notes_of((20, 0.0, 0.5), (21, 0.0, 0.5), (108, 0.0, 0.5), (109, 0.0, 0.5)))
    assert [t for t in got if t.startswith("NOTE_ON")] == ["NOTE_ON_21", "NOTE_ON_108"]
    assert tokens(rep, notes_of((10, 0.0, 0.5))) == ["<BOS>", "<EOS>"]


def test_long_gaps_split_into_time_shifts_of_at_most_max_shift_steps(rep):
    # 12.34 s = 246.8 steps -> 247 = 100 + 100 + 47
    got = tokens(rep, notes_of((60, 0.0, 0.1), (62, 12.34, 12.4)))
    shifts = [t for t in got if t.startswith("TIME_SHIFT_")]
    assert shifts == ["TIME_SHIFT_2", "TIME_SHIFT_100", "TIME_SHIFT_100", "TIME_SHIFT_45", "TIME_SHIFT_1"]


@pytest.mark.parametrize("max_shift", [1, 7, 100])
def test_time_shifts_never_exceed_max_shift_steps_and_add_up(max_shift):
    rep = EventRepresentation(0.05, max_shift, 0, 0, 127)
    rng = np.random.default_rng(7)
    starts = np.sort(rng.uniform(0, 60, size=40)) + 3.0  # first onset after a leading gap
    notes = make_notes(starts, starts + rng.uniform(0, 4, size=40), rng.integers(40, 80, size=40))
    got = tokens(rep, notes)
    shifts = [int(t.rsplit("_", 1)[1]) for t in got if t.startswith("TIME_SHIFT_")]
    assert max(shifts) <= max_shift
    assert min(shifts) >= 1
    last_off = int(np.rint(notes["end_s"] / 0.05).max())
    assert sum(shifts) == last_off
    # a gap longer than max_shift_steps really is split (not clipped)
    assert got[1 : 1 + 60 // max_shift] == [f"TIME_SHIFT_{max_shift}"] * (60 // max_shift)


def test_velocity_tokens_appear_only_when_the_bin_changes():
    rep = EventRepresentation(0.05, 100, 32, 0, 127)
    # bins (v * 32 // 128): 100 -> 25, 101 -> 25, 40 -> 10, 41 -> 10, 127 -> 31
    notes = make_notes(
        [0.0, 0.5, 1.0, 1.5, 2.0], [0.4, 0.9, 1.4, 1.9, 2.4], [60, 61, 62, 63, 64], velocity=[100, 101, 40, 41, 127]
    )
    got = tokens(rep, notes)
    vel = [t for t in got if t.startswith("VELOCITY_")]
    assert vel == ["VELOCITY_25", "VELOCITY_10", "VELOCITY_31"]
    for i, t in enumerate(got):
        if t.startswith("VELOCITY_"):
            assert got[i + 1].startswith("NOTE_ON_"), "a VELOCITY token must directly precede a NOTE_ON"
    assert got[got.index("VELOCITY_10") + 1] == "NOTE_ON_62"
    assert got[got.index("VELOCITY_31") + 1] == "NOTE_ON_64"
    decoded = rep.decode(rep.encode(notes))
    assert rep.velocity_bin(decoded["velocity"]).tolist() == [25, 25, 10, 10, 31]


def test_chord_with_mixed_velocities_decodes_each_note_with_its_own_bin():
    rep = EventRepresentation(0.05, 100, 8, 0, 127)
    notes = make_notes([0.0, 0.0, 0.0, 0.5], [0.5, 0.5, 0.5, 1.0], [48, 55, 64, 60], velocity=[20, 90, 20, 127])
    decoded = rep.decode(rep.encode(notes))
    by_pitch = {int(p): int(b) for p, b in zip(decoded["pitch"], rep.velocity_bin(decoded["velocity"]), strict=True)}
    assert by_pitch == {48: 1, 55: 5, 64: 1, 60: 7}


def test_no_velocity_tokens_without_velocity_bins(rep):
    notes = make_notes([0.0, 0.5], [0.4, 0.9], [60, 61], velocity=[10, 120])
    assert not any(t.startswith("VELOCITY") for t in rep.vocab)
    assert not any(t.startswith("VELOCITY") for t in tokens(rep, notes))


@pytest.mark.parametrize(
    "bins",
    [1, 3, 16, 32, 64, 67, 96, 100, 127, 128],
)
def test_decoded_velocity_falls_back_into_its_bin(bins):
    rep = EventRepresentation(0.05, 10, bins, 60, 60)
    for v in range(1, 128):
        b = int(rep.velocity_bin(v))
        decoded = rep.decode(np.array([BOS, rep.token_to_id[f"VELOCITY_{b}"], rep.token_to_id["NOTE_ON_60"], EOS]))
        assert 1 <= decoded["velocity"][0] <= 127
        assert int(rep.velocity_bin(decoded["velocity"][0])) == b, (
            f"velocity {v} bin {b} came back as {decoded['velocity'][0]}"
        )


def test_specials_are_ids_zero_one_two():
    rep = EventRepresentation(0.05, 100, 32, 21, 108)
    assert (PAD, BOS, EOS) == (0, 1, 2)
    assert rep.vocab[:3] == ["<PAD>", "<BOS>", "<EOS>"]
    assert [rep.token_to_id[t] for t in ("<PAD>", "<BOS>", "<EOS>")] == [0, 1, 2]


def test_vocabulary_depends_on_params_only_never_on_data():
    a = EventRepresentation(0.05, 100, 32, 21, 108)
    b = EventRepresentation(0.05, 100, 32, 21, 108)
    before = list(a.vocab)
    a.encode(make_notes([0.0, 100.0], [3.0, 200.0], [21, 108], velocity=[1, 127]))
    b.encode(make_notes([0.5], [0.6], [60]))
    assert a.vocab == b.vocab == before
    assert a.token_to_id == b.token_to_id
    n_pitch = 108 - 21 + 1
    assert len(a) == 3 + 2 * n_pitch + 100 + 32
    assert len(set(a.vocab)) == len(a)


def test_vocabulary_rebuilds_identically_from_config_and_from_params():
    rep = EventRepresentation(0.03, 50, 4, 30, 90)
    assert from_config(rep.config()).vocab == rep.vocab
    params = {
        "representation": "events",
        "time_step": 0.03,
        "max_shift_steps": 50,
        "velocity_bins": 4,
        "pitch_min": 30,
        "pitch_max": 90,
    }
    assert from_params(params).vocab == rep.vocab
    assert EventRepresentation(0.03, 51, 4, 30, 90).vocab != rep.vocab


def test_tokens_to_ids_inverts_ids_to_tokens(rep):
    ids = rep.encode(notes_of((60, 0.0, 0.5), (64, 0.25, 7.0)))
    assert rep.tokens_to_ids(rep.ids_to_tokens(ids)).tolist() == ids.tolist()
