"""MusicVAE through the real pipeline and CLI: `dvc repro` on a Groove-MIDI-Dataset-like folder
trains the drum VAE, writes 4-bar drum MIDI and an interpolation, and evaluates it; the CLI
interpolates and reconstructs files and explains files it cannot use."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pretty_midi
import pytest
from drum_corpus import drum_bars, write_drum_midi, write_gmd_like
from test_interruption import DVC, WATCHED, make_tiny_repo, run

TINY_VAE = {
    "kind": "musicvae",
    "emb_dim": 16,
    "num_layers": 1,
    "dropout": 0.0,
    "z_dim": 16,
    "enc_hidden": 32,
    "conductor_hidden": 32,
    "dec_hidden": 32,
}
STEPS = 64
TEMPO = 100.0


@pytest.fixture(scope="module")
def drum_repo(tmp_path_factory):
    """A tiny project whose data.source is a GMD-like folder, after one `dvc repro`."""
    root = tmp_path_factory.mktemp("vae_repo")
    home = tmp_path_factory.mktemp("vae_home")
    env = make_tiny_repo(
        root,
        home,
        [],
        model=TINY_VAE,
        train={"epochs": 2, "batch_size": 8},
        preprocess={"representation": "drums"},
        generate={"num_files": 3, "tempo": TEMPO},
    )
    corpus = root / WATCHED
    rows = write_gmd_like(corpus, n_files=10, seed=3, bars=9)
    # a real multi-track file: piano + drums; only the drum track must be used
    write_drum_midi(
        corpus / "band/with_piano.mid", drum_bars("rock", 8, np.random.default_rng(0)), 110, extra_piano=True
    )
    write_drum_midi(corpus / "band/waltz.mid", drum_bars("rock", 8, np.random.default_rng(1)), 110, (3, 4))
    out = run([DVC, "repro"], root, env, timeout=600)
    return root, env, rows, out


@pytest.mark.pipeline
def test_dvc_repro_trains_the_drum_vae_on_a_gmd_like_folder(drum_repo):
    root, env, rows, out = drum_repo
    index = pd.read_csv(root / "data/tokens/index.csv")
    by_path = index.set_index("rel_path")
    # GMD's info.csv: style and bpm kept, split column used
    first = rows[0]
    assert by_path.loc[first["midi_filename"], "style"] == first["style"]
    assert by_path.loc[first["midi_filename"], "bpm"] == first["bpm"]
    split = pd.read_csv(root / "data/split.csv").set_index("rel_path")["split"]
    for row in rows:
        assert split[row["midi_filename"]] == {"validation": "val"}.get(row["split"], row["split"])
    # the random melodies of the tiny corpus have no drums, the waltz is 3/4: each with its reason
    rejected = pd.read_csv(root / "data/tokens/rejected.csv").set_index("rel_path")["reason"]
    assert rejected["band/waltz.mid"].startswith("not 4/4 (found 3/4")
    assert rejected["melody_0.mid"] == "no drum track"
    assert "band/with_piano.mid" in by_path.index
    assert (index["length"] % STEPS == 0).all()

    train = json.loads((root / "metrics/train.json").read_text())
    assert {"best_val_loss", "val_accuracy", "val_kl"} <= set(train)
    curve = pd.read_csv(root / "metrics/train_curve.csv")
    assert {"train_loss", "val_loss", "val_perplexity", "train_kl", "beta", "train_accuracy"} <= set(curve.columns)

    ev = json.loads((root / "metrics/eval.json").read_text())
    assert 0 <= ev["test_recon_accuracy"] <= 1 and 0 <= ev["test_free_accuracy"] <= 1
    assert ev["test_neg_elbo"] == pytest.approx(ev["test_recon"] + ev["test_kl"], abs=1e-2)
    assert set(ev["class_hit_rate"]["test"]) >= {"kick", "snare", "closed_hihat"}
    assert ev["interpolation"]["pairs"] + ev["interpolation"]["identical_ends"] >= 1
    assert "reconstruction accuracy" in out


@pytest.mark.pipeline
def test_samples_and_interpolations_are_four_bar_drum_midi(drum_repo):
    root = drum_repo[0]
    gen = root / "outputs/generated"
    samples, interp = sorted(gen.glob("sample_*.mid")), sorted(gen.glob("interp_*.mid"))
    assert len(samples) == 3 and len(interp) == 5
    bar_s = 4 * 60.0 / TEMPO
    for path in samples + interp:
        pm = pretty_midi.PrettyMIDI(str(path))
        assert [inst.is_drum for inst in pm.instruments] == [True]
        assert pm.get_end_time() == pytest.approx(4 * bar_s, abs=1e-3)
        assert pm.time_signature_changes[0].numerator == 4
        assert len((path.with_suffix(".txt")).read_text().split()) == STEPS


@pytest.mark.pipeline
def test_a_second_repro_does_nothing(drum_repo):
    root, env = drum_repo[0], drum_repo[1]
    out = run([DVC, "repro"], root, env)
    assert "Running stage" not in out


@pytest.mark.pipeline
def test_dvc_plots_show_draws_the_vaes_kl_reconstruction_and_accuracy(drum_repo):
    root, env = drum_repo[0], drum_repo[1]
    proc = subprocess.run([DVC, "plots", "show", "--json"], cwd=root, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    failed = {e["name"] for e in shown.get("errors", [])}
    assert failed == {"groove_losses"}, shown.get("errors")  # GrooVAE's losses: not in a drums curve
    for name in ("kl", "reconstruction", "accuracy", "loss"):
        (plot,) = shown["data"][name]
        values = plot["content"]["data"]["values"]
        assert len(values) == 2 * 2, (name, values)  # two columns (train, val) by two epochs
    (bars,) = shown["data"]["set_distance"]
    assert bars["content"]["encoding"]["x"]["scale"] == {"zero": True}


def _cli(args: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "midigen", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.pipeline
def test_cli_interpolates_and_reconstructs_files(drum_repo, tmp_path):
    root, _, rows, _ = drum_repo
    a = root / WATCHED / rows[0]["midi_filename"]
    b = root / WATCHED / "band/with_piano.mid"
    ckpt = root / "models/best.pt"
    proc = _cli(
        ["interpolate", str(a), str(b), "--checkpoint", str(ckpt), "--steps", "4", "--out", str(tmp_path)], root
    )
    assert proc.returncode == 0, proc.stderr
    written = sorted(tmp_path.glob("interp_*.mid"))
    assert [p.name for p in written] == [f"interp_{i:02d}.mid" for i in range(4)]
    for p in written:
        assert pretty_midi.PrettyMIDI(str(p)).instruments[0].is_drum

    proc = _cli(["reconstruct", str(a), "--checkpoint", str(ckpt), "--bar", "2", "--out", str(tmp_path / "r")], root)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r/reconstruction_00.mid").exists() and (tmp_path / "r/original_00.mid").exists()
    assert "of the 64 steps as in the original" in proc.stdout


@pytest.mark.pipeline
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("melody_0.mid", "no drum track"),
        ("band/waltz.mid", "not 4/4 (found 3/4 at bar 1)"),
        ("short", "too short for a 4-bar window (the file has 2 bars)"),
    ],
)
def test_cli_says_why_a_file_has_no_window(drum_repo, tmp_path, name, reason):
    root, _, rows, _ = drum_repo
    if name == "short":
        path = write_drum_midi(tmp_path / "short.mid", drum_bars("funk", 2, np.random.default_rng(0)), 100)
    else:
        path = root / WATCHED / name
    good = root / WATCHED / rows[0]["midi_filename"]
    proc = _cli(
        ["interpolate", str(good), str(path), "--checkpoint", str(root / "models/best.pt"), "--out", str(tmp_path)],
        root,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert reason in proc.stderr and str(path) in proc.stderr


def test_cli_rejects_an_lstm_checkpoint_for_interpolation(trained_run, tmp_path, chorale_paths):
    ckpt = trained_run[1].best_path
    proc = _cli(
        [
            "interpolate",
            str(chorale_paths[0]),
            str(chorale_paths[1]),
            "--checkpoint",
            str(ckpt),
            "--out",
            str(tmp_path),
        ],
        tmp_path,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "needs a MusicVAE one" in proc.stderr
