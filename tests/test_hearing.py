"""Evaluation that hears (midigen.evaluation.hearing): the classifier two-sample test cannot tell
halves of real chorales apart and tells random notes from chorales every time; grid share,
longest and hanging notes and voice counts on small files built here; and the evaluate stage
samples as many pieces as it compares with and reports what it heard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_pretty_midi
from test_interruption import tiny_params_yaml, write_corpus
from test_report import run_stage_in_process, write_training_outputs

from midigen.data.ingest import export_music21_file, music21_files
from midigen.data.midi_io import make_notes, write_midi
from midigen.errors import DataError
from midigen.evaluation import hearing
from midigen.evaluation.lm_eval import source_files

#: real chorales the classifier is tried on: with 20 a side, halvings of one set score 0.43..0.56
N_CHORALES = 40


def features(paths: list[Path]) -> np.ndarray:
    return np.array([hearing.feature_vector(hearing.listen(hearing.read_piece(p))) for p in paths])


@pytest.fixture(scope="module")
def chorale_features(tmp_path_factory) -> np.ndarray:
    """Feature rows of the first N_CHORALES Bach chorales, exported to MIDI as ingest exports them."""
    out = tmp_path_factory.mktemp("bach")
    for src in music21_files("bach")[:N_CHORALES]:
        results = export_music21_file((str(src), str(out), "bach"))
        assert all(reason is None for _, reason in results), results
    paths = sorted(out.glob("bach/*.mid"))
    assert len(paths) == N_CHORALES
    return features(paths)


def random_notes(path: Path, seed: int) -> Path:
    """120 notes of random pitch, onset and length: music by no one."""
    rng = np.random.default_rng(seed)
    starts = rng.uniform(0, 40, 120)
    notes = [
        (int(p), float(s), float(s + d))
        for p, s, d in zip(rng.integers(36, 85, 120), starts, rng.uniform(0.1, 2, 120), strict=True)
    ]
    return write_pretty_midi(path, notes)


def test_the_classifier_cannot_tell_halves_of_the_real_chorales_apart(chorale_features):
    accuracies = []
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(N_CHORALES)
        half = N_CHORALES // 2
        result = hearing.c2st(chorale_features[order[:half]], chorale_features[order[half:]], 5, 20, seed)
        assert result["n_per_class"] == half and result["ci_low"] <= result["accuracy"] <= result["ci_high"]
        accuracies.append(result["accuracy"])
    assert 0.35 <= np.mean(accuracies) <= 0.65, accuracies


def test_the_classifier_tells_random_notes_from_chorales_and_repeats_itself(tmp_path, chorale_features):
    noise = features([random_notes(tmp_path / f"noise_{i}.mid", i) for i in range(20)])
    result = hearing.c2st(noise, chorale_features, 5, 20, seed=3)
    # balanced classes: 20 chorales of the 40 are drawn per resample
    assert result["n_per_class"] == 20 and result["folds"] == 5
    assert result["accuracy"] >= 0.95, result
    assert hearing.c2st(noise, chorale_features, 5, 20, seed=3) == result
    assert hearing.indistinguishability(result["accuracy"]) <= 0.1


def test_indistinguishability_is_one_at_chance_zero_when_told_apart_and_zero_without_a_test():
    assert hearing.indistinguishability(0.5) == 1.0 and hearing.indistinguishability(0.3) == 1.0
    assert hearing.indistinguishability(0.75) == pytest.approx(0.5)
    assert hearing.indistinguishability(1.0) == 0.0
    one = np.ones((1, 4))
    result = hearing.c2st(one, np.zeros((5, 4)), 5, 20, 0)
    assert result["accuracy"] is None and result["n_per_class"] == 1
    assert hearing.indistinguishability(result["accuracy"]) == 0.0


def test_onsets_on_sixteenths_at_76_bpm_are_on_the_grid_and_onsets_every_50_ms_are_not(tmp_path):
    sixteenth_s = 60 / 76 / 4
    k = np.arange(64)
    on = tmp_path / "sixteenths.mid"
    write_midi(make_notes(k * sixteenth_s, (k + 1) * sixteenth_s, 60 + k % 12), on, tempo_bpm=76)
    piece = hearing.read_piece(on)
    # beats follow the file's own quarter notes, not seconds at 120 bpm
    np.testing.assert_allclose(piece.start_beat, k / 4, atol=0.01)
    assert hearing.listen(piece).on_grid == 64
    off = tmp_path / "every_50ms.mid"
    write_midi(make_notes(k * 0.05, k * 0.05 + 0.04, 60 + k % 12), off, tempo_bpm=76)
    heard = hearing.listen(hearing.read_piece(off))
    assert heard.onsets == 64 and heard.on_grid / heard.onsets < 0.5
    summary = hearing.set_summary([hearing.listen(piece), heard])
    assert summary["on_grid_share"] == round((64 + heard.on_grid) / 128, 4)


def test_longest_notes_and_hanging_notes_in_beats(tmp_path):
    # the test set at 120 bpm: notes of 1, 2 and 4 beats (0.5, 1 and 2 s)
    write_midi(make_notes([0, 0.5, 1.5], [0.5, 1.5, 3.5], [60, 62, 64]), tmp_path / "t.mid", 120.0)
    # the generated set at 60 bpm: 1, 6 and 8 beats (as many seconds)
    write_midi(make_notes([0, 1, 7], [1, 7, 15], [60, 62, 64]), tmp_path / "g.mid", 60.0)
    t = [hearing.listen(hearing.read_piece(tmp_path / "t.mid"))]
    g = [hearing.listen(hearing.read_piece(tmp_path / "g.mid"))]
    assert (t[0].longest_beats, t[0].longest_s) == pytest.approx((4.0, 2.0), abs=0.01)
    assert (g[0].longest_beats, g[0].longest_s) == pytest.approx((8.0, 8.0), abs=0.01)
    compared = hearing.compare(g, t)
    assert compared["hanging_note_share"] == pytest.approx(2 / 3, abs=1e-4)
    assert compared["test"]["longest_note_beats"] == pytest.approx(4.0, abs=0.01)
    assert hearing.compare(t, t)["hanging_note_share"] == 0.0


def test_voice_counts_top_line_and_key_of_a_small_chord_file(tmp_path):
    # 120 bpm: a C major triad for 2 beats, a C above from beat 1 to 3, a D from beat 2 to 3
    path = tmp_path / "chords.mid"
    write_pretty_midi(path, [(60, 0, 1), (64, 0, 1), (67, 0, 1), (72, 0.5, 1.5), (74, 1.0, 1.5)])
    piece = hearing.read_piece(path)
    heard = hearing.listen(piece)
    # onsets at beats 0, 1, 2 with 3, 4 and 2 notes sounding (the triad ends as the D starts)
    np.testing.assert_array_equal(heard.histograms["voice_count"], [0, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(hearing.top_line(piece), [67, 72, 74])
    assert heard.histograms["interval"][[5, 2]].tolist() == [1, 1]
    assert heard.in_key == heard.notes == 5
    summary = hearing.set_summary([heard])
    assert summary["voice_count"] == {
        "1": 0.0,
        "2": 0.3333,
        "3": 0.3333,
        "4": 0.3333,
        "5": 0.0,
        "6": 0.0,
        "7": 0.0,
        "8+": 0.0,
    }
    assert summary["pitch_in_key"] == 1.0
    assert hearing.compare([heard], [heard])["tv"] == dict.fromkeys(hearing.HISTOGRAMS, 0.0)


def test_a_unison_of_two_tracks_sounds_as_one_pitch(tmp_path):
    """Soprano and alto on one E (alto held on into the next chord), a bass C: two pitches sound
    at each onset, not three; notes of one pitch one after the other stay two notes."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    for notes in ([(64, 0, 0.5), (65, 0.5, 1.0)], [(64, 0, 0.75)], [(48, 0, 0.5), (48, 0.5, 1.0)]):
        inst = pretty_midi.Instrument(0)
        inst.notes += [pretty_midi.Note(80, p, s, e) for p, s, e in notes]
        pm.instruments.append(inst)
    pm.write(str(tmp_path / "unison.mid"))
    piece = hearing.read_piece(tmp_path / "unison.mid")
    starts, ends = hearing.merged_unisons(piece)
    assert sorted(zip(starts.tolist(), ends.tolist(), strict=True)) == [(0, 1), (0, 1.5), (1, 2), (1, 2)]
    # onset 0: E, C; onset 1: F, C and the alto's E still sounding
    np.testing.assert_array_equal(hearing.listen(piece).histograms["voice_count"], [0, 1, 1, 0, 0, 0, 0, 0])


def test_an_empty_generated_file_is_heard_as_nothing_not_an_error(tmp_path):
    write_midi(make_notes([], [], []), tmp_path / "empty.mid")
    heard = hearing.listen(hearing.read_piece(tmp_path / "empty.mid"))
    assert heard.notes == heard.onsets == 0 and heard.longest_beats == 0.0
    summary = hearing.set_summary([heard])
    assert summary["on_grid_share"] is None and summary["pitch_in_key"] is None
    chord = write_pretty_midi(tmp_path / "chord.mid", [(60, 0, 1), (64, 0, 1)])
    compared = hearing.compare([heard], [hearing.listen(hearing.read_piece(chord))])
    assert compared["hanging_note_share"] is None and compared["tv"]["voice_count"] == 1.0


def test_test_pieces_are_found_through_the_manifest_and_a_missing_one_is_named(tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("rel_path,path,size,sha1\na.mid,data/raw/midi/a.mid,1,x\nb.mid,/elsewhere/b.mid,1,y\n")
    assert source_files(["b.mid", "a.mid"], manifest) == [Path("/elsewhere/b.mid"), Path("data/raw/midi/a.mid")]
    with pytest.raises(DataError, match="no row for c.mid"):
        source_files(["a.mid", "c.mid"], manifest)
    with pytest.raises(DataError, match="missing"):
        source_files(["a.mid"], tmp_path / "none.csv")


def test_the_evaluate_stage_samples_as_many_pieces_as_it_compares_with(tmp_path, chorale_paths, trained_run):
    """ingest, preprocess, split, then evaluate straight away: the next-token evaluation needs
    no generate stage; it writes its own pieces to outputs/eval."""
    root = tmp_path / "run"
    root.mkdir()
    tiny_params_yaml(root, generate={"max_steps": 60}, split={"test_ratio": 0.3, "val_ratio": 0.15})
    write_corpus(root / "data/external/tiny", chorale_paths)
    (root / "metrics").mkdir()
    for name in ("ingest", "preprocess", "split"):
        run_stage_in_process(name, root)
    write_training_outputs(root, trained_run)
    run_stage_in_process("evaluate", root)
    ev = json.loads((root / "metrics/eval.json").read_text(encoding="utf-8"))
    n = ev["num_test"]
    assert n >= 2 and ev["num_generated"] == n
    assert len(list((root / "outputs/eval").glob("sample_*.mid"))) == n
    assert ev["hearing"]["generated"]["pieces"] == ev["hearing"]["test"]["pieces"] == n
    assert ev["c2st"]["n_per_class"] == n and 0 <= ev["c2st"]["accuracy"] <= 1
    expected = ev["overlap_mean"] * hearing.indistinguishability(ev["c2st"]["accuracy"])
    assert ev["distribution_score"] == pytest.approx(expected, abs=1e-4)
    assert not (root / "outputs/generated").exists()


def test_the_feature_groups_tile_the_feature_vector_and_name_its_columns(tmp_path):
    path = write_pretty_midi(tmp_path / "chords.mid", [(60, 0, 1), (64, 0, 1), (67, 0, 1), (72, 0.5, 1.5)])
    heard = hearing.listen(hearing.read_piece(path))
    row = hearing.feature_vector(heard)
    groups = hearing.feature_groups(heard)
    covered = np.concatenate([np.arange(len(row))[s] for s in groups.values()])
    np.testing.assert_array_equal(covered, np.arange(len(row)))  # every column once, in order
    np.testing.assert_allclose(row[groups["voice_count"]], hearing.shares(heard.histograms["voice_count"]))
    np.testing.assert_allclose(row[groups["pitch_class"]], hearing.shares(heard.pitch_classes))
    assert row[groups["pitch_mean"]][0] == heard.pitch_mean and row[groups["pitch_std"]][0] == heard.pitch_std
    assert row[groups["longest_note"]][0] == np.log2(1.0 + heard.longest_beats)
