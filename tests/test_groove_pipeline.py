"""GrooVAE through the real pipeline and CLI on real songs (Debian's openttd-openmsx): one
`dvc repro` with preprocess.representation groove trains it end to end and writes played drums
(varied velocities, onsets off the grid); generate.mode humanize and tap2drum write their tasks;
the CLI humanizes, taps, transfers a groove, samples along an attribute and says which bars an
interpolation used."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pretty_midi
import pytest
import yaml
from test_interruption import DVC, WATCHED, make_tiny_repo, run

TINY_GROOVE = {
    "kind": "musicvae",
    "emb_dim": 16,
    "num_layers": 1,
    "dropout": 0.0,
    "decoder": "flat",
    "z_dim": 16,
    "enc_hidden": 32,
    "dec_hidden": 32,
}
TEMPO = 100.0
STEP_S = 60.0 / TEMPO / 4


@pytest.fixture(scope="module")
def groove_repo(tmp_path_factory, openmsx_dir):
    """A tiny project whose data.source is the openmsx songs, after one `dvc repro`."""
    root = tmp_path_factory.mktemp("groove_repo")
    home = tmp_path_factory.mktemp("groove_home")
    env = make_tiny_repo(
        root,
        home,
        [],
        model=TINY_GROOVE,
        train={"epochs": 2, "batch_size": 32},
        preprocess={"representation": "groove"},
        generate={"num_files": 4, "tempo": TEMPO},
        report={"audio": False},
    )
    corpus = root / WATCHED
    shutil.rmtree(corpus)
    shutil.copytree(openmsx_dir, corpus, ignore=shutil.ignore_patterns("*.gz", "*.txt", "*.obm"))
    out = run([DVC, "repro"], root, env, timeout=900)
    return root, env, out


def _midi_notes(path) -> list[pretty_midi.Note]:
    pm = pretty_midi.PrettyMIDI(str(path))
    assert [inst.is_drum for inst in pm.instruments] == [True]
    return pm.instruments[0].notes


@pytest.mark.pipeline
def test_dvc_repro_trains_groovae_and_writes_played_drums(groove_repo):
    root, _, out = groove_repo
    samples = sorted((root / "outputs/generated").glob("sample_*.mid"))
    assert len(samples) == 4
    notes = [n for path in samples for n in _midi_notes(path)]
    assert len({n.velocity for n in notes}) > 1  # not every hit at one velocity
    steps = np.array([n.start / STEP_S for n in notes])
    assert (np.abs(steps - np.round(steps)) > 1e-3).any()  # the data has off-grid onsets: so do they
    ev = json.loads((root / "metrics/eval.json").read_text())
    assert ev["input_transform"] == "none" and ev["expressive"]["test"]["off_grid_share"] > 0
    assert ev["attributes"] and "test_velocity_loss" in ev
    assert "velocity" in out and "attributes (" in out


def _set(root, **generate):
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["generate"].update(generate)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.pipeline
@pytest.mark.parametrize(
    ("mode", "prefixes"),
    [("humanize", ("original", "quantized", "humanize")), ("tap2drum", ("original", "tap", "tap2drum"))],
)
def test_generate_mode_writes_the_task_beside_its_originals(groove_repo, mode, prefixes):
    root, env, _ = groove_repo
    _set(root, mode=mode)
    try:
        run([DVC, "repro"], root, env, timeout=600)
        names = sorted(p.name for p in (root / "outputs/generated").glob("*.mid"))
        assert names == sorted(f"{prefix}_{i:02d}.mid" for prefix in prefixes for i in range(4))
        # a 2-epoch model trained without the task's transform may well write silence: only drums
        for path in (root / "outputs/generated").glob(f"{prefixes[-1]}_*.mid"):
            assert all(inst.is_drum for inst in pretty_midi.PrettyMIDI(str(path)).instruments)
        assert _midi_notes(root / "outputs/generated" / f"{prefixes[0]}_00.mid")
        ev = json.loads((root / "metrics/eval.json").read_text())
        assert ev["num_generated"] == 4  # samples drawn by evaluate, as sample mode would write them
    finally:
        _set(root, mode="sample")


def _cli(args: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "midigen", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.pipeline
def test_cli_runs_grooves_tasks_on_real_songs(groove_repo, tmp_path):
    root = groove_repo[0]
    song, other = root / WATCHED / "relax_song.mid", root / WATCHED / "moo_redfarn.mid"
    ckpt = ["--checkpoint", str(root / "models/best.pt")]

    proc = _cli(["humanize", str(song), *ckpt, "--out", str(tmp_path / "h")], root)
    assert proc.returncode == 0, proc.stderr
    assert "works best with a model trained with humanize" in proc.stderr  # this one was not
    notes = _midi_notes(tmp_path / "h/humanize_00.mid")
    source = [n for n in pretty_midi.PrettyMIDI(str(song)).instruments if n.is_drum][0].notes
    assert abs(len(notes) - len(source)) <= len(source) // 10  # the same hits (a few merged per step)

    proc = _cli(["tap2drum", str(other), *ckpt, "--out", str(tmp_path / "t")], root)
    assert proc.returncode == 0, proc.stderr
    # this model never saw taps (no tapify): what it writes may be silence; the kit is tested in
    # tests/test_groove_openmsx.py
    assert (tmp_path / "t/tap2drum_00.mid").exists() and " bars; " in proc.stdout
    assert "works best with a model trained with tapify" in proc.stderr

    proc = _cli(["transfer", str(other), str(song), *ckpt, "--out", str(tmp_path / "x")], root)
    assert proc.returncode == 0, proc.stderr
    assert "groove " in proc.stdout and "hits " in proc.stdout and (tmp_path / "x/transfer_00.mid").exists()

    proc = _cli(["interpolate", str(song), str(other), *ckpt, "--min-hits", "40", "--out", str(tmp_path / "i")], root)
    assert proc.returncode == 0, proc.stderr
    assert f"{song}: bars " in proc.stdout and " hits)" in proc.stdout
    first = int(proc.stdout.split(f"{song}: bars ")[1].split("-")[0])
    assert first >= 1

    proc = _cli(
        ["interpolate", str(song), str(other), *ckpt, "--min-hits", "100000", "--out", str(tmp_path / "j")], root
    )
    assert proc.returncode == 2 and "with 100000 hits or more" in proc.stderr and "Traceback" not in proc.stderr

    proc = _cli(
        ["sample", *ckpt, "--num-files", "2", "--attribute", "density=+1.5", "--out", str(tmp_path / "s")], root
    )
    assert proc.returncode == 0, proc.stderr
    proc = _cli(["sample", *ckpt, "--attribute", "loudness=1", "--out", str(tmp_path / "u")], root)
    assert proc.returncode == 2 and "it has: density" in proc.stderr
