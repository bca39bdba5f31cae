"""Harmonizing a melody with a voices model: the melody stays the top voice note for note (a folk
melody from music21's Essen collection), the lower voices follow the voices grammar, the CLI
writes one track per voice at the melody's tempo, and unusable melodies are one error line."""

from __future__ import annotations

import numpy as np
import pretty_midi
import pytest
import torch
from conftest import tiny_params, write_pretty_midi

from midigen.cli import main
from midigen.evaluation.harmonization import evaluate_harmonization, parallels, voice_grid
from midigen.generation.grammar import GrammarLimits
from midigen.generation.harmonize import harmonize, melody_frames, read_melody
from midigen.models.base import SampleRequest
from midigen.params import DEFAULTS
from midigen.representations import EOS, from_params
from midigen.training.loop import train_model

CPU = torch.device("cpu")
TINY_TRANSFORMER = {
    **DEFAULTS["model"],
    **{"kind": "transformer", "layers": 1, "heads": 2, "d_model": 16, "d_ff": 32, "context": 64, "dropout": 0.0},
}


@pytest.fixture(scope="module")
def voices_rep():
    return from_params({**DEFAULTS["preprocess"], "representation": "voices", "pitch_min": 36, "pitch_max": 84})


@pytest.fixture(scope="module")
def voices_ids(chorale_paths, voices_rep) -> list[np.ndarray]:
    return [voices_rep.encode(voices_rep.read_piece(p)).astype(np.int64) for p in chorale_paths]


@pytest.fixture(scope="module", params=["lstm", "transformer"])
def checkpoint(request, tmp_path_factory, voices_ids, voices_rep, torch_one_thread):
    """A tiny model of each family trained one epoch on four chorales' voices tokens."""
    model = TINY_TRANSFORMER if request.param == "transformer" else None
    train, val = np.concatenate(voices_ids[:4]), voices_ids[4]
    params = tiny_params(model, epochs=1, batch_size=8, seq_len=64)
    return train_model(voices_rep, train, val, params, tmp_path_factory.mktemp(request.param), "fp").best_path


@pytest.fixture(scope="module")
def folk_melody(folk_paths):
    """The first Essen melody (teste.abc) whose notes all lie on the sixteenth grid."""
    for path in folk_paths:
        pm = pretty_midi.PrettyMIDI(str(path))
        quarter = 60.0 / pm.get_tempo_changes()[1][0]
        notes = [(n.pitch, n.start / quarter, n.end / quarter) for i in pm.instruments for n in i.notes]
        if all(abs(t * 4 - round(t * 4)) < 1e-6 for _, s, e in notes for t in (s, e)):
            return path, sorted((round(s * 4), round(e * 4), p) for p, s, e in notes)
    pytest.fail("no Essen melody on the sixteenth grid")


def track_steps(path, name: str) -> list[tuple[int, int, int]]:
    """(onset, offset, pitch) in sixteenths of the notes of the track called `name`."""
    pm = pretty_midi.PrettyMIDI(str(path))
    quarter = 60.0 / pm.get_tempo_changes()[1][0]
    track = next(i for i in pm.instruments if i.name == name)
    return sorted((round(n.start / quarter * 4), round(n.end / quarter * 4), n.pitch) for n in track.notes)


def test_harmonizing_a_folk_melody_keeps_it_as_the_soprano_note_for_note(checkpoint, folk_melody, tmp_path, capsys):
    path, melody = folk_melody
    out = tmp_path / "out"
    args = ["harmonize", str(path), "--checkpoint", str(checkpoint), "--out", str(out), "--num-files", "2"]
    assert main([*args, "--device", "cpu", "--seed", "5"]) == 0
    written = sorted(out.glob("harmony_*.mid"))
    assert len(written) == 2
    lower = 0
    for mid in written:
        pm = pretty_midi.PrettyMIDI(str(mid))
        assert pm.get_tempo_changes()[1].tolist() == pytest.approx(
            pretty_midi.PrettyMIDI(str(path)).get_tempo_changes()[1][:1].tolist()
        )
        assert {i.name for i in pm.instruments if i.notes} <= {"Soprano", "Alto", "Tenor", "Bass"}
        assert track_steps(mid, "Soprano") == [(s, e, p) for s, e, p in melody]
        lower += sum(len(i.notes) for i in pm.instruments if i.name != "Soprano")
    assert lower > 0, "the model wrote no voice below the melody"
    assert "harmony_01.mid" in capsys.readouterr().out


def test_every_frame_starts_with_the_melody_and_the_voices_below_obey_the_grammar(checkpoint, folk_melody, voices_rep):
    from midigen.training.checkpoint import load_model

    loaded = load_model(checkpoint, "cpu")
    notes, _ = read_melody(folk_melody[0], voices_rep)
    melody = melody_frames(voices_rep, notes)
    limits = GrammarLimits(8.0, 3)
    seqs = harmonize(loaded.model, voices_rep, notes, SampleRequest(4, seed=2, limits=limits), CPU)
    grammar = voices_rep.grammar(limits)
    assert voices_rep.frame_runs  # the default: each frame's ||k says how many sixteenths it lasts
    for ids in seqs:
        assert ids[-1] == EOS
        f, frame, written = 0, [], 0
        for i in ids[1:-1].tolist():
            if i < voices_rep.frame_id:
                frame.append(i)
                continue
            if melody.column[f] < 0:  # the melody rests: so does everything
                assert frame == []
            else:
                first = voices_rep.new_base if melody.struck[f] else voices_rep.tie_base
                assert frame[0] == first + melody.column[f]
                assert len(frame) <= 3  # three voices
            f, frame, written = f + i - voices_rep.frame_id + 1, [], written + 1
        assert f == melody.column.shape[0] and written < f  # runs: fewer frames written than sixteenths
        assert (melody.column >= 0).sum() > 0.8 * melody.column.shape[0]
        state = grammar.start(1, CPU)
        for i in ids[1:].tolist():
            if state["count"].item():  # the voices below the soprano: legal under the grammar
                assert bool(grammar.allowed(state)[0, i]), voices_rep.vocab[i]
            state = grammar.advance(state, torch.tensor([i]))


def test_unusable_melodies_and_checkpoints_are_one_error_line(checkpoint, folk_melody, tmp_path, capsys, trained_run):
    high = write_pretty_midi(tmp_path / "high.mid", [(100, 0.0, 0.5), (98, 0.5, 1.0)])
    empty = tmp_path / "empty.mid"
    pretty_midi.PrettyMIDI().write(str(empty))
    cases = [
        ([str(high), "--checkpoint", str(checkpoint)], "pitch 100 is outside the model's range 36..84"),
        ([str(empty), "--checkpoint", str(checkpoint)], "no notes"),
        ([str(folk_melody[0]), "--checkpoint", str(checkpoint), "--voices", "5"], "--voices 5"),
        ([str(folk_melody[0]), "--checkpoint", str(checkpoint), "--track", "Flute"], "no track named 'Flute'"),
        ([str(folk_melody[0]), "--checkpoint", str(trained_run[0] / "best.pt")], "representation = voices"),
    ]
    for i, (args, words) in enumerate(cases):
        capsys.readouterr()
        assert main(["harmonize", *args, "--device", "cpu", "--out", str(tmp_path / f"o{i}")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and words in err[0], err
        assert not (tmp_path / f"o{i}").exists()


def test_parallel_fifths_and_octaves_are_counted_only_for_voices_moving_together():
    grid = np.array(
        [
            [67, 60, 48, -1],  # G over C: a fifth (and C over C: an octave)
            [69, 62, 50, -1],  # all up by step: parallel fifth (0-1), octaves (1-2), a fifth (0-2 is 19 -> 7)
            [69, 62, 50, -1],  # held: no motion, nothing counted
            [71, 64, 47, -1],  # 0-1 fifth again, 2 moves down: contrary
        ]
    )
    fifths, octaves, changes = parallels(grid)
    assert (fifths, octaves, changes) == (3, 1, 3)


def test_evaluate_harmonization_keeps_bachs_sopranos_and_compares_with_his_voices(checkpoint, voices_ids, voices_rep):
    from midigen.training.checkpoint import load_model

    loaded = load_model(checkpoint, "cpu")
    result = evaluate_harmonization(loaded.model, voices_rep, voices_ids[3:], DEFAULTS["generate"], CPU)
    assert result["pieces"] == 2 and result["soprano_kept"]
    assert 0 <= result["voice_count_tv"] <= 1
    assert len(result["voice_accuracy"]) == 3 and all(0 <= a <= 1 for a in result["voice_accuracy"])
    bach = result["bach"]
    assert bach["voice_counts"][4] > 0.8  # Bach's chorales: four voices in most frames
    assert bach["range_violations"] < 0.1 and 0.8 < bach["pitch_in_key"] <= 1
    assert bach["frames"] == sum(voice_grid(voices_rep, i).shape[0] for i in voices_ids[3:])


def test_a_model_trained_in_c_harmonizes_a_melody_in_its_own_key(checkpoint, folk_melody, tmp_path):
    """preprocess.key c: the melody is harmonized in C and the result moved back, so the soprano
    is still the user's melody in its own key, note for note, and the voices below move with it."""
    import torch

    from midigen.data import keys

    path, melody = folk_melody
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    ckpt[keys.KEY_SHIFTS] = [[-5, 3], [2, 1]]  # what the train stage writes for a store moved to C
    in_c = tmp_path / "in_c.pt"
    torch.save(ckpt, in_c)
    pitches = np.array([p for _, _, p in melody])
    assert keys.shift_to_c(keys.major_root(pitches)) != 0, "pick a melody that is not in C"
    out = tmp_path / "out"
    args = ["harmonize", str(path), "--checkpoint", str(in_c), "--out", str(out), "--device", "cpu", "--seed", "5"]
    assert main(args) == 0
    (mid,) = sorted(out.glob("harmony_*.mid"))
    assert track_steps(mid, "Soprano") == [(s, e, p) for s, e, p in melody]


def test_the_python_api_and_the_studio_harmonize_like_the_cli(checkpoint, folk_melody, tmp_path):
    """midigen.load(...).harmonize and POST /api/harmonize run the CLI's harmonization: the same
    soprano, note for note, and the same file for the same seed."""
    import io
    import json
    import shutil

    import midigen
    from midigen.studio.catalog import find
    from midigen.studio.server import create_app

    path, melody = folk_melody
    (piece,) = midigen.load(checkpoint, "cpu").harmonize(path, 1, seed=5)
    written = piece.write(tmp_path / "api.mid")
    assert track_steps(written, "Soprano") == [(s, e, p) for s, e, p in melody]
    assert (
        main(
            ["harmonize", str(path), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "cli")]
            + ["--device", "cpu", "--seed", "5"]
        )
        == 0
    )
    assert (tmp_path / "cli/harmony_00.mid").read_bytes() == written.read_bytes()
    (tmp_path / "models").mkdir()
    shutil.copy(checkpoint, tmp_path / "models/voices.pt")
    catalog = find(tmp_path / "models", "cpu")
    try:
        client = create_app(catalog).test_client()
        request = {
            "request": json.dumps({"model": "voices", "seed": 5}),
            "melody": (io.BytesIO(path.read_bytes()), path.name),
        }
        response = client.post("/api/harmonize", data=request)
        assert response.status_code == 200 and response.mimetype == "audio/midi", response.get_data(as_text=True)[:300]
        assert response.data == written.read_bytes()
    finally:
        catalog.close()


def harmonized_with(chorale_paths, melody_path, tmp_path, **preprocess):
    """(a voices representation with these preprocess settings, the folder where `midigen
    harmonize` wrote two harmonies of the melody with a tiny model trained one epoch on it)."""
    rep = from_params(
        {**DEFAULTS["preprocess"], "representation": "voices", "pitch_min": 36, "pitch_max": 84, **preprocess}
    )
    ids = [rep.encode(rep.read_piece(p)).astype(np.int64) for p in chorale_paths]
    params = tiny_params(None, epochs=1, batch_size=8, seq_len=64)
    ckpt = train_model(rep, np.concatenate(ids[:4]), ids[4], params, tmp_path / "m", "fp").best_path
    out = tmp_path / "out"
    args = ["harmonize", str(melody_path), "--checkpoint", str(ckpt), "--out", str(out), "--num-files", "2"]
    assert main([*args, "--device", "cpu", "--seed", "3"]) == 0
    return rep, out


def test_with_bar_positions_the_harmony_keeps_the_melodys_bars(chorale_paths, folk_melody, tmp_path, torch_one_thread):
    """A model of voices tokens with bar positions ends every frame at the melody's position in
    its bar (from the melody file's time signatures), and the file it writes has those bars."""
    from midigen.data.midi_io import read_marks
    from midigen.representations.voices import bar_positions, meter_rows

    rep, out = harmonized_with(chorale_paths, folk_melody[0], tmp_path, bar_positions=True, frame_runs=False)
    path, melody = folk_melody
    meters = meter_rows(read_marks(path).meters)
    for mid in sorted(out.glob("harmony_*.mid")):
        assert track_steps(mid, "Soprano") == [(s, e, p) for s, e, p in melody]
        positions = rep.decode_voiced(rep.encode(rep.read_piece(mid))).positions
        assert positions == bar_positions(len(positions), meters).tolist(), mid.name
        assert len(positions) >= melody[-1][1]


def test_with_frame_runs_the_soprano_is_the_melody_and_no_frame_outlasts_its_note(
    chorale_paths, folk_melody, tmp_path, torch_one_thread
):
    """A model of voices tokens with frame runs harmonizes too: each written frame starts with
    the melody's note there and lasts no longer than that note (or rest) does from there."""
    from midigen.generation.harmonize import melody_frames, read_melody, until_change

    rep, out = harmonized_with(chorale_paths, folk_melody[0], tmp_path, frame_runs=True)
    path, melody = folk_melody
    until = until_change(melody_frames(rep, read_melody(path, rep)[0]), 16)
    for mid in sorted(out.glob("harmony_*.mid")):
        assert track_steps(mid, "Soprano") == [(s, e, p) for s, e, p in melody], mid.name
        frame, lengths = 0, []
        for token in mid.with_suffix(".txt").read_text().split():
            if token.startswith("||"):
                lengths.append(int(token[2:]))
                assert lengths[-1] <= until[frame], (mid.name, frame, token)
                frame += lengths[-1]
        assert frame == len(until) and max(lengths) > 1, mid.name


def test_until_change_counts_the_frames_to_the_sopranos_next_change():
    from midigen.generation.harmonize import Melody, until_change

    # a note struck at 0 held to 3, struck again at 3, a rest at 5 and 6, a note at 7
    column = np.array([10, 10, 10, 10, 10, -1, -1, 12])
    struck = np.array([True, False, False, True, False, False, False, True])
    melody = Melody(column, struck, np.zeros(8, np.int64))
    assert until_change(melody, 16).tolist() == [3, 2, 1, 2, 1, 2, 1, 1]
    assert until_change(melody, 2).tolist() == [2, 2, 1, 2, 1, 2, 1, 1]


def test_a_melody_note_longer_than_max_note_beats_is_harmonized_all_the_same(checkpoint, voices_rep):
    """The soprano is forced: a melody note held past generate.max_note_beats (a 6-beat note
    against the 4-beat limit) must still leave every frame a way to end."""
    from midigen.data.midi_io import make_notes
    from midigen.representations.score_time import STEP_S
    from midigen.training.checkpoint import load_model

    loaded = load_model(checkpoint, "cpu")
    quarter = 4 * STEP_S
    notes = make_notes([0.0, 6 * quarter], [6 * quarter, 8 * quarter], [67, 72])
    (ids,) = harmonize(loaded.model, voices_rep, notes, SampleRequest(1, seed=1, limits=GrammarLimits(4.0, 4)), CPU)
    assert ids[-1] == EOS
    soprano = [r for r in voices_rep.decode_voiced(ids).rows if r[2] in (67, 72)]
    assert (0, 24, 67) in soprano and (24, 32, 72) in soprano, soprano
