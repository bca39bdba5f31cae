"""Grammar-constrained sampling (midigen.generation.grammar): sampling from random logits for
many steps never writes an illegal event token, the masks live inside the batched sampler,
and time in beats puts every chorale onset exactly on the grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from midigen.generation.grammar import EventGrammar, GrammarLimits
from midigen.generation.sampling import generate_tokens
from midigen.representations import BOS, EOS, EventRepresentation, OutputContext


def event_violations(rep: EventRepresentation, ids: list[int], max_note_steps: int, max_voices: int) -> list[str]:
    """What an id sequence does wrong, found by replaying it (independent of EventGrammar). A
    note is a (program, pitch): PROGRAM tokens (preprocess.programs) switch the program the
    notes after them belong to, and may not name the program already current."""
    sounding: dict[tuple[str, int], int] = {}  # (program, pitch) -> steps sounding
    problems, started, program = [], False, None
    for n, i in enumerate(ids[1:], 1):  # ids[0] is <BOS>
        tok = rep.vocab[i]
        if tok in ("<PAD>", "<BOS>"):
            problems.append(f"{n}: {tok}")
        elif tok == "<EOS>":
            if sounding or not started:
                problems.append(f"{n}: <EOS> with {sorted(sounding)} sounding, started={started}")
            break
        elif tok.startswith("PROGRAM_"):
            if tok == program:
                problems.append(f"{n}: {tok} names the current program")
            program = tok
        elif tok.startswith("NOTE_ON_"):
            p = (program or "PROGRAM_0", int(tok.rsplit("_", 1)[1]))
            if p in sounding:
                problems.append(f"{n}: {tok} while {p} sounds")
            sounding[p] = 0
            started = True
            if max_voices and len(sounding) > max_voices:
                problems.append(f"{n}: {len(sounding)} voices")
        elif tok.startswith("NOTE_OFF_"):
            p = (program or "PROGRAM_0", int(tok.rsplit("_", 1)[1]))
            if sounding.get(p, 0) < 1:
                problems.append(f"{n}: {tok} for a note {p} not sounding for a step")
            sounding.pop(p, None)
        elif tok.startswith("TIME_SHIFT_"):
            k = int(tok.rsplit("_", 1)[1])
            for p in sounding:
                sounding[p] += k
                if max_note_steps and sounding[p] > max_note_steps:
                    problems.append(f"{n}: {p} held {sounding[p]} steps")
    return problems


class RandomLM(torch.nn.Module):
    """Logits from a seeded generator, biased so that every kind of token is tempting (long
    shifts, strikes, releases, <EOS>): what a badly trained model might write."""

    def __init__(self, vocab: int, seed: int):
        super().__init__()
        self.vocab = vocab
        self.gen = torch.Generator().manual_seed(seed)
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, ids, state=None):
        b, t = ids.shape
        return torch.randn(b, t, self.vocab, generator=self.gen) * 3, state

    def keep_rows(self, state, keep):
        return state


@pytest.mark.parametrize("unit", ["beats", "seconds"])
@pytest.mark.parametrize(("max_note_beats", "max_voices"), [(8.0, 4), (1.0, 2), (0.0, 0)])
def test_random_logits_never_sample_an_illegal_token(unit, max_note_beats, max_voices):
    rep = EventRepresentation(0.05, 24, 4, 48, 72, unit, 4)
    limits = GrammarLimits(max_note_beats, max_voices, 100.0)
    grammar = rep.grammar(limits)
    torch.manual_seed(0)
    seqs = generate_tokens(
        RandomLM(len(rep.vocab), 1),
        [[BOS]] * 48,
        1500,
        EOS,
        generator=torch.Generator().manual_seed(2),
        grammar=grammar,
    )
    assert sum(len(s) for s in seqs) > 48 * 200  # long enough to meet every rule
    for s in seqs:
        assert event_violations(rep, s, grammar.max_note_steps, max_voices) == [], rep.ids_to_tokens(s)[:80]
    notes = [rep.decode_notes(np.asarray(s)) for s in seqs]
    if max_note_beats:
        longest = max(float((n["end_s"] - n["start_s"]).max()) for n in notes if len(n))
        step_s = rep.time_step
        assert longest <= grammar.max_note_steps * step_s + 1e-9


def _beats_at_eos(rep: EventRepresentation, ids: list[int]) -> float | None:
    """Quarter notes that passed before a sequence's <EOS> (None: it has none)."""
    steps = 0
    for i in ids:
        tok = rep.vocab[i]
        if tok == "<EOS>":
            return steps / rep.steps_per_quarter
        if tok.startswith("TIME_SHIFT_"):
            steps += int(tok.rsplit("_", 1)[1])
    return None


def test_no_piece_ends_before_min_beats():
    """<EOS> waits for generate.min_beats (a piece is not a lone chord): a model that wants to
    stop after its first note stops there without the rule, and only after min_beats with it."""
    rep = EventRepresentation(0.05, 24, 0, 48, 72, "beats", 4)
    t = rep.token_to_id
    prompt = [BOS, t["NOTE_ON_60"], t["TIME_SHIFT_4"], t["NOTE_OFF_60"]]  # one beat, then silence

    def ends(min_beats: float) -> list[float]:
        grammar = rep.grammar(GrammarLimits(8.0, 4, 120.0, min_beats))
        seqs = generate_tokens(
            EosKeenLM(len(rep.vocab), 5),
            [prompt] * 16,
            3000,
            EOS,
            generator=torch.Generator().manual_seed(3),
            grammar=grammar,
        )
        for s in seqs:
            assert event_violations(rep, s, grammar.max_note_steps, 4) == []
        return [_beats_at_eos(rep, s) for s in seqs]

    assert ends(0.0) == [1.0] * 16
    late = [b for b in ends(16.0) if b is not None]  # random logits seldom leave nothing sounding
    assert len(late) >= 4 and min(late) >= 16.0


class EosKeenLM(RandomLM):
    """RandomLM that wants <EOS> above all (a model that learnt to end pieces after a chord)."""

    def forward(self, ids, state=None):
        logits, state = super().forward(ids, state)
        logits[..., EOS] += 50.0
        return logits, state


def test_unconstrained_random_logits_do_break_the_rules():
    """The checker above catches what the grammar prevents (so the property test can fail)."""
    rep = EventRepresentation(0.05, 24, 0, 48, 72, "beats", 4)
    seqs = generate_tokens(
        RandomLM(len(rep.vocab), 1), [[BOS]] * 8, 300, EOS, generator=torch.Generator().manual_seed(2)
    )
    assert any(event_violations(rep, s, 32, 4) for s in seqs)


def test_the_grammar_follows_a_primer_and_then_closes_what_it_left_sounding():
    rep = EventRepresentation(0.05, 24, 0, 48, 72, "beats", 4)
    on, shift = rep.token_to_id["NOTE_ON_60"], rep.token_to_id["TIME_SHIFT_4"]
    prompt = [BOS, on, rep.token_to_id["NOTE_ON_64"], shift, shift, shift]  # 3 beats held
    grammar = EventGrammar(rep, max_note_steps=16, max_voices=2)
    seqs = generate_tokens(
        RandomLM(len(rep.vocab), 3),
        [prompt] * 16,
        400,
        EOS,
        generator=torch.Generator().manual_seed(4),
        grammar=grammar,
    )
    for s in seqs:
        assert s[: len(prompt)] == prompt
        assert event_violations(rep, s, 16, 2) == []


def test_a_grammar_mask_has_a_legal_id_in_every_state():
    rep = EventRepresentation(0.05, 8, 0, 60, 63, "beats", 4)
    grammar = EventGrammar(rep, max_note_steps=2, max_voices=2)
    state = grammar.start(1, torch.device("cpu"))
    for tok in ("NOTE_ON_60", "NOTE_ON_61"):  # two voices struck at this very step
        state = grammar.advance(state, torch.tensor([rep.token_to_id[tok]]))
    allowed = rep.ids_to_tokens(torch.nonzero(grammar.allowed(state)[0]).flatten().tolist())
    assert allowed == ["TIME_SHIFT_1", "TIME_SHIFT_2"]
    state = grammar.advance(state, torch.tensor([rep.token_to_id["TIME_SHIFT_2"]]))  # at the cap
    allowed = rep.ids_to_tokens(torch.nonzero(grammar.allowed(state)[0]).flatten().tolist())
    assert allowed == ["NOTE_OFF_60", "NOTE_OFF_61"]


# -- time in beats ------------------------------------------------------------------------------


def score_notes(path, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(onset, offset, pitch) of a file's notes in 1/steps quarter notes, from its ticks."""
    from midigen.data.midi_io import read_tick_notes

    t = read_tick_notes(path)
    on, off = np.asarray(t.start_tick) * steps / t.tpq, np.asarray(t.end_tick) * steps / t.tpq
    return on, off, np.asarray(t.pitch)


@pytest.mark.parametrize("steps_per_quarter", [4, 8])
def test_beats_round_trip_is_exact_on_every_chorale(bach_corpus, tmp_path, steps_per_quarter):
    """Encode -> write at another tempo -> read back, in steps of the score: every onset of
    every chorale comes back exactly where it was (the notes are the representation's: a
    unison of two voices is one note, the longer), with its length. At 4 steps per quarter the
    8 chorales with a 32nd note (bwv161.6, bwv251 ...) are not on the grid; at 8 every one is."""
    rep = EventRepresentation(0.05, 100, 0, 21, 108, "beats", steps_per_quarter)
    exact = 0
    for path in bach_corpus:
        on, off, pitch = score_notes(path, steps_per_quarter)
        if not (np.all(on == np.rint(on)) and np.all(off == np.rint(off))):
            assert steps_per_quarter == 4, f"{path.name} is not on the {steps_per_quarter}-per-quarter grid"
            continue
        ids = rep.encode(rep.read_piece(path))
        out = tmp_path / "back.mid"
        rep.write_midi(ids, out, OutputContext(tempo_bpm=76.0))
        back = set(zip(*(a.tolist() for a in score_notes(out, steps_per_quarter)), strict=True))
        assert {(a, p) for a, _, p in back} == set(zip(on.tolist(), pitch.tolist(), strict=True)), path.name
        q_on, q_off, q_pitch = rep.quantize(rep.read_piece(path))[:3]
        assert back == set(zip(q_on.tolist(), q_off.tolist(), q_pitch.tolist(), strict=True)), path.name
        exact += 1
    assert exact == len(bach_corpus) - (8 if steps_per_quarter == 4 else 0)


def test_beats_tokens_do_not_depend_on_the_files_tempo(tmp_path):
    """The same score written at 60 and at 150 bpm gives the same tokens in beats (not in seconds)."""
    from midigen.data.midi_io import make_notes, write_midi

    quarters = np.array([0, 1, 1.5, 2, 3.25])
    ids = {}
    for bpm in (60.0, 150.0):
        spq = 60.0 / bpm
        notes = make_notes(quarters * spq, (quarters + 0.5) * spq, [60, 62, 64, 65, 67])
        write_midi(notes, tmp_path / f"{bpm}.mid", tempo_bpm=bpm)
        beats = EventRepresentation(0.05, 100, 0, 21, 108, "beats", 4)
        secs = EventRepresentation(0.05, 100, 0, 21, 108, "seconds", 4)
        ids[bpm] = (
            beats.encode(beats.read_piece(tmp_path / f"{bpm}.mid")),
            secs.encode(secs.read_piece(tmp_path / f"{bpm}.mid")),
        )
    assert np.array_equal(ids[60.0][0], ids[150.0][0])
    assert not np.array_equal(ids[60.0][1], ids[150.0][1])
