"""`python -m midigen tokenize|detokenize`, run as a user would (subprocess)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import subprocess_env

from midigen.data.midi_io import read_notes
from midigen.representations import EventRepresentation


def run_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "midigen", *map(str, args)],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def unique_onsets(notes, time_step=0.05, pitch_min=0, pitch_max=127) -> int:
    notes = notes[(notes["pitch"] >= pitch_min) & (notes["pitch"] <= pitch_max)]
    return len(
        set(zip(notes["pitch"].tolist(), np.rint(notes["start_s"] / time_step).astype(int).tolist(), strict=True))
    )


@pytest.fixture(scope="module")
def tokenized(chorale_paths, tmp_path_factory):
    """tokenize output of one chorale as events, run in a folder without params.yaml (built-in
    defaults otherwise)."""
    cwd = tmp_path_factory.mktemp("cli")
    proc = run_cli("tokenize", chorale_paths[0], "--representation", "events", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd, chorale_paths[0], proc.stdout


def test_tokenize_prints_one_token_per_line_starting_with_bos(tokenized):
    _, midi, out = tokenized
    lines = out.splitlines()
    assert lines[0] == "<BOS>" and lines[-1] == "<EOS>"
    assert all(line and " " not in line for line in lines)
    # events in beats (time_unit auto, data.source music21:chorales)
    rep = EventRepresentation(0.05, 100, 0, 21, 108, "beats", 4)
    assert all(line in rep.token_to_id for line in lines)
    assert lines == rep.ids_to_tokens(rep.encode(rep.read_piece(midi)))


def test_detokenize_of_tokenize_output_writes_the_deduplicated_notes(tokenized):
    cwd, midi, out = tokenized
    (cwd / "tokens.txt").write_text(out, encoding="utf-8")
    proc = run_cli("detokenize", "tokens.txt", "--representation", "events", "--out", "back/again.mid", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    original = read_notes(midi)
    back = read_notes(cwd / "back" / "again.mid")
    assert len(back) == unique_onsets(original)
    assert len(back) < len(original), "this chorale has unison notes, so de-duplication must show"
    assert f"{len(back)} notes" in proc.stderr


def test_tokenize_reads_params_yaml_and_flags_override_it(chorale_paths, tmp_path):
    params = {
        "preprocess": {
            "representation": "events",
            "time_unit": "seconds",
            "time_step": 0.1,
            "max_shift_steps": 7,
            "velocity_bins": 0,
            "drums": "drop",
            "programs": False,
            "pitch_min": 60,
            "pitch_max": 127,
            "max_file_mb": 10,
            "max_notes": 200000,
            "max_duration_s": 3600,
            "max_memory_mb": 512,
            "timeout_s": 30,
            "chord_min_count": 5,
            "fixed_step_quarters": 0.0,
            "steps_per_quarter": 4,
            "bars": 4,
            "hop_bars": 1,
            "max_voices": 4,
            "bar_positions": False,
            "frame_runs": False,
            "key": "keep",
        }
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    lines = run_cli("tokenize", chorale_paths[0], cwd=tmp_path).stdout.splitlines()
    assert not any(t.startswith("NOTE_ON_") and int(t.rsplit("_", 1)[1]) < 60 for t in lines)
    assert max(int(t.rsplit("_", 1)[1]) for t in lines if t.startswith("TIME_SHIFT_")) == 7
    lines = run_cli(
        "tokenize", chorale_paths[0], "--max-shift-steps", "3", "--pitch-min", "0", cwd=tmp_path
    ).stdout.splitlines()
    assert max(int(t.rsplit("_", 1)[1]) for t in lines if t.startswith("TIME_SHIFT_")) == 3
    assert any(t.startswith("NOTE_ON_") and int(t.rsplit("_", 1)[1]) < 60 for t in lines)


def assert_one_line_error(proc):
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, proc.stderr
    assert err[0].startswith("error: ")
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    return err[0]


def test_tokenize_missing_file_gives_exit_code_2_and_one_error_line(tmp_path):
    line = assert_one_line_error(run_cli("tokenize", "no_such_file.mid", cwd=tmp_path))
    assert "no_such_file.mid" in line


def test_tokenize_broken_file_gives_exit_code_2_and_one_error_line(tmp_path):
    (tmp_path / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    line = assert_one_line_error(run_cli("tokenize", "broken.mid", cwd=tmp_path))
    assert "broken.mid" in line


def test_detokenize_missing_or_bad_token_file_gives_one_error_line(tmp_path):
    line = assert_one_line_error(run_cli("detokenize", "missing.txt", "--out", "x.mid", cwd=tmp_path))
    assert "missing.txt" in line
    (tmp_path / "bad.txt").write_text("<BOS>\nNOTE_ON_60\nNOT_A_TOKEN\n<EOS>\n")
    line = assert_one_line_error(
        run_cli("detokenize", "bad.txt", "--representation", "events", "--out", "x.mid", cwd=tmp_path)
    )
    assert "NOT_A_TOKEN" in line and "token 3" in line
    assert not (tmp_path / "x.mid").exists()


def test_bad_flag_value_gives_one_error_line_naming_the_flag(chorale_paths, tmp_path):
    line = assert_one_line_error(run_cli("tokenize", chorale_paths[0], "--time-step", "0", cwd=tmp_path))
    assert "--time-step" in line
