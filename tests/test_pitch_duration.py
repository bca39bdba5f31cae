"""pitch_duration: seed 003's pitch + note-value tokens, on a sixteenth grid in musical time."""

from __future__ import annotations

import numpy as np
import pretty_midi
import pytest
import yaml
from conftest import PITCH_MAX, PITCH_MIN, PROJECT_ROOT

from midigen import representations
from midigen.data.builtin import NABIYA
from midigen.data.ingest import ingest
from midigen.data.midi_io import make_notes, write_midi
from midigen.generation.generate import write_pieces
from midigen.representations import OutputContext, PitchDurationRepresentation
from midigen.representations.pitch_duration import DURATIONS, split_steps
from midigen.representations.score_time import STEP_S

CLASS_STEPS = sorted(s for s, _ in DURATIONS)


@pytest.fixture(scope="module")
def rep() -> PitchDurationRepresentation:
    return PitchDurationRepresentation(PITCH_MIN, PITCH_MAX)


def steps(seconds) -> np.ndarray:
    return np.floor(np.asarray(seconds) / STEP_S + 0.5).astype(np.int64)


def longest_class(n: int) -> int:
    return max(c for c in CLASS_STEPS if c <= n)


def test_nabiya_tokens_are_the_seed_tokens_with_octave_and_duration_class(tmp_path, rep):
    manifest, _ = ingest("builtin:nabiya", tmp_path)
    ids = rep.encode(rep.read(manifest["path"][0]))
    tokens = rep.ids_to_tokens(ids)
    # the seed's `g8` is a G5 eighth note (octave 5, as the seed writes its MIDI)
    assert tokens == ["<BOS>", *(f"{t[0].upper()}5_{t[1:]}" for t in NABIYA), "<EOS>"]
    notes = rep.decode(ids)
    assert len(notes) == len(NABIYA) == 54
    # one after another, eighths and quarters, no gaps
    assert np.array_equal(notes["start_s"][1:], notes["end_s"][:-1])
    assert set(steps(notes["end_s"] - notes["start_s"]).tolist()) == {2, 4}


def test_folk_melodies_round_trip_exactly_up_to_duration_classes(folk_paths, rep):
    """Monophonic real melodies: every onset and pitch survives; a note keeps the longest class
    that fits in its length (the time left over becomes rest)."""
    for path in folk_paths:
        notes = rep.read(path)
        decoded = rep.decode(rep.encode(notes))
        assert len(decoded) == len(notes), path.name
        on, off = steps(notes["start_s"]), steps(notes["end_s"])
        assert np.array_equal(steps(decoded["start_s"]), on), path.name
        assert np.array_equal(decoded["pitch"], notes["pitch"]), path.name
        expected = [longest_class(int(n)) for n in off - on]
        assert steps(decoded["end_s"] - decoded["start_s"]).tolist() == expected, path.name


def test_chorale_top_line_is_the_highest_note_of_each_onset_and_never_overlaps(chorale_paths, rep):
    for path in chorale_paths:
        notes = rep.read(path)
        decoded = rep.decode(rep.encode(notes))
        on = steps(notes["start_s"])
        d_on, d_off = steps(decoded["start_s"]), steps(decoded["end_s"])
        assert len(decoded) > 20, path.name
        assert np.all(d_on[1:] >= d_off[:-1]), f"{path.name}: overlapping notes in a monophonic line"
        for o, p in zip(d_on.tolist(), decoded["pitch"].tolist(), strict=True):
            assert p == notes["pitch"][on == o].max(), f"{path.name}: step {o} is not the highest onset note"


# bwv10.7: in the last bar the alto strikes G4 while the soprano holds it: a re-strike in the
# line, after which the held soprano still hides the alto's lower notes
@pytest.mark.parametrize(("name", "restrikes"), [("bwv66.6", []), ("bwv10.7", [(296, 67)])])
def test_top_line_of_a_four_voice_chorale_is_its_soprano(chorale_paths, rep, name, restrikes):
    from music21 import corpus

    soprano = corpus.parse(f"bach/{name}").parts[0].flatten().stripTies().notes
    expected = sorted([(round(float(n.offset) * 4), n.pitch.midi) for n in soprano] + restrikes)
    soprano_end = round(float(soprano[-1].offset + soprano[-1].quarterLength) * 4)
    path = next(p for p in chorale_paths if p.stem == name)
    decoded = rep.decode(rep.encode(rep.read(path)))
    line = list(zip(steps(decoded["start_s"]).tolist(), decoded["pitch"].tolist(), strict=True))
    assert [(o, p) for o, p in line if o < soprano_end] == expected


def test_tempo_changes_do_not_move_the_grid(tmp_path, rep):
    """Musical time: the same notated melody at 60 and at 180 bpm gives the same tokens."""
    quarter_s = {60: 1.0, 180: 1 / 3}
    ids = []
    for bpm, q in quarter_s.items():
        notes = make_notes(np.array([0, 1, 1.5, 2]) * q, np.array([1, 1.5, 2, 4]) * q, [60, 62, 64, 65])
        write_midi(notes, tmp_path / f"m{bpm}.mid", tempo_bpm=bpm)
        ids.append(rep.encode(rep.read(tmp_path / f"m{bpm}.mid")))
    assert np.array_equal(ids[0], ids[1])
    assert rep.ids_to_tokens(ids[0])[1:-1] == ["C4_4", "D4_8", "E4_8", "F4_2"]


def test_rests_and_odd_lengths_are_sums_of_classes(rep):
    # a 5-sixteenth note = quarter + sixteenth rest; a 40-sixteenth gap = dotted whole + whole
    notes = make_notes(np.array([0, 45]) * STEP_S, np.array([5, 46]) * STEP_S, [60, 67])
    tokens = rep.ids_to_tokens(rep.encode(notes))
    assert tokens == ["<BOS>", "C4_4", "R_16", "R_1.", "R_1", "G4_16", "<EOS>"]
    assert [sum(DURATIONS[i][0] for i in split_steps(n)) for n in range(1, 60)] == list(range(1, 60))


def test_decode_accepts_any_ids_and_stops_at_eos(rep):
    rng = np.random.default_rng(0)
    ids = rng.integers(-5, len(rep.vocab) + 5, size=500)
    notes = rep.decode(ids)
    assert np.all(notes["end_s"] > notes["start_s"])
    assert np.all(notes["start_s"][1:] >= notes["end_s"][:-1])
    bos, eos = rep.token_to_id["<BOS>"], rep.token_to_id["<EOS>"]
    g = rep.token_to_id["G5_8"]
    assert len(rep.decode(np.array([bos, eos, g, eos, g, g]))) == 1


def test_vocab_is_fixed_by_params_and_rebuilt_from_config(rep):
    assert len(rep.vocab) == 3 + (PITCH_MAX - PITCH_MIN + 1) * len(DURATIONS) + len(DURATIONS)
    assert len(set(rep.vocab)) == len(rep.vocab)
    again = representations.from_config(rep.config())
    assert again.vocab == rep.vocab
    params = {"representation": "pitch_duration", "pitch_min": PITCH_MIN, "pitch_max": PITCH_MAX}
    assert representations.from_params(params).vocab == rep.vocab


def test_generated_midi_carries_tempo_key_and_program(tmp_path, rep):
    ids = rep.tokens_to_ids(["<BOS>", "G5_8", "E5_8", "E5_4", "R_4", "F5_2.", "<EOS>"])
    (path,) = write_pieces([ids], rep, tmp_path, context=OutputContext(tempo_bpm=90.0, key="Bb", program=73))
    pm = pretty_midi.PrettyMIDI(str(path))
    assert pm.get_tempo_changes()[1].tolist() == pytest.approx([90.0], abs=1e-3)  # microseconds per quarter
    assert [pretty_midi.key_number_to_key_name(k.key_number) for k in pm.key_signature_changes] == ["Bb Major"]
    assert [i.program for i in pm.instruments] == [73]
    quarter = 60 / 90
    notes = pm.instruments[0].notes
    assert [n.pitch for n in notes] == [79, 76, 76, 77]
    assert [n.start / quarter for n in notes] == pytest.approx([0, 0.5, 1, 3], abs=1e-3)
    assert [(n.end - n.start) / quarter for n in notes] == pytest.approx([0.5, 0.5, 1, 3], abs=1e-3)


def test_transposition_and_unknown_keys_are_clear_params_errors(rep):
    from midigen.data.windows import WindowSampler
    from midigen.errors import ParamsError
    from midigen.params import validate

    stream = rep.encode(make_notes([0.0, 0.5], [0.5, 1.0], [60, 62])).astype(np.int64)
    with pytest.raises(ParamsError, match="train.transpose = 2: pitch_duration tokens cannot be transposed"):
        WindowSampler(stream, 8, 2, seed=0, transpose=2, rep=rep)
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["generate"]["key"] = "H"
    with pytest.raises(ParamsError, match="generate.key = 'H'"):
        validate(raw)
