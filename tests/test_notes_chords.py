"""notes_chords: one token per onset (a note, or a chord in normal order), with durations,
rests, <BOS>/<EOS> and <UNK> for chords rarer than preprocess.chord_min_count."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import yaml
from conftest import PITCH_MAX, PITCH_MIN, PROJECT_ROOT, subprocess_env

from midigen import representations
from midigen.data.midi_io import make_notes
from midigen.data.preprocess import preprocess
from midigen.data.store import TokenStore
from midigen.evaluation.metrics import distinct_share, longest_run
from midigen.representations import NotesChordsRepresentation
from midigen.representations.notes_chords import normal_order
from midigen.representations.score_time import STEP_S


def params(**over) -> dict:
    p = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))["preprocess"]
    p.update(representation="notes_chords", pitch_min=PITCH_MIN, pitch_max=PITCH_MAX, **over)
    return p


def steps(seconds) -> np.ndarray:
    return np.floor(np.asarray(seconds) / STEP_S + 0.5).astype(np.int64)


def corpus_rep(paths, **over) -> NotesChordsRepresentation:
    """The representation preprocess would build for these files (chords counted over them)."""
    bare = NotesChordsRepresentation(PITCH_MIN, PITCH_MAX)
    counts = Counter(c for p in paths for c in bare.chord_names(bare.read(p)))
    return representations.from_params(params(**over), counts)


def expected_onsets(notes: np.ndarray) -> list[tuple[int, int, object]]:
    """Per onset step, written independently of the tokenizer: (onset, sounding end, content)
    where content is the pitch for a single note and the pitch-class set for a chord."""
    on, off = steps(notes["start_s"]), np.maximum(steps(notes["end_s"]), steps(notes["start_s"]) + 1)
    by_onset: dict[int, list[tuple[int, int]]] = {}
    for o, f, p in zip(on.tolist(), off.tolist(), notes["pitch"].tolist(), strict=True):
        by_onset.setdefault(o, []).append((f, p))
    keys = sorted(by_onset)
    out = []
    for k, o in enumerate(keys):
        end = max(f for f, _ in by_onset[o])
        if k + 1 < len(keys):
            end = min(end, keys[k + 1])
        pitches = {p for _, p in by_onset[o]}
        out.append((o, end, pitches.pop() if len(pitches) == 1 else frozenset(p % 12 for p in pitches)))
    return out


# -- chords in normal order --------------------------------------------------------------------

# Forte and Rahn disagree on these (music21 follows Forte); symmetric sets need the lowest start
TRICKY = [(0, 1, 5, 6, 8), (0, 1, 3, 7, 8), (0, 2, 3, 7, 8), (0, 1, 4, 5, 7), (0, 3, 6, 9), (0, 4, 8), (0, 2, 6, 8)]


def test_normal_order_matches_music21_on_the_chorales_chords_and_hard_cases(chorale_paths):
    from music21 import chord

    rep = NotesChordsRepresentation(PITCH_MIN, PITCH_MAX)
    seen = {tuple(sorted(normal_order(p))) for path in chorale_paths for _, _, p in rep.onsets(rep.read(path))}
    sets = sorted(s for s in seen if len(s) > 1)[:40] + TRICKY + [(7, 11, 2, 5), (9, 0, 4), (2, 7, 8, 9)]
    assert len(sets) > 30
    for pcs in sets:
        assert list(normal_order(pcs)) == chord.Chord(list(pcs)).normalOrder, pcs
    assert normal_order([67, 71, 74, 77]) == (11, 2, 5, 7)  # G7 in any voicing
    assert normal_order([48, 64, 67, 72]) == (0, 4, 7)


# -- round trips on real pieces ----------------------------------------------------------------


def test_chorales_round_trip_onsets_notes_and_chord_pitch_classes(chorale_paths):
    rep = corpus_rep(chorale_paths, chord_min_count=1)
    for path in chorale_paths:
        notes = rep.read(path)
        ids = rep.encode(notes)
        assert rep.token_to_id["<UNK>"] not in ids.tolist(), "min count 1 keeps every chord"
        decoded = rep.decode(ids)
        expected = expected_onsets(notes)
        got = expected_onsets(decoded)
        assert [(o, e) for o, e, _ in got] == [(o, e) for o, e, _ in expected], path.name
        for (o, _, want), (_, _, have) in zip(expected, got, strict=True):
            if isinstance(want, frozenset):
                # an octave doubling (chord "0") comes back as one note of that pitch class
                have = frozenset([have % 12]) if isinstance(have, int) else have
                assert have == want, f"{path.name} step {o}: chord {sorted(want)} came back as {have}"
            else:
                assert have == want, f"{path.name} step {o}: note {want} came back as {have}"


def test_folk_melodies_round_trip_exactly(folk_paths):
    rep = corpus_rep(folk_paths)
    for path in folk_paths:
        notes = rep.read(path)
        decoded = rep.decode(rep.encode(notes))
        assert np.array_equal(decoded["pitch"], notes["pitch"]), path.name
        assert np.array_equal(decoded["start_s"], notes["start_s"]), path.name
        assert np.array_equal(decoded["end_s"], notes["end_s"]), path.name


def test_durations_and_rests_are_tokens_and_long_values_chain():
    rep = NotesChordsRepresentation(PITCH_MIN, PITCH_MAX, chords=["0.4.7"])
    # C major chord for 5 sixteenths, silence for 3, then E4 for 20 sixteenths (16 + 4)
    notes = make_notes(np.array([0, 0, 0, 8]) * STEP_S, np.array([5, 5, 5, 28]) * STEP_S, [48, 64, 67, 64])
    tokens = rep.ids_to_tokens(rep.encode(notes))
    assert tokens == ["<BOS>", "0.4.7", "DUR_5", "REST", "DUR_3", "E4", "DUR_16", "DUR_4", "<EOS>"]
    decoded = rep.decode(rep.encode(notes))
    assert steps(decoded["start_s"]).tolist() == [0, 0, 0, 8]
    assert steps(decoded["end_s"]).tolist() == [5, 5, 5, 28]
    assert sorted(decoded["pitch"][:3] % 12) == [0, 4, 7]


def test_fixed_step_is_the_seed_design_one_token_per_step_without_durations(chorale_paths):
    rep = corpus_rep(chorale_paths, chord_min_count=1, fixed_step_quarters=0.5)
    assert not any(t.startswith("DUR_") for t in rep.vocab)
    notes = rep.read(chorale_paths[0])
    ids = rep.encode(notes)
    decoded = rep.decode(ids)
    n_tokens = len(ids) - 2
    onsets = np.unique(decoded["start_s"])
    # every token is one 0.5-quarter step (0.25 s at the score tempo); notes last one step
    assert np.all(np.isin(onsets, np.arange(n_tokens) * 0.25))
    assert np.allclose(decoded["end_s"] - decoded["start_s"], 0.25)
    assert len(onsets) == len(expected_onsets(notes))


# -- the vocabulary ----------------------------------------------------------------------------


def test_chords_rarer_than_min_count_fold_into_unk(chorale_paths):
    bare = NotesChordsRepresentation(PITCH_MIN, PITCH_MAX)
    counts = Counter(c for p in chorale_paths for c in bare.chord_names(bare.read(p)))
    rare = {c for c, n in counts.items() if n < 3}
    assert rare and len(rare) < len(counts)
    rep = representations.from_params(params(chord_min_count=3), counts)
    assert set(rep.chords) == set(counts) - rare
    unk = rep.token_to_id["<UNK>"]
    n_unk = sum(int((rep.encode(rep.read(p)) == unk).sum()) for p in chorale_paths)
    assert n_unk == sum(counts[c] for c in rare)
    # an <UNK> onset is silent but keeps its time: what follows it does not move
    path = chorale_paths[0]
    every_chord = corpus_rep(chorale_paths, chord_min_count=1)
    full = every_chord.decode(every_chord.encode(rep.read(path)))
    folded = rep.decode(rep.encode(rep.read(path)))
    assert set(np.unique(folded["start_s"])) <= set(np.unique(full["start_s"]))
    assert len(folded) < len(full)


def test_vocab_is_the_same_whatever_the_file_order_or_worker_count(chorale_paths, folk_paths, tmp_path):
    files = chorale_paths + folk_paths
    manifest = [{"rel_path": p.name, "path": str(p), "size": p.stat().st_size} for p in files]
    p = params()
    preprocess(manifest, p, tmp_path / "a", workers=1)
    preprocess(manifest[::-1], p, tmp_path / "b", workers=2)
    a, b = (json.loads((tmp_path / d / "vocab.json").read_text(encoding="utf-8")) for d in ("a", "b"))
    assert a == b
    assert a["representation"]["chords"], "the chorales have chords above min count"
    assert (tmp_path / "a/chord_counts.csv").read_text() == (tmp_path / "b/chord_counts.csv").read_text()
    table = (tmp_path / "a/chord_counts.csv").read_text().splitlines()
    assert table[0] == "chord,count,in_vocab"
    kept = [r.split(",")[0] for r in table[1:] if r.endswith("True")]
    assert sorted(kept) == sorted(a["representation"]["chords"])
    assert all(int(r.split(",")[1]) >= p["chord_min_count"] for r in table[1:] if r.endswith("True"))
    # the store (and so every checkpoint) rebuilds the identical representation from its config
    store = TokenStore(tmp_path / "a")
    assert store.representation.vocab == a["tokens"]
    assert len(store) == len(files)


# -- decoding and repetition -------------------------------------------------------------------


def test_decode_accepts_any_ids(chorale_paths):
    rep = corpus_rep(chorale_paths)
    rng = np.random.default_rng(1)
    for _ in range(5):
        notes = rep.decode(rng.integers(-3, len(rep.vocab) + 3, size=400))
        assert np.all(notes["end_s"] > notes["start_s"])
        assert np.all((notes["pitch"] >= 0) & (notes["pitch"] <= 127))
    # an onset the model left without a duration lasts a quarter (4 sixteenths)
    c4, e4 = rep.token_to_id["C4"], rep.token_to_id["E4"]
    assert steps(rep.decode(np.array([c4, e4]))["start_s"]).tolist() == [0, 4]


def test_a_chord_repeated_forever_is_one_long_run_whatever_its_durations(chorale_paths):
    """Seed 002's failure: the repetition units are the onset tokens, so durations in between
    do not hide the run."""
    rep = corpus_rep(chorale_paths)
    chord = rep.token_to_id[rep.chords[0]]
    d2, d4 = rep.token_to_id["DUR_2"], rep.token_to_id["DUR_4"]
    stuck = np.array([1] + [chord, d2, chord, d4] * 25 + [2])
    units = rep.repetition_units(stuck)
    assert longest_run(units) == 50
    assert distinct_share(units) == pytest.approx((1 / 32 + 1 / 18) / 2)  # windows of 32 and 18
    # stuck on durations alone: counted token by token
    assert longest_run(rep.repetition_units(np.array([1] + [d4] * 30))) == 30
    real = rep.repetition_units(rep.encode(rep.read(chorale_paths[0])))
    assert longest_run(real) < 10 and distinct_share(real) > 0.1
    # per window: a piece five times as long (a long generated piece) is judged alike
    assert distinct_share(np.tile(real, 5)) == pytest.approx(distinct_share(real), abs=0.1)


def test_cli_tokenize_takes_the_chords_from_the_stores_vocab(chorale_paths, tmp_path):
    full = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))
    full["preprocess"].update(params())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(full), encoding="utf-8")

    def tokenize() -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "midigen", "tokenize", str(chorale_paths[0])]
        return subprocess.run(cmd, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=120)

    missing = tokenize()
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert "notes_chords takes its chords from the corpus" in missing.stderr

    manifest = [{"rel_path": p.name, "path": str(p), "size": p.stat().st_size} for p in chorale_paths]
    preprocess(manifest, params(), tmp_path / "data/tokens", workers=1)
    store = TokenStore(tmp_path / "data/tokens")
    done = tokenize()
    assert done.returncode == 0, done.stderr
    row = store.index.index[store.index["rel_path"] == chorale_paths[0].name][0]
    assert done.stdout.split() == store.representation.ids_to_tokens(store.piece(row))
