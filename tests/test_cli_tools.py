"""`midigen --help`, `--version`, `info`, `render`, `export` and `sample`'s progress and formats: main() as
the console script calls it (--version in a new process, as a user runs it)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import wave
from fractions import Fraction

import numpy as np
import pytest
from conftest import PROJECT_ROOT, midi_notes, nabiya_project, score_notes, write_pretty_midi

from midigen.cli import _HelpFormatter, build_parser, main


class Result:
    """What a CLI call printed and returned (the shape of subprocess.CompletedProcess)."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def midigen(capsys, monkeypatch):
    """`midigen ARGS` in this process (main() as the console script calls it), from `cwd`: the
    same code as a subprocess without the seconds of importing torch again."""

    def call(*args, cwd) -> Result:
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse: --help, usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return call


def assert_one_line_error(proc, *words):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_flag_of_every_subcommand_has_help_that_states_its_default():
    commands = subcommands(build_parser())
    assert {"info", "render", "export", "sample", "tokenize"} <= set(commands)
    missing = []
    for name, parser in commands.items():
        formatter = _HelpFormatter(prog=parser.prog)
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            shown = formatter._get_help_string(action)
            if not shown.strip():
                missing.append(f"{name} {action.dest}: no help")
            elif action.option_strings and not action.required and "default" not in shown:
                missing.append(f"{name} {'/'.join(action.option_strings)}: no default in {shown!r}")
    assert not missing, "\n".join(missing)


def test_help_shows_defaults_and_version_the_package_metadata(midigen):
    from importlib.metadata import version

    proc = midigen("export", "--help", cwd=PROJECT_ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "--quantize" in proc.stdout and "default: none" in proc.stdout
    assert "(default: off)" in midigen("info", "--help", cwd=PROJECT_ROOT).stdout  # --json, a store_true flag
    # as a user runs it: a new process
    proc = subprocess.run([sys.executable, "-m", "midigen", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"midigen {version('midigen')}"


@pytest.fixture(scope="module")
def checkpoint(trained_run):
    out_dir, _, _ = trained_run
    return out_dir / "best.pt"


def test_info_shows_what_the_checkpoint_holds(midigen, checkpoint, trained_run, tmp_path):
    _, result, params = trained_run
    proc = midigen("info", checkpoint, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    best = result.history.best()
    assert info["family"] == "lstm" and info["model"]["hidden_dim"] == params["model"]["hidden_dim"]
    assert info["representation"]["name"] == "events" and info["vocab_size"] > 100
    assert info["epochs"] == params["train"]["epochs"]
    assert info["best"]["epoch"] == best["epoch"] and info["best"]["val_loss"] == best["val_loss"]
    assert info["data_fingerprint"] == "chorales"  # what trained_run passed to train_model
    # an LSTM of 1 layer, hidden 32, embedding 16: 4 gates x (16 + 32 + 2) x 32 + the embedding and head
    vocab = info["vocab_size"]
    assert info["parameters"] == vocab * 16 + 4 * 32 * (16 + 32 + 2) + 32 * vocab + vocab
    text = midigen("info", checkpoint, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert f"{info['parameters']:,} trainable" in text.stdout
    assert f"val_loss {best['val_loss']:g}" in text.stdout and "fingerprint chorales" in text.stdout


def test_info_on_a_file_that_is_no_checkpoint_is_one_error_line(midigen, tmp_path):
    (tmp_path / "notes.pt").write_text("hello", encoding="utf-8")
    assert_one_line_error(midigen("info", tmp_path / "notes.pt", cwd=tmp_path), "notes.pt", "not a readable")


def test_info_check_data_says_whether_the_data_here_is_what_the_checkpoint_learned(
    midigen, checkpoint, tmp_path, torch_one_thread
):
    import pandas as pd

    assert_one_line_error(midigen("info", checkpoint, "--check-data", cwd=tmp_path), "data/split.csv", "missing")
    nabiya_project(tmp_path)
    proc = midigen("info", "--check-data", cwd=tmp_path)  # models/best.pt by default
    assert proc.returncode == 0, proc.stderr
    assert "the same data" in proc.stdout and "pitch_duration" in proc.stdout
    split = pd.read_csv(tmp_path / "data/split.csv")
    split.assign(split="val").to_csv(tmp_path / "data/split.csv", index=False)  # another split: other data
    proc = midigen("info", "--check-data", "--json", cwd=tmp_path)
    assert json.loads(proc.stdout)["data_here"]["matches"] is False


def test_render_writes_wav_and_ogg_of_the_whole_piece(midigen, tmp_path):
    from midigen.report.audio import PEAK, SAMPLE_RATE, find_synth

    if find_synth()[0] is None:
        pytest.skip(f"no synthesizer here: {find_synth()[1]}")
    mid = write_pretty_midi(tmp_path / "scale.mid", [(60 + i, i * 0.5, i * 0.5 + 0.45) for i in range(8)])
    proc = midigen("render", mid, "--out", tmp_path / "scale.wav", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with wave.open(str(tmp_path / "scale.wav")) as w:
        seconds = w.getnframes() / w.getframerate()
        assert w.getframerate() == SAMPLE_RATE and w.getsampwidth() == 2
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert 3.95 <= seconds <= 3.95 + 5, seconds  # every note, then the piano's decay (7.0 s seen)
    assert np.abs(samples.astype(np.int32)).max() == round(PEAK * 32767)  # normalised, as the report's
    assert "render" in proc.stderr  # the progress bar
    proc = midigen("render", mid, "--out", tmp_path / "out" / "scale.ogg", "--max-seconds", 1, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "scale.ogg").read_bytes()[:4] == b"OggS"


def test_render_without_fluidsynth_or_soundfont_is_one_error_line(midigen, tmp_path):
    mid = write_pretty_midi(tmp_path / "a.mid", [(60, 0.0, 1.0)])
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PATH", str(tmp_path / "empty"))  # no fluidsynth on it
        proc = midigen("render", mid, "--out", tmp_path / "a.wav", cwd=tmp_path)
    assert_one_line_error(proc, "a.mid", "FluidSynth is not installed")
    proc = midigen("render", mid, "--out", tmp_path / "a.wav", "--soundfont", tmp_path / "none.sf2", cwd=tmp_path)
    assert_one_line_error(proc, "--soundfont", "none.sf2")
    assert_one_line_error(midigen("render", mid, "--out", tmp_path / "a.mp3", cwd=tmp_path), "a.mp3", ".wav")
    assert not (tmp_path / "a.wav").exists()


def test_export_writes_a_musicxml_score_of_a_real_chorale_with_the_same_notes(midigen, chorale_paths, tmp_path):
    mid = next(p for p in chorale_paths if p.stem == "bwv66.6")
    proc = midigen("export", mid, "--musicxml", "--out", tmp_path / "scores", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    xml = tmp_path / "scores" / "bwv66.6.musicxml"
    assert "4 parts (Soprano, Alto, Tenor, Bass)" in proc.stdout and "key f# minor (file)" in proc.stdout
    assert score_notes(xml) == midi_notes(mid)
    from music21 import converter

    score = converter.parse(str(xml))
    assert [str(k) for k in score.parts[0].recurse().getElementsByClass("Key")] == ["f# minor"]
    assert score.parts[0].recurse().getElementsByClass("TimeSignature")[0].ratioString == "4/4"


def test_export_refuses_a_performance_off_the_beat_grid_unless_asked_to_quantize(midigen, tmp_path):
    from conftest import random_melody

    mid = write_pretty_midi(tmp_path / "played.mid", random_melody(seed=5))
    proc = midigen("export", mid, "--musicxml", "--out", tmp_path / "x", cwd=tmp_path)
    assert_one_line_error(proc, "played.mid", "not on a beat grid", "--quantize")
    assert not (tmp_path / "x" / "played.musicxml").exists()
    proc = midigen("export", mid, "--musicxml", "--quantize", 4, "--out", tmp_path / "x", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "1 part (Acoustic Grand Piano), 24 notes" in proc.stdout and "snapped to the grid" in proc.stdout
    # each onset and end at the nearest sixteenth (halves up), a note lasting at least one
    snapped = set()
    for _, pitch, onset, length in midi_notes(mid):
        on, end = (int(x * 4 + Fraction(1, 2)) for x in (onset, onset + length))
        snapped.add((0, pitch, Fraction(on, 4), Fraction(max(end, on + 1) - on, 4)))
    assert score_notes(tmp_path / "x" / "played.musicxml") == sorted(snapped)
    assert_one_line_error(midigen("export", mid, "--out", tmp_path / "y", cwd=tmp_path), "--musicxml")


def test_sample_shows_progress_and_follows_generate_formats(midigen, checkpoint, tmp_path):
    import yaml

    proc = midigen(
        "sample", "--checkpoint", checkpoint, "--num-files", 2, "--max-steps", 20, "--out", "a", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "sampling" in proc.stderr  # the progress bar
    assert sorted(p.suffix for p in (tmp_path / "a").iterdir()) == [".mid", ".mid", ".txt", ".txt"]
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["generate"]["formats"] = ["mid", "musicxml"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    # this checkpoint's event tokens are timed in seconds: no score, said before sampling
    proc = midigen("sample", "--checkpoint", checkpoint, "--num-files", 2, "--out", "b", cwd=tmp_path)
    assert_one_line_error(proc, "generate.formats", "seconds", "no beat grid")
    assert not (tmp_path / "b").exists()
