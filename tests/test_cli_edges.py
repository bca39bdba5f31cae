"""`python -m midigen` on user mistakes, run as a user would (subprocess): every one is a single
`error:` line and exit status 2, never a traceback; outputs never mix with older files unless
--force; nothing half-written is left behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_cli_sample import run_cli

from midigen.data.midi_io import make_notes, read_notes, write_midi

SMALL = ("--num-files", "1", "--max-steps", "5", "--device", "cpu")


def assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def lstm_checkpoint(trained_run) -> Path:
    return trained_run[0] / "best.pt"


@pytest.fixture(scope="module")
def vae_checkpoint(tmp_path_factory) -> Path:
    """An untrained one-bar drum MusicVAE: enough to interpolate and reconstruct."""
    from midigen import models
    from midigen.params import DEFAULTS
    from midigen.representations.grid import DrumGrid
    from midigen.training import checkpoint

    rep = DrumGrid(bars=1)
    mp = {**DEFAULTS["model"], "kind": "musicvae", "z_dim": 4, "enc_hidden": 8, "conductor_hidden": 8}
    mp.update(dec_hidden=8, emb_dim=4, num_layers=1)
    family = models.family("musicvae")
    model = family.build(mp, rep)
    path = tmp_path_factory.mktemp("vae") / "vae.pt"
    checkpoint.save(path, checkpoint.build(model, family, rep, 1, [], "fp", "fp", model.state_dict()))
    return path


@pytest.fixture(scope="module")
def drum_file(tmp_path_factory) -> Path:
    """Two bars of 4/4 kick, snare and hi-hat in 16th notes at 120 bpm."""
    starts = np.arange(32) * 0.125
    pitches = np.where(np.arange(32) % 8 == 0, 36, np.where(np.arange(32) % 8 == 4, 38, 42))
    path = tmp_path_factory.mktemp("drums") / "beat.mid"
    write_midi(make_notes(starts, starts + 0.1, pitches, is_drum=True), path, time_signature=(4, 4))
    return path


# -- integer flags ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--max-steps", "1e22", "not an integer"),
        ("--seed", "1e23", "not an integer"),
        ("--num-files", "2.5", "not an integer"),
        ("--max-steps", "1" + "0" * 22, "too large"),
        ("--seed", "1" + "0" * 23, "too large"),
    ],
)
def test_an_integer_flag_given_as_a_float_or_too_large_is_one_error_line(tmp_path, lstm_checkpoint, flag, value, words):
    proc = run_cli("sample", "--checkpoint", lstm_checkpoint, *SMALL, flag, value, "--out", "x", cwd=tmp_path)
    assert_one_line_error(proc, flag, words)
    assert not (tmp_path / "x").exists()


def test_the_seed_of_interpolate_given_as_a_float_is_one_error_line(tmp_path, vae_checkpoint, drum_file):
    args = ("interpolate", drum_file, drum_file, "--checkpoint", vae_checkpoint, "--seed", "1e23", "--out", "x")
    assert_one_line_error(run_cli(*args, cwd=tmp_path), "--seed", "not an integer")


def test_a_missing_required_flag_is_one_error_line_not_the_usage(tmp_path):
    assert_one_line_error(run_cli("sample", cwd=tmp_path), "--out", "--help")


# -- --out of sample, interpolate, reconstruct -------------------------------------------------


def test_sample_out_an_existing_file_or_below_one_is_one_error_line(tmp_path, lstm_checkpoint):
    (tmp_path / "taken").write_text("mine")
    for out in ("taken", "taken/sub"):
        proc = run_cli("sample", "--checkpoint", lstm_checkpoint, *SMALL, "--out", out, cwd=tmp_path)
        assert_one_line_error(proc, f"--out {out}: ", "is a file, not a folder")
    assert listing(tmp_path) == ["taken"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_sample_into_a_read_only_folder_is_one_error_line(tmp_path, lstm_checkpoint):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        for out in ("locked", "locked/new"):
            proc = run_cli("sample", "--checkpoint", lstm_checkpoint, *SMALL, "--out", out, cwd=tmp_path)
            assert_one_line_error(proc, "permission denied")
    finally:
        locked.chmod(0o755)


def test_sample_into_a_folder_with_other_files_needs_force(tmp_path, lstm_checkpoint):
    out = tmp_path / "out"
    out.mkdir()
    (out / "my_notes.txt").write_text("keep me")
    proc = run_cli("sample", "--checkpoint", lstm_checkpoint, *SMALL, "--out", out, cwd=tmp_path)
    assert_one_line_error(proc, "not empty", "--force")
    assert listing(out) == ["my_notes.txt"]
    proc = run_cli("sample", "--checkpoint", lstm_checkpoint, *SMALL, "--out", out, "--force", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert listing(out) == ["my_notes.txt", "sample_00.mid", "sample_00.txt"]
    assert (out / "my_notes.txt").read_text() == "keep me"


def test_sampling_twice_into_one_folder_needs_force_the_second_time(tmp_path, lstm_checkpoint):
    first = run_cli("sample", "--checkpoint", lstm_checkpoint, *SMALL, "--out", "out", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "out/sample_00.txt").read_text()
    again = ("sample", "--checkpoint", lstm_checkpoint, *SMALL, "--seed", "99", "--out", "out")
    assert_one_line_error(run_cli(*again, cwd=tmp_path), "not empty")
    assert (tmp_path / "out/sample_00.txt").read_text() == before


@pytest.mark.parametrize("command", ["interpolate", "reconstruct"])
def test_interpolate_and_reconstruct_into_a_non_empty_folder_need_force(tmp_path, vae_checkpoint, drum_file, command):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.mid").write_bytes(drum_file.read_bytes())
    inputs = (drum_file, drum_file) if command == "interpolate" else (drum_file,)
    args = (command, *inputs, "--checkpoint", vae_checkpoint, "--device", "cpu", "--out", out)
    assert_one_line_error(run_cli(*args, cwd=tmp_path), "not empty", "--force")
    assert listing(out) == ["old.mid"]
    proc = run_cli(*args, "--force", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = [n for n in listing(out) if n != "old.mid"]
    expected = (
        ["original_00", "reconstruction_00"] if command == "reconstruct" else [f"interp_{i:02d}" for i in range(5)]
    )
    assert written == sorted(f"{s}.{e}" for s in expected for e in ("mid", "txt"))


def test_reconstruct_into_a_new_folder_writes_both_files_without_force(tmp_path, vae_checkpoint, drum_file):
    proc = run_cli(
        "reconstruct", drum_file, "--checkpoint", vae_checkpoint, "--device", "cpu", "--out", "r", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert listing(tmp_path / "r") == [f"{s}_00.{e}" for s in ("original", "reconstruction") for e in ("mid", "txt")]


# -- detokenize -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokens_text(chorale_paths, tmp_path_factory) -> str:
    proc = run_cli("tokenize", chorale_paths[0], cwd=tmp_path_factory.mktemp("tok"))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_detokenize_of_a_binary_file_is_one_error_line(tmp_path, chorale_paths):
    proc = run_cli("detokenize", chorale_paths[0], "--out", "x.mid", cwd=tmp_path)
    assert_one_line_error(proc, chorale_paths[0].name, "not a text file of tokens")
    (tmp_path / "nul.txt").write_bytes(b"<BOS>\x00<EOS>")
    assert_one_line_error(run_cli("detokenize", "nul.txt", "--out", "x.mid", cwd=tmp_path), "NUL")
    assert listing(tmp_path) == ["nul.txt"]


def test_detokenize_into_a_folder_is_one_error_line_and_leaves_no_temporary_file(tmp_path, tokens_text):
    (tmp_path / "tokens.txt").write_text(tokens_text, encoding="utf-8")
    (tmp_path / "songs").mkdir()
    proc = run_cli("detokenize", "tokens.txt", "--out", "songs", cwd=tmp_path)
    assert_one_line_error(proc, "--out songs", "is a folder")
    assert listing(tmp_path) == ["songs", "tokens.txt"]


def test_detokenize_onto_its_own_tokens_file_or_below_a_file_is_refused(tmp_path, tokens_text):
    (tmp_path / "tokens.txt").write_text(tokens_text, encoding="utf-8")
    assert_one_line_error(run_cli("detokenize", "tokens.txt", "--out", "tokens.txt", cwd=tmp_path), "tokens file")
    assert_one_line_error(
        run_cli("detokenize", "tokens.txt", "--out", "tokens.txt/x.mid", cwd=tmp_path), "not a folder"
    )
    assert (tmp_path / "tokens.txt").read_text(encoding="utf-8") == tokens_text
    assert listing(tmp_path) == ["tokens.txt"]


@pytest.mark.parametrize("content", ["", " \n\t\n", "\ufeff"], ids=["empty", "blank", "only-a-bom"])
def test_detokenize_of_a_file_without_tokens_fails_and_writes_nothing(tmp_path, content):
    (tmp_path / "tokens.txt").write_text(content, encoding="utf-8")
    assert_one_line_error(run_cli("detokenize", "tokens.txt", "--out", "x.mid", cwd=tmp_path), "no tokens")
    assert not (tmp_path / "x.mid").exists()


def test_detokenize_strips_a_utf8_byte_order_mark(tmp_path, tokens_text):
    (tmp_path / "plain.txt").write_text(tokens_text, encoding="utf-8")
    (tmp_path / "bom.txt").write_text(tokens_text, encoding="utf-8-sig")  # as Windows Notepad saves it
    assert (tmp_path / "bom.txt").read_bytes().startswith(b"\xef\xbb\xbf")
    for name in ("plain", "bom"):
        proc = run_cli("detokenize", f"{name}.txt", "--out", f"{name}.mid", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    assert np.array_equal(read_notes(tmp_path / "bom.mid"), read_notes(tmp_path / "plain.mid"))
