"""Scores: MIDI on a beat grid -> MusicXML (midigen.export.musicxml), read back with music21."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pretty_midi
import pytest
from conftest import midi_notes, nabiya_project, run_stage, score_notes

from midigen import representations
from midigen.errors import MidigenError, ParamsError
from midigen.export.musicxml import read_musicxml_notes, write_musicxml
from midigen.generation.generate import write_pieces
from midigen.params import DEFAULTS, resolve_time_unit, validate
from midigen.representations import OutputContext


def rep_of(name: str) -> representations.Representation:
    params = resolve_time_unit(dict(DEFAULTS["preprocess"], representation=name), "music21:bach")
    return representations.from_params(params)


def test_a_real_chorale_through_the_voices_representation_keeps_its_notes_key_and_parts(chorale_paths, tmp_path):
    rep = rep_of("voices")
    ids = rep.encode(rep.read_piece(chorale_paths[0]))
    (mid,) = write_pieces([ids], rep, tmp_path, "piece", context=OutputContext(key="Bb"), formats=["mid", "musicxml"])
    xml = mid.with_suffix(".musicxml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["piece_00.mid", "piece_00.musicxml", "piece_00.txt"]
    assert score_notes(xml) == midi_notes(mid) and len(midi_notes(mid)) > 100
    assert [name for name, *_ in read_musicxml_notes(xml)][:1] == ["Soprano"]
    from music21 import converter

    score = converter.parse(str(xml))
    assert [p.partName for p in score.parts] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert {str(k) for k in score.recurse().getElementsByClass("Key")} == {"B- major"}


def test_a_chorale_through_event_tokens_in_beats_is_one_part_with_its_notes(chorale_paths, tmp_path):
    rep = rep_of("events")  # time_unit beats for a music21 corpus: the default pipeline's tokens
    ids = rep.encode(rep.read_piece(chorale_paths[1]))
    (mid,) = write_pieces([ids], rep, tmp_path, formats=["mid", "musicxml"], context=OutputContext(tempo_bpm=96))
    assert score_notes(mid.with_suffix(".musicxml")) == midi_notes(mid) and len(midi_notes(mid)) > 100


@pytest.mark.parametrize("name", ["pitch_duration", "drums"])
def test_pieces_a_model_could_write_have_the_same_notes_in_their_score(name, tmp_path):
    """Random ids (what an untrained model writes): each score holds the notes of its MIDI file,
    whatever the ids decode to."""
    rep = rep_of(name)
    rng = np.random.default_rng(3)
    seqs = [np.concatenate([[1], rng.integers(3, len(rep.vocab), 60)]) for _ in range(2)]
    if rep.layout == "windows":  # grids: whole windows of cells
        seqs = [rng.integers(0, len(rep.vocab), rep.seq_len) for _ in range(2)]
    paths = write_pieces(seqs, rep, tmp_path, formats=["mid", "musicxml"], context=OutputContext(tempo_bpm=96))
    assert len(paths) == 2
    for mid in paths:
        assert score_notes(mid.with_suffix(".musicxml")) == midi_notes(mid)
        assert len(midi_notes(mid)) > 0


def test_notes_below_c0_are_refused_as_musicxml_has_no_octave_for_them(tmp_path):
    pm = pretty_midi.PrettyMIDI()
    pm.instruments.append(pretty_midi.Instrument(0))
    pm.instruments[0].notes += [pretty_midi.Note(80, 11, 0.0, 0.5), pretty_midi.Note(80, 12, 0.5, 1.0)]
    with pytest.raises(MidigenError, match="1 notes below C0"):
        write_musicxml(pm, tmp_path / "low.musicxml")
    pm.instruments[0].notes.pop(0)
    assert [p for _, p, *_ in read_musicxml_notes(write_musicxml(pm, tmp_path / "low.musicxml").path)] == [12]


def test_a_key_is_estimated_when_the_file_has_none(tmp_path):
    pm = pretty_midi.PrettyMIDI(initial_tempo=90)
    piano = pretty_midi.Instrument(0)
    quarter = 60 / 90
    for i, pitch in enumerate([62, 66, 69, 74, 73, 71, 69, 67, 66, 64, 62, 69, 62]):  # D major up and down
        piano.notes.append(pretty_midi.Note(80, pitch, i * quarter, (i + 1) * quarter))
    pm.instruments.append(piano)
    summary = write_musicxml(pm, tmp_path / "d.musicxml")  # a PrettyMIDI object, as the Python API passes
    assert (summary.key, summary.key_source, summary.meters) == ("D major", "estimated", ["4/4"])
    assert [(p, o, d) for _, p, o, d in read_musicxml_notes(tmp_path / "d.musicxml")] == [
        (p, Fraction(i), Fraction(1)) for i, p in enumerate([62, 66, 69, 74, 73, 71, 69, 67, 66, 64, 62, 69, 62])
    ]


def test_meter_and_tracks_come_from_the_file(tmp_path):
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(3, 4, 0.0))
    flute, drums = pretty_midi.Instrument(73, name="Flute"), pretty_midi.Instrument(0, is_drum=True)
    for bar in range(4):
        t = bar * 1.5  # 3/4 at 120: 1.5 s a bar
        flute.notes.append(pretty_midi.Note(90, 72 + bar, t, t + 1.0))  # a half note
        flute.notes.append(pretty_midi.Note(90, 76 + bar, t + 1.0, t + 1.5))
        drums.notes += [pretty_midi.Note(100, 36, t + b * 0.5, t + b * 0.5 + 0.125) for b in range(3)]
    pm.instruments += [flute, drums]
    pm.write(str(tmp_path / "waltz.mid"))
    summary = write_musicxml(tmp_path / "waltz.mid", tmp_path / "waltz.musicxml")
    assert summary.parts == ["Flute", "Drums"] and summary.meters == ["3/4"] and summary.key_source == "estimated"
    assert score_notes(tmp_path / "waltz.musicxml") == midi_notes(tmp_path / "waltz.mid")
    from music21 import converter

    score = converter.parse(str(tmp_path / "waltz.musicxml"))
    assert len(score.parts[0].getElementsByClass("Measure")) == 4  # 12 quarters in bars of 3


def test_a_performance_off_the_grid_is_refused_and_quantize_snaps_it(tmp_path):
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    piano = pretty_midi.Instrument(0)
    piano.notes += [pretty_midi.Note(80, 60, 0.0, 0.49), pretty_midi.Note(80, 62, 0.53, 0.97)]  # played, not written
    pm.instruments.append(piano)
    with pytest.raises(MidigenError, match="2 of 2 notes are not on a beat grid"):
        write_musicxml(pm, tmp_path / "p.musicxml")
    assert not (tmp_path / "p.musicxml").exists()
    summary = write_musicxml(pm, tmp_path / "p.musicxml", quantize=4)
    assert summary.quantized == 2
    assert [(p, o, d) for _, p, o, d in read_musicxml_notes(tmp_path / "p.musicxml")] == [
        (60, Fraction(0), Fraction(1)),
        (62, Fraction(1), Fraction(1)),
    ]
    with pytest.raises(ParamsError, match="quantize = 0"):
        write_musicxml(pm, tmp_path / "p.musicxml", quantize=0)


def test_the_generate_stage_writes_a_score_beside_each_piece_when_formats_has_musicxml(tmp_path, torch_one_thread):
    import yaml

    work = tmp_path / "work"
    work.mkdir()
    params = nabiya_project(work)
    params["generate"].update(formats=["mid", "musicxml"], num_files=2, max_steps=60)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    proc = run_stage(work, "generate", timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = work / "outputs/generated"
    assert sorted(p.name for p in out.glob("*.m*")) == [
        "sample_00.mid",
        "sample_00.musicxml",
        "sample_01.mid",
        "sample_01.musicxml",
    ]
    for mid in out.glob("*.mid"):
        assert score_notes(mid.with_suffix(".musicxml")) == midi_notes(mid)
    assert any(midi_notes(mid) for mid in out.glob("*.mid"))


def test_events_timed_in_seconds_cannot_write_scores(tmp_path):
    rep = representations.EventRepresentation(0.05, 100, 0, 21, 108)
    with pytest.raises(ParamsError, match="seconds.*no beat grid"):
        write_pieces([np.array([1, 2])], rep, tmp_path, formats=["mid", "musicxml"])


def test_generate_formats_is_a_list_that_includes_mid():
    import yaml
    from conftest import PROJECT_ROOT

    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert raw["generate"]["formats"] == ["mid"]
    raw["generate"]["formats"] = ["mid", "musicxml"]
    assert validate(raw)["generate"]["formats"] == ["mid", "musicxml"]
    for bad, words in ((["musicxml"], "must include 'mid'"), (["mid", "mid"], "at most once"), (["mid", "pdf"], "pdf")):
        raw["generate"]["formats"] = bad
        with pytest.raises(ParamsError, match=words):
            validate(raw)
    raw["generate"]["formats"] = "mid"
    with pytest.raises(ParamsError, match="a list of"):
        validate(raw)
