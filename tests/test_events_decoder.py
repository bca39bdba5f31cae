"""The decoder accepts any id sequence a model can produce and always returns playable notes."""

from __future__ import annotations

import numpy as np
import pytest

from midigen.representations import BOS, EOS, PAD, EventRepresentation


def ids(rep, *tokens) -> np.ndarray:
    return np.array([rep.token_to_id[t] for t in tokens], dtype=np.int64)


@pytest.fixture
def rep():
    return EventRepresentation(time_step=0.05, max_shift_steps=100, velocity_bins=0, pitch_min=21, pitch_max=108)


@pytest.mark.parametrize("velocity_bins,max_shift", [(0, 100), (32, 100), (5, 3)])
def test_random_id_sequences_decode_to_notes_that_end_after_they_start(velocity_bins, max_shift):
    rep = EventRepresentation(0.05, max_shift, velocity_bins, 21, 108)
    rng = np.random.default_rng(velocity_bins * 1000 + max_shift)
    total = 0
    for trial in range(300):
        length = int(rng.integers(0, 400))
        seq = rng.integers(0, len(rep), size=length)
        if trial % 3 == 0:  # a model's output mostly without specials
            seq = seq[seq > EOS]
        notes = rep.decode(seq.astype(np.uint16))
        total += len(notes)
        if len(notes):
            assert (notes["end_s"] > notes["start_s"]).all()
            assert (notes["start_s"] >= 0).all()
            assert notes["pitch"].min() >= 21 and notes["pitch"].max() <= 108
            assert notes["velocity"].min() >= 1 and notes["velocity"].max() <= 127
            assert (np.diff(notes["start_s"]) >= 0).all(), "decoded notes are sorted by start time"
    assert total > 1000, "the random sequences should produce plenty of notes"


def test_ids_outside_the_vocabulary_are_skipped(rep):
    clean = ids(rep, "<BOS>", "NOTE_ON_60", "TIME_SHIFT_4", "NOTE_OFF_60", "<EOS>")
    noisy = np.array(
        [
            BOS,
            len(rep),
            rep.token_to_id["NOTE_ON_60"],
            65535,
            -1,
            rep.token_to_id["TIME_SHIFT_4"],
            rep.token_to_id["NOTE_OFF_60"],
            len(rep) + 7,
            EOS,
        ]
    )
    assert rep.decode(noisy).tolist() == rep.decode(clean).tolist()


def test_note_off_without_note_on_is_ignored(rep):
    notes = rep.decode(
        ids(
            rep,
            "<BOS>",
            "NOTE_OFF_60",
            "TIME_SHIFT_5",
            "NOTE_ON_62",
            "TIME_SHIFT_5",
            "NOTE_OFF_62",
            "NOTE_OFF_62",
            "<EOS>",
        )
    )
    assert notes["pitch"].tolist() == [62]
    assert notes["start_s"].tolist() == pytest.approx([0.25])
    assert notes["end_s"].tolist() == pytest.approx([0.5])


def test_hanging_note_is_closed_at_the_end_of_the_sequence(rep):
    notes = rep.decode(ids(rep, "<BOS>", "NOTE_ON_60", "TIME_SHIFT_3", "NOTE_ON_64", "TIME_SHIFT_2", "<EOS>"))
    assert notes["pitch"].tolist() == [60, 64]
    assert notes["start_s"].tolist() == pytest.approx([0.0, 0.15])
    assert notes["end_s"].tolist() == pytest.approx([0.25, 0.25])


def test_hanging_note_without_time_after_it_lasts_one_step(rep):
    notes = rep.decode(ids(rep, "<BOS>", "TIME_SHIFT_2", "NOTE_ON_60"))
    assert notes["start_s"].tolist() == pytest.approx([0.1])
    assert notes["end_s"].tolist() == pytest.approx([0.15])


def test_hanging_note_is_closed_after_at_most_max_shift_steps(rep):
    notes = rep.decode(ids(rep, "NOTE_ON_60", *["TIME_SHIFT_100"] * 5, "NOTE_ON_62", "TIME_SHIFT_1", "NOTE_OFF_62"))
    n60 = notes[notes["pitch"] == 60]
    assert n60["end_s"][0] - n60["start_s"][0] == pytest.approx(100 * 0.05)


def test_note_off_in_the_same_step_still_gives_a_one_step_note(rep):
    notes = rep.decode(ids(rep, "<BOS>", "NOTE_ON_60", "NOTE_OFF_60", "<EOS>"))
    assert notes["end_s"].tolist() == pytest.approx([0.05])


def test_note_on_again_while_sounding_closes_the_first_note(rep):
    notes = rep.decode(ids(rep, "NOTE_ON_60", "TIME_SHIFT_4", "NOTE_ON_60", "TIME_SHIFT_4", "NOTE_OFF_60"))
    assert notes["start_s"].tolist() == pytest.approx([0.0, 0.2])
    assert notes["end_s"].tolist() == pytest.approx([0.2, 0.4])


def test_decoding_stops_at_the_first_eos_after_content(rep):
    notes = rep.decode(
        ids(
            rep,
            "<PAD>",
            "<EOS>",
            "<BOS>",
            "NOTE_ON_60",
            "TIME_SHIFT_1",
            "NOTE_OFF_60",
            "<EOS>",
            "NOTE_ON_70",
            "TIME_SHIFT_9",
            "NOTE_OFF_70",
        )
    )
    assert notes["pitch"].tolist() == [60]


def test_pad_and_bos_in_the_middle_are_ignored(rep):
    a = rep.decode(ids(rep, "NOTE_ON_60", "<PAD>", "TIME_SHIFT_3", "<BOS>", "NOTE_OFF_60"))
    b = rep.decode(ids(rep, "NOTE_ON_60", "TIME_SHIFT_3", "NOTE_OFF_60"))
    assert a.tolist() == b.tolist()
    assert PAD == 0


def test_note_on_off_on_at_one_time_does_not_give_two_overlapping_notes_of_a_pitch(rep):
    notes = rep.decode(ids(rep, "NOTE_ON_60", "NOTE_OFF_60", "NOTE_ON_60", "TIME_SHIFT_3", "NOTE_OFF_60"))
    onsets = list(zip(notes["pitch"].tolist(), notes["start_s"].tolist(), strict=True))
    assert len(onsets) == len(set(onsets)), f"duplicate notes: {notes}"
    assert (notes["start_s"][1:] >= notes["end_s"][:-1] - 1e-9).all(), f"pitch 60 overlaps itself: {notes}"
