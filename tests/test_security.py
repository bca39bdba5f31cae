"""Security: checkpoints never run code, output names cannot leave their folder, and MIDI files
that claim huge sizes are rejected with bounded memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import PROJECT_ROOT, subprocess_env
from test_hostile_input import END_OF_TRACK, chunk, header, note_bomb, simple_track

from midigen.data.ingest import _safe_stem

# -- checkpoints ------------------------------------------------------------------------------


class Evil:
    """Unpickling this runs os.system(command)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def evil_checkpoint(path: Path, marker: Path) -> Path:
    payload = {
        "format": 1,
        "model": {"kind": "lstm", "vocab_size": 4, "emb_dim": 2, "hidden_dim": 2, "num_layers": 1, "dropout": 0.0},
        "model_state": Evil(f"touch {marker}"),
        "representation": {},
        "vocab": [],
    }
    torch.save(payload, path)
    return path


def run_cli(*args: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "midigen", *args],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_evil_checkpoint_really_runs_code_when_loaded_unsafely(tmp_path):
    """Guard for the next test: the payload does work when weights_only is off."""
    marker = tmp_path / "pwned_unsafe"
    ckpt = evil_checkpoint(tmp_path / "evil.pt", marker)
    code = f"import torch; torch.load({str(ckpt)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, timeout=60, check=True)
    assert marker.exists()


def test_sample_refuses_a_checkpoint_holding_code(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = evil_checkpoint(tmp_path / "evil.pt", marker)
    proc = run_cli(
        "sample", "--checkpoint", str(ckpt), "--num-files", "1", "--out", "out", "--device", "cpu", cwd=tmp_path
    )
    assert not marker.exists(), "unpickling the checkpoint executed code"
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "evil.pt" in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_training_resume_refuses_a_last_pt_holding_code(tmp_path, event_rep, chorale_streams, capsys):
    from conftest import tiny_params

    from midigen.training.loop import train_model

    marker = tmp_path / "pwned_resume"
    out = tmp_path / "models"
    out.mkdir()
    evil_checkpoint(out / "last.pt", marker)
    train, val = chorale_streams
    result = train_model(event_rep, train, val, tiny_params(epochs=1), out, "x")
    assert not marker.exists()
    assert "warning: ignoring unreadable" in capsys.readouterr().out
    assert result.resumed_from_epoch == 0


# -- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../../x",
        "/abs",
        "/etc/passwd",
        "a/b/c",
        "..",
        ".",
        "",
        "nul\x00byte",
        "back\\slash",
        "...//..//",
        "C:\\Windows\\x",
        "~",
        "~root",
        "-rf",
        " ",
        "\u2215fake\u2215slash",
        "a\nb",
        "." * 300,
    ],
)
def test_safe_stem_cannot_leave_the_output_folder(tmp_path, name):
    stem = _safe_stem(name)
    assert stem and stem not in (".", "..")
    for bad in ("/", "\\", "\x00", "\n"):
        assert bad not in stem, (name, stem)
    assert not stem.startswith((".", "~")), (name, stem)  # no hidden files, no home expansion
    out = tmp_path / "bach"
    target = (out / f"{stem}.mid").resolve()
    assert target.parent == out.resolve(), (name, stem)


def test_sample_writes_only_inside_its_out_folder_and_keeps_existing_files(tmp_path, trained_run):
    out_dir, _, _ = trained_run
    work = tmp_path / "work"
    work.mkdir()
    out = work / "samples"
    out.mkdir()
    (out / "keep_me.txt").write_text("user data")
    before = {p for p in tmp_path.rglob("*")}
    proc = run_cli(
        "sample",
        "--checkpoint",
        str(out_dir / "best.pt"),
        "--num-files",
        "2",
        "--max-steps",
        "20",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--force",  # the folder is not empty: without --force the CLI refuses to mix files
        cwd=work,
    )
    assert proc.returncode == 0, proc.stderr
    new = {p for p in tmp_path.rglob("*")} - before
    assert new, "nothing written"
    assert all(p.resolve().is_relative_to(out.resolve()) for p in new), sorted(map(str, new))
    assert sorted(p.name for p in new) == ["sample_00.mid", "sample_00.txt", "sample_01.mid", "sample_01.txt"]
    assert (out / "keep_me.txt").read_text() == "user data"


# -- size bombs -------------------------------------------------------------------------------

MEASURE = r"""
import json, sys
from pathlib import Path
from midigen.params import load_params, resolve_time_unit
from midigen.data.preprocess import preprocess
from midigen.table import read_rows
params = resolve_time_unit({**load_params(sys.argv[1])["preprocess"], "representation": "events"}, "a/folder")
manifest = [{"rel_path": Path(p).name, "path": p} for p in sys.argv[3:]]
try:
    preprocess(manifest, params, Path(sys.argv[2]), workers=1)
    index, rejected = (read_rows(Path(sys.argv[2]) / name) for name in ("index.csv", "rejected.csv"))
except Exception as exc:
    index, rejected = [], [{"rel_path": "*", "reason": f"{type(exc).__name__}: {exc}"}]
# VmHWM, not ru_maxrss: ru_maxrss survives exec and would report the (large) pytest parent
hwm_kb = next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
print(json.dumps({"kept": [r["rel_path"] for r in index], "rejected": rejected, "maxrss_mb": hwm_kb / 1024}))
"""


def measure(tmp_path: Path, files: list[Path]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, str(PROJECT_ROOT / "params.yaml"), str(tmp_path / "tokens"), *map(str, files)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_files_claiming_huge_sizes_are_rejected_with_bounded_memory(tmp_path, chorale_paths):
    liar = tmp_path / "liar.mid"
    liar.write_bytes(header(0, 1) + chunk(simple_track(), length=0x7FFFFFFF))
    liar_many = tmp_path / "liar_many_tracks.mid"
    liar_many.write_bytes(header(1, 0xFFFF) + chunk(simple_track()) + chunk(END_OF_TRACK, length=0x7FFFFFFF))
    bomb = tmp_path / "bomb.mid"
    bomb.write_bytes(note_bomb(300_000))  # > max_notes = 200000 in params.yaml
    result = measure(tmp_path, [chorale_paths[0], liar, liar_many, bomb])
    reasons = {r["rel_path"]: r["reason"] for r in result["rejected"]}
    assert result["kept"] == [chorale_paths[0].name], result
    assert "liar.mid" in reasons and "liar_many_tracks.mid" in reasons, reasons
    assert "preprocess.max_notes" in reasons["bomb.mid"], reasons
    assert result["maxrss_mb"] < 700, result["maxrss_mb"]


def test_a_file_over_max_file_mb_is_rejected_before_parsing(tmp_path, chorale_paths):
    big = tmp_path / "big.mid"
    with open(big, "wb") as f:  # sparse: 11 MB of zeros after a header, no disk cost
        f.write(header(0, 1))
        f.truncate(11_000_000)
    result = measure(tmp_path, [chorale_paths[0], big])
    reasons = {r["rel_path"]: r["reason"] for r in result["rejected"]}
    assert "preprocess.max_file_mb" in reasons["big.mid"], reasons
