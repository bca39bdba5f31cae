"""`python -m midigen sample`, run as a user would (subprocess), from a checkpoint written by train."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pretty_midi
import pytest
from conftest import subprocess_env

from midigen.data.midi_io import read_notes

SMALL = ("--num-files", 2, "--max-steps", 30, "--seed", 3)


def run_cli(*args, cwd):
    env = subprocess_env()
    env["OMP_NUM_THREADS"] = "1"  # a tiny model samples faster on one thread of a busy machine
    return subprocess.run(
        [sys.executable, "-m", "midigen", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_error(proc, *words):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def checkpoint(trained_run):
    out_dir, _, _ = trained_run
    return out_dir / "best.pt"


def tokens_of(path) -> list[str]:
    return path.read_text(encoding="utf-8").split()


@pytest.fixture(scope="module")
def sampled(checkpoint, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("sample")  # no params.yaml, no data/: the checkpoint is enough
    proc = run_cli("sample", "--checkpoint", checkpoint, *SMALL, "--out", "out", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd, proc


def test_sample_writes_the_requested_number_of_midi_files_and_their_tokens(sampled, event_rep):
    cwd, proc = sampled
    out = cwd / "out"
    assert sorted(p.name for p in out.iterdir()) == ["sample_00.mid", "sample_00.txt", "sample_01.mid", "sample_01.txt"]
    for i in range(2):
        pm = pretty_midi.PrettyMIDI(str(out / f"sample_{i:02d}.mid"))
        tokens = tokens_of(out / f"sample_{i:02d}.txt")
        assert tokens[0] == "<BOS>"
        assert 2 <= len(tokens) <= 1 + 30, "at most --max-steps new tokens after <BOS>"
        assert all(t in event_rep.token_to_id for t in tokens)
        assert "<EOS>" not in tokens[:-1]
        # the MIDI file holds what the tokens decode to
        notes = event_rep.decode(event_rep.tokens_to_ids(tokens))
        assert sum(len(inst.notes) for inst in pm.instruments) == len(notes)
        assert f"sample_{i:02d}.mid" in proc.stdout


def test_sample_with_the_same_seed_writes_the_same_tokens(sampled, checkpoint):
    cwd, _ = sampled
    proc = run_cli("sample", "--checkpoint", checkpoint, *SMALL, "--out", "again", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    for i in range(2):
        name = f"sample_{i:02d}.txt"
        assert tokens_of(cwd / "again" / name) == tokens_of(cwd / "out" / name)


def test_sample_with_a_primer_continues_the_primer_tokens(checkpoint, chorale_paths, tmp_path, event_rep):
    primer = chorale_paths[2]
    args = ("--checkpoint", checkpoint, "--num-files", 2, "--max-steps", 20, "--primer", primer, "--out", "cont")
    proc = run_cli("sample", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    primer_tokens = event_rep.ids_to_tokens(event_rep.encode(read_notes(primer)))[:-1]  # without <EOS>
    assert len(primer_tokens) > 50
    for i in range(2):
        tokens = tokens_of(tmp_path / "cont" / f"sample_{i:02d}.txt")
        assert tokens[: len(primer_tokens)] == primer_tokens
        assert 1 <= len(tokens) - len(primer_tokens) <= 20
        pm = pretty_midi.PrettyMIDI(str(tmp_path / "cont" / f"sample_{i:02d}.mid"))
        primer_notes = event_rep.decode(event_rep.tokens_to_ids(primer_tokens))
        assert sum(len(inst.notes) for inst in pm.instruments) >= len(primer_notes)


def test_sample_from_a_missing_checkpoint_is_one_error_line_and_exit_2(tmp_path):
    proc = run_cli("sample", "--checkpoint", tmp_path / "nope.pt", "--out", "x", cwd=tmp_path)
    assert_one_line_error(proc, "nope.pt")
    assert not (tmp_path / "x").exists()


def test_sample_from_a_file_that_is_no_checkpoint_is_one_error_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(np.random.default_rng(0).bytes(2048))
    assert_one_line_error(run_cli("sample", "--checkpoint", bad, "--out", "x", cwd=tmp_path), "bad.pt")


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--top-p", "1.5"), ("--temperature", "0")],
)
def test_sample_with_an_out_of_range_flag_names_the_flag_and_exits_2(checkpoint, tmp_path, flag, value):
    proc = run_cli("sample", "--checkpoint", checkpoint, flag, value, "--out", "x", cwd=tmp_path)
    assert_one_line_error(proc, flag)
    assert not (tmp_path / "x").exists()
