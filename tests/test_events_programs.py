"""Event tokens with PROGRAM tokens (preprocess.programs): every note keeps its instrument
through encode -> decode -> MIDI, unisons of two instruments stay two notes, drums stay a drum
track, and the constrained sampler keeps the note rules per (program, pitch)."""

from __future__ import annotations

import numpy as np
import pretty_midi
import pytest
import torch
from test_grammar import RandomLM, event_violations

from midigen.data.midi_io import make_notes, read_notes
from midigen.generation.grammar import GrammarLimits, ProgramEventGrammar
from midigen.generation.sampling import generate_tokens
from midigen.models.ngram import KneserNeyLM
from midigen.params import DEFAULTS
from midigen.representations import BOS, EOS, EventRepresentation, OutputContext, from_config, from_params

DRUMS = 128  # the slot of drum notes in the keys below


def beats_rep(programs: bool = True, **kw) -> EventRepresentation:
    """Events in twelfths of a quarter note (sixteenths and triplets land on the grid), all 128
    pitches."""
    return EventRepresentation(0.05, 100, kw.pop("velocity_bins", 0), 0, 127, "beats", 12, programs, **kw)


def note_keys(notes: np.ndarray, step_s: float, programs: bool = True) -> set[tuple[int, int, int]]:
    """(instrument: program or DRUMS, pitch, onset step) of every note."""
    slot = np.where(notes["is_drum"], DRUMS, notes["program"]) if programs else np.zeros(len(notes), int)
    onset = np.rint(notes["start_s"] / step_s).astype(int)
    return set(zip(slot.tolist(), notes["pitch"].tolist(), onset.tolist(), strict=True))


def instruments_of(notes: np.ndarray) -> set[tuple[int, bool]]:
    """(program, is_drum) of the notes' instruments; drums are one kit, whatever its program."""
    program = np.where(notes["is_drum"], 0, notes["program"])
    return set(zip(program.tolist(), notes["is_drum"].tolist(), strict=True))


def tracks(path) -> dict[tuple[int, bool], int]:
    """(program, is_drum) -> notes, per instrument of a MIDI file as pretty_midi reads it."""
    pm = pretty_midi.PrettyMIDI(str(path))
    return {(inst.program, inst.is_drum): len(inst.notes) for inst in pm.instruments}


# -- a multi-track file built here ---------------------------------------------------------------


def write_band(path) -> None:
    """Two bars at 120 bpm (every time on the grid of twelfths of a quarter): piano chords,
    strings doubling the piano's top note (a unison across tracks), a bass line, and drums whose
    kick is the bass's pitch 36 at the same time."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    piano = pretty_midi.Instrument(program=0, name="piano")
    strings = pretty_midi.Instrument(program=48, name="strings")
    bass = pretty_midi.Instrument(program=33, name="bass")
    drums = pretty_midi.Instrument(program=0, is_drum=True, name="drums")
    for bar, root in enumerate((60, 65)):
        t = bar * 2.0
        for p in (root, root + 4, root + 7):
            piano.notes.append(pretty_midi.Note(80, p, t, t + 1.0))
        strings.notes.append(pretty_midi.Note(70, root + 7, t, t + 2.0))  # unison with the piano
        for beat in range(4):
            bass.notes.append(pretty_midi.Note(90, 36 if beat % 2 == 0 else 43, t + beat * 0.5, t + beat * 0.5 + 0.375))
            drums.notes.append(pretty_midi.Note(100, 42, t + beat * 0.5, t + beat * 0.5 + 0.125))
        drums.notes.append(pretty_midi.Note(110, 36, t, t + 0.125))  # kick = the bass's C at once
        drums.notes.append(pretty_midi.Note(100, 38, t + 1.0, t + 1.125))
    pm.instruments += [piano, strings, bass, drums]
    pm.write(str(path))


def test_a_band_keeps_every_note_its_instrument_and_its_unisons(tmp_path):
    src = tmp_path / "band.mid"
    write_band(src)
    rep = beats_rep()
    notes = rep.read_piece(src, {"drums": "keep"})
    assert len(notes) == 6 + 2 + 8 + 8 + 4
    ids = rep.encode(notes)
    tokens = rep.ids_to_tokens(ids)
    assert {"PROGRAM_0", "PROGRAM_33", "PROGRAM_48", "PROGRAM_DRUMS"} <= set(tokens)
    assert tokens[1] == "PROGRAM_0" and tokens[2].startswith("NOTE_ON_")  # a program before the first note
    out = tmp_path / "back.mid"
    rep.write_midi(ids, out, OutputContext(tempo_bpm=120.0, program=5))  # generate.program: not for these
    back = read_notes(out, tempo_bpm=120.0)
    assert note_keys(back, rep.time_step) == note_keys(notes, rep.time_step)
    assert len(back) == len(notes)  # the unisons (G with strings, C with the kick) are two notes each
    assert np.allclose(np.sort(back["end_s"]), np.sort(notes["end_s"]))
    assert tracks(out) == {(0, False): 6, (48, False): 2, (33, False): 8, (0, True): 8 + 4}

    # without programs: one instrument, and each unison is one note
    flat = beats_rep(programs=False)
    out_flat = tmp_path / "flat.mid"
    flat.write_midi(flat.encode(notes), out_flat, OutputContext(tempo_bpm=120.0))
    assert not any(t.startswith("PROGRAM_") for t in flat.vocab)
    assert tracks(out_flat) == {(0, False): len(notes) - 2 - 2}


def test_program_tokens_come_only_where_the_instrument_changes():
    rep = beats_rep()
    notes = make_notes([0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [60, 64, 60, 64], program=40)
    tokens = rep.ids_to_tokens(rep.encode(notes))
    # one program for the whole piece: one PROGRAM token
    assert tokens == [
        "<BOS>", "PROGRAM_40", "NOTE_ON_60", "NOTE_ON_64", "TIME_SHIFT_12", "NOTE_OFF_60", "NOTE_OFF_64",
        "NOTE_ON_60", "NOTE_ON_64", "TIME_SHIFT_12", "NOTE_OFF_60", "NOTE_OFF_64", "<EOS>",
    ]  # fmt: skip
    notes["program"] = [40, 41, 40, 41]
    tokens = rep.ids_to_tokens(rep.encode(notes))
    # per step each instrument once, its releases before its strikes
    assert tokens == [
        "<BOS>", "PROGRAM_40", "NOTE_ON_60", "PROGRAM_41", "NOTE_ON_64", "TIME_SHIFT_12",
        "PROGRAM_40", "NOTE_OFF_60", "NOTE_ON_60", "PROGRAM_41", "NOTE_OFF_64", "NOTE_ON_64", "TIME_SHIFT_12",
        "PROGRAM_40", "NOTE_OFF_60", "PROGRAM_41", "NOTE_OFF_64", "<EOS>",
    ]  # fmt: skip


def test_programs_are_a_param_stored_in_the_config_and_off_by_default():
    assert DEFAULTS["preprocess"]["programs"] is False
    p = {**DEFAULTS["preprocess"], "representation": "events", "time_unit": "beats"}
    plain = from_params(p)
    assert "programs" not in plain.config() and len(plain) == 3 + 88 * 2 + 100  # the default events vocabulary
    rep = from_params({**p, "programs": True})
    assert rep.config()["programs"] is True and len(rep) == len(plain) + 129
    assert from_config(rep.config()).vocab == rep.vocab
    # the note ids do not move: a store without programs reads the same NOTE/TIME_SHIFT ids
    assert rep.vocab[: len(plain)] == plain.vocab


def test_preprocess_stores_program_tokens_when_asked(tmp_path):
    """preprocess.programs reaches the token store: its representation has PROGRAM tokens and
    the stored ids decode to the band's four instruments, drums among them."""
    from test_preprocess import PARAMS, manifest_of

    from midigen.data.preprocess import preprocess
    from midigen.data.store import TokenStore

    folder = tmp_path / "band"
    folder.mkdir()
    write_band(folder / "band.mid")
    params = {**PARAMS, "drums": "keep", "programs": True, "time_unit": "beats", "steps_per_quarter": 12}
    preprocess(manifest_of(folder), params, tmp_path / "tokens", workers=1)
    store = TokenStore(tmp_path / "tokens")
    rep = store.representation
    assert rep.config()["programs"] is True
    notes = rep.decode(np.asarray(store.piece(0), dtype=np.int64))
    assert instruments_of(notes) == {(0, False), (48, False), (33, False), (0, True)}
    assert len(notes) == 6 + 2 + 8 + 8 + 4


# -- a real multi-track corpus -------------------------------------------------------------------


@pytest.fixture(scope="module")
def openmsx_notes(openmsx_dir) -> dict[str, np.ndarray]:
    """Every openmsx song's notes, drums kept, in musical time (as beats tokens read them)."""
    rep = beats_rep()
    return {p.name: rep.read_piece(p, {"drums": "keep"}) for p in sorted(openmsx_dir.glob("*.mid"))}


def test_the_openmsx_songs_keep_every_note_with_its_program(openmsx_notes, tmp_path):
    """All 31 songs, encoded and decoded: every (instrument, pitch, onset) of the file comes
    back. Only notes the same instrument strikes twice at one step are one note; without
    programs, far more are lost. The four songs with the most instruments are also written as
    MIDI (pretty_midi takes seconds per song) and read back: one track per instrument."""
    rep, flat = beats_rep(), beats_rep(programs=False)
    total = kept = kept_flat = 0
    for name, notes in openmsx_notes.items():
        back = rep.decode(rep.encode(notes))
        assert note_keys(back, rep.time_step) == note_keys(notes, rep.time_step), name
        assert instruments_of(back) == instruments_of(notes), name
        flat_notes = flat.decode(flat.encode(notes))
        total, kept, kept_flat = total + len(notes), kept + len(back), kept_flat + len(flat_notes)
    assert total > 50_000 and sum(notes["is_drum"].sum() for notes in openmsx_notes.values()) > 20_000
    # measured: 80,363 notes; 80,064 kept with programs (299 struck twice at once by one
    # instrument); 67,050 without (unisons across tracks and drums on the bass's pitches merge)
    assert total - kept < 0.005 * total, (total, kept)
    assert total - kept_flat > 0.1 * total, (total, kept_flat)

    bands = sorted(openmsx_notes, key=lambda name: -len(instruments_of(openmsx_notes[name])))[:4]
    for name in bands:
        notes, out = openmsx_notes[name], tmp_path / name
        rep.write_midi(rep.encode(notes), out, OutputContext(tempo_bpm=120.0))
        assert len(instruments_of(notes)) >= 5 and set(tracks(out)) == instruments_of(notes), name
        back = read_notes(out, tempo_bpm=120.0)
        assert note_keys(back, rep.time_step) == note_keys(notes, rep.time_step), name


# -- the constrained sampler ---------------------------------------------------------------------


def test_random_logits_never_break_the_rules_of_any_program():
    rep = EventRepresentation(0.05, 24, 4, 48, 72, "beats", 4, programs=True)
    grammar = rep.grammar(GrammarLimits(2.0, 3, 120.0))
    assert isinstance(grammar, ProgramEventGrammar)
    seqs = generate_tokens(
        RandomLM(len(rep.vocab), 1),
        [[BOS]] * 32,
        1500,
        EOS,
        generator=torch.Generator().manual_seed(2),
        grammar=grammar,
    )
    assert sum(len(s) for s in seqs) > 32 * 200
    programs = set()
    for s in seqs:
        assert event_violations(rep, s, grammar.max_note_steps, 3) == [], rep.ids_to_tokens(s)[:80]
        programs |= set(rep.decode_notes(np.asarray(s))["program"].tolist())
    assert len(programs) > 20  # the random model wanders over many instruments


def test_without_the_grammar_random_logits_do_break_them():
    """The checker above can fail: the same random model unconstrained breaks the rules."""
    rep = EventRepresentation(0.05, 24, 0, 48, 72, "beats", 4, programs=True)
    seqs = generate_tokens(
        RandomLM(len(rep.vocab), 1), [[BOS]] * 8, 300, EOS, generator=torch.Generator().manual_seed(2)
    )
    assert any(event_violations(rep, s, 8, 3) for s in seqs)


def test_a_pitch_sounding_on_one_program_is_free_on_another():
    rep = EventRepresentation(0.05, 8, 0, 60, 63, "beats", 4, programs=True)
    grammar = rep.grammar(GrammarLimits(2.0, 4, 120.0))
    state = grammar.start(1, torch.device("cpu"))

    def feed(*tokens):
        nonlocal state
        for tok in tokens:
            state = grammar.advance(state, torch.tensor([rep.token_to_id[tok]]))
        return set(rep.ids_to_tokens(torch.nonzero(grammar.allowed(state)[0]).flatten().tolist()))

    assert feed() >= {"PROGRAM_0", "PROGRAM_5", "PROGRAM_DRUMS"}  # the first may name any program
    allowed = feed("PROGRAM_5", "NOTE_ON_60", "TIME_SHIFT_1")
    assert "NOTE_OFF_60" in allowed and "NOTE_ON_60" not in allowed and "PROGRAM_5" not in allowed
    allowed = feed("PROGRAM_7")
    # program 7 has nothing sounding: no release, any strike (a unison with program 5's 60)
    assert not any(t.startswith("NOTE_OFF_") for t in allowed) and "NOTE_ON_60" in allowed
    assert "<EOS>" not in allowed  # program 5's note still sounds
    allowed = feed("NOTE_ON_60", "PROGRAM_5")
    assert "NOTE_OFF_60" in allowed and "NOTE_ON_60" not in allowed
    allowed = feed("NOTE_OFF_60", "TIME_SHIFT_1", "PROGRAM_7", "NOTE_OFF_60")
    assert "<EOS>" in allowed


def test_the_end_waits_for_min_beats_with_programs_too():
    rep = EventRepresentation(0.05, 8, 0, 60, 63, "beats", 4, programs=True)
    grammar = rep.grammar(GrammarLimits(2.0, 4, 120.0, min_beats=1.0))  # 4 steps
    state = grammar.start(1, torch.device("cpu"))
    eos = []
    for tok in ("PROGRAM_DRUMS", "NOTE_ON_60", "TIME_SHIFT_1", "NOTE_OFF_60", "TIME_SHIFT_2", "TIME_SHIFT_1"):
        state = grammar.advance(state, torch.tensor([rep.token_to_id[tok]]))
        eos.append(bool(grammar.allowed(state)[0, EOS]))
    assert eos == [False, False, False, False, False, True]


def test_an_ngram_model_of_the_openmsx_songs_writes_one_track_per_program(openmsx_notes, tmp_path):
    """A 4-gram fitted on the songs' tokens (a real model, fitted in seconds) sampled through
    the grammar: the pieces break no rule and their MIDI files have several instruments, drums
    among them, each on its own track."""
    rep = beats_rep()
    stream = np.concatenate([rep.encode(n).astype(np.int64) for n in openmsx_notes.values()])
    model = KneserNeyLM(len(rep.vocab), order=4).fit(stream)
    grammar = rep.grammar(GrammarLimits(8.0, 12, 120.0))
    seqs = generate_tokens(model, [[BOS]] * 4, 600, EOS, temperature=1.0, generator=torch.Generator().manual_seed(0),
                           grammar=grammar)  # fmt: skip
    instruments = set()
    for i, s in enumerate(seqs):
        assert event_violations(rep, s, grammar.max_note_steps, 12) == [], rep.ids_to_tokens(s)[:80]
        out = tmp_path / f"sample_{i}.mid"
        notes = rep.write_midi(np.asarray(s), out, OutputContext(tempo_bpm=120.0))
        got = tracks(out)
        assert set(got) == instruments_of(notes)
        assert sum(got.values()) == len(notes)
        instruments |= set(got)
    assert len(instruments) >= 3 and any(drum for _, drum in instruments), instruments
