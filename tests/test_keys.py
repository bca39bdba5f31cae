"""preprocess.key c: pieces moved to C major / A minor before tokenizing (BachBot), generated
pieces moved back to keys drawn from the training pieces' (midigen.data.keys), on real
chorales and a model trained for real on builtin:nabiya."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from midigen import representations
from midigen.data import keys
from midigen.data.midi_io import NOTE_DTYPE, read_notes
from midigen.data.preprocess import preprocess
from midigen.data.store import TokenStore
from midigen.errors import ParamsError
from midigen.params import DEFAULTS, validate

#: what music21's key analysis says of three fixture chorales, and the shift of its major to C
MUSIC21_KEYS = {"bwv66.6": ("F#", "minor", 3), "bwv1.6": ("F", "major", -5), "bwv10.7": ("G", "minor", 2)}


def keyed(representation: str = "voices", key: str = "c") -> dict:
    p = {**DEFAULTS["preprocess"], "representation": representation, "key": key}
    return {**p, "time_unit": "beats"} if representation == "events" else p


def test_the_shift_moves_the_key_music21s_analysis_finds_to_c_major_or_a_minor(chorale_paths):
    from music21 import converter

    by_name = {p.stem: p for p in chorale_paths}
    for name, (tonic, mode, shift) in MUSIC21_KEYS.items():
        found = converter.parse(str(by_name[name])).analyze("key")
        assert (found.tonic.name, found.mode) == (tonic, mode), (name, found)
        major = found if found.mode == "major" else found.relative
        root = keys.major_root(read_notes(by_name[name])["pitch"])
        assert root == major.tonic.pitchClass, name
        assert keys.shift_to_c(root) == shift, name


def test_a_chorale_in_g_major_moves_up_a_fourth_to_c(tmp_path):
    from music21 import corpus

    path = tmp_path / "bwv269.mid"
    corpus.parse("bach/bwv269").write("midi", fp=str(path))  # G major, one sharp
    rep = representations.from_params(keyed())
    ids, info = rep.tokenize_file(str(path), keyed())
    assert info[keys.SHIFT_COLUMN] == 5  # G -> C above: -7 mod 12, taken in -5..+6
    original = rep.decode(rep.encode(rep.read_piece(path)))
    assert np.array_equal(rep.decode(ids)["pitch"], original["pitch"] + 5)


@pytest.mark.parametrize("name", ["voices", "events", "pitch_duration", "notes_chords"])
def test_preprocess_stores_every_piece_in_c_and_its_shift_in_the_index(name, chorale_paths, tmp_path):
    manifest = [{"rel_path": p.name, "path": str(p)} for p in chorale_paths]
    preprocess(manifest, keyed(name), tmp_path / "c", workers=1)
    store = TokenStore(tmp_path / "c")
    rep = store.representation
    stored = set(store.index["rel_path"])  # voices rejects bwv1.6 (its horn part: five voices)
    assert len(stored) >= 4
    expected = {p.name: keys.shift_to_c(keys.major_root(read_notes(p)["pitch"])) for p in chorale_paths}
    assert dict(zip(store.index["rel_path"], store.index[keys.SHIFT_COLUMN], strict=True)) == {
        rel: s for rel, s in expected.items() if rel in stored
    }
    for i in range(len(store)):  # pitch_duration keeps the top voice: the key is the piece's
        if name != "pitch_duration":
            assert keys.major_root(rep.decode(store.piece(i))["pitch"]) == 0  # C major / A minor
    if name == "notes_chords":  # its chord vocabulary is counted in the keys it stores
        return
    preprocess(manifest, keyed(name, "keep"), tmp_path / "keep", workers=1)
    kept = TokenStore(tmp_path / "keep")
    assert keys.SHIFT_COLUMN not in kept.index.columns
    for i, rel in enumerate(store.index["rel_path"]):
        moved, own = rep.decode(store.piece(i)), rep.decode(kept.piece(i))
        assert np.array_equal(moved["pitch"], own["pitch"] + expected[rel]), rel
        assert np.array_equal(moved["start_s"], own["start_s"]), rel


def test_auto_moves_voices_to_c_and_keeps_the_others_keys():
    assert [keys.resolve("auto", r) for r in ("voices", "events", "notes_chords", "drums")] == ["c"] + ["keep"] * 3
    assert keys.resolve("c", "events") == "c" and keys.resolve("keep", "voices") == "keep"


def test_the_drum_groove_and_melody_grids_refuse_key_c(tmp_path):
    raw = {section: dict(values) for section, values in DEFAULTS.items()}
    for grid in ("drums", "groove", "melody"):
        raw["preprocess"].update(representation=grid, key="auto")
        assert validate(raw)["preprocess"]["key"] == "auto"  # the default stays valid for them
        raw["preprocess"].update(key="c")
        with pytest.raises(ParamsError, match=rf"preprocess.key = 'c': the {grid} grids"):
            validate(raw)
    with pytest.raises(ParamsError, match="preprocess.key = 'c': the melody representation"):
        preprocess([], {**DEFAULTS["preprocess"], "representation": "melody", "key": "c"}, tmp_path / "t")


def test_back_shifts_follow_the_training_keys_reproducibly():
    dist = keys.distribution([-5] * 30 + [0] * 60 + [2] * 10)
    assert dist == [[-5, 30], [0, 60], [2, 10]]
    drawn = keys.back_shifts(dist, 3000, seed=7)
    assert drawn == keys.back_shifts(dist, 3000, seed=7)
    assert drawn != keys.back_shifts(dist, 3000, seed=8)
    share = pd.Series(drawn).value_counts(normalize=True)
    assert set(share.index) == {5, 0, -2}  # minus the training shifts: back to their keys
    assert abs(share[5] - 0.3) < 0.03 and abs(share[0] - 0.6) < 0.03 and abs(share[-2] - 0.1) < 0.03
    assert keys.back_shifts(None, 3, seed=7) == [0, 0, 0]


def notes_of(pitches: list[int]) -> np.ndarray:
    notes = np.zeros(len(pitches), dtype=NOTE_DTYPE)
    notes["pitch"], notes["start_s"], notes["end_s"] = pitches, np.arange(len(pitches)), np.arange(len(pitches)) + 1
    return notes


def test_a_moved_piece_stays_in_the_pitch_range_an_octave_away_or_folded():
    top = keys.transpose_notes(notes_of([100, 104, 107]), 6, 21, 108)
    assert top["pitch"].tolist() == [94, 98, 101]  # +6 would leave the range: -6, the same key
    wide = keys.transpose_notes(notes_of([60, 64, 67, 72]), 3, 60, 72)
    assert wide["pitch"].tolist() == [63, 67, 70, 63]  # no octave fits all: the top note folds
    assert keys.transpose_key("Am", 5) == "Dm" and keys.transpose_key("C", -5) == "G"
    assert keys.transpose_key("none", 3) == "none"


def test_generate_moves_each_piece_by_a_key_drawn_from_the_checkpoint(tmp_path, monkeypatch, torch_one_thread):
    from midigen.data.dataset import load_split_data
    from midigen.generation.generate import generate, read_pieces
    from midigen.training import checkpoint
    from tests.conftest import nabiya_project

    params = nabiya_project(tmp_path, "pitch_duration", key="c")
    params["generate"].update(num_files=3, max_steps=40)
    monkeypatch.chdir(tmp_path)
    index = pd.read_csv("data/tokens/index.csv")
    (shift,) = index[keys.SHIFT_COLUMN].tolist()
    ckpt = checkpoint.load("models/best.pt")
    assert keys.of_checkpoint(ckpt) == [[shift, 1]]
    assert checkpoint.summary(ckpt)["key_shifts"] == [[shift, 1]]  # what `midigen info` shows
    data = load_split_data()
    outputs = []
    for out in ("a", "b"):
        generate("models/best.pt", params, out, data)
        outputs.append([p.read_bytes() for p in sorted((tmp_path / out).glob("*.mid"))])
    assert outputs[0] == outputs[1] and len(outputs[0]) == 3  # the same seed, the same keys
    rep = data.store.representation
    paths = sorted((tmp_path / "a").glob("*.mid"))
    for path, ids in zip(paths, read_pieces([p.with_suffix(".txt") for p in paths], rep), strict=True):
        written, in_c = read_notes(path), rep.decode(ids)
        back = keys.fit_shift(in_c["pitch"], -shift, rep.pitch_min, rep.pitch_max)
        assert sorted(written["pitch"].tolist()) == sorted((in_c["pitch"] + back).tolist()), path.name
        assert written["pitch"].min() >= rep.pitch_min and written["pitch"].max() <= rep.pitch_max
    # the Python API writes the same keys as the generate stage (midigen.generation.generate.keyed_contexts)
    import yaml

    import midigen.api

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    pieces = midigen.api.load("models/best.pt", "cpu", "params.yaml").sample(3)
    assert [p.midi_bytes() for p in pieces] == outputs[0]
