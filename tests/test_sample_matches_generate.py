"""`python -m midigen sample` writes exactly what the generate stage writes, for the same
checkpoint, params and seed: the same tokens and byte-identical MIDI (tempo, key signature and
program included), here for notes_chords, whose MIDI needs the output context most."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import yaml
from conftest import PITCH_MAX, PITCH_MIN, subprocess_env, tiny_params

from midigen.data.dataset import SplitData
from midigen.data.preprocess import preprocess
from midigen.data.store import TokenStore
from midigen.generation.generate import generate
from midigen.params import DEFAULTS
from midigen.training.loop import train_model


@pytest.fixture(scope="module")
def notes_chords_run(chorale_paths, tmp_path_factory):
    """A notes_chords store of the chorales, a tiny LSTM trained on it, and full params."""
    root = tmp_path_factory.mktemp("nc")
    pre = {**DEFAULTS["preprocess"], "representation": "notes_chords", "pitch_min": PITCH_MIN, "pitch_max": PITCH_MAX}
    manifest = [{"rel_path": p.name, "path": str(p)} for p in chorale_paths]
    preprocess(manifest, pre, root / "tokens", workers=1)
    store = TokenStore(root / "tokens")
    split = pd.DataFrame({"rel_path": store.index["rel_path"], "split": ["train"] * 4 + ["val"]})
    data = SplitData(store, split)
    params = {k: dict(v) for k, v in DEFAULTS.items()}
    params.update(tiny_params())
    params["preprocess"] = pre
    # what a user would change: a slower tempo, a key, an instrument
    params["generate"].update(num_files=3, max_steps=60, seed=11, tempo=84.0, key="G", program=19)
    train_model(store.representation, data.view("train"), data.view("val"), params, root / "models", "nc")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return root, params, data


def test_sample_writes_exactly_what_the_generate_stage_writes(notes_chords_run):
    root, params, data = notes_chords_run
    counts = generate(root / "models/best.pt", params, root / "stage", data)
    assert counts == {"sample": 3}
    cli = [sys.executable, "-m", "midigen", "sample", "--checkpoint", "models/best.pt", "--device", "cpu"]
    proc = subprocess.run([*cli, "--out", "cli"], cwd=root, capture_output=True, text=True, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    stage = sorted(p.name for p in (root / "stage").iterdir())
    assert stage == sorted(p.name for p in (root / "cli").iterdir()) and len(stage) == 6
    for name in stage:
        assert (root / "cli" / name).read_bytes() == (root / "stage" / name).read_bytes(), name
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(root / "cli" / "sample_00.mid"))
    assert pm.get_tempo_changes()[1].tolist() == pytest.approx([84.0], abs=1e-3)
    assert [pretty_midi.key_number_to_key_name(k.key_number) for k in pm.key_signature_changes] == ["G Major"]
    assert {i.program for i in pm.instruments} == {19}


def test_sample_refuses_a_flag_the_family_does_not_use(notes_chords_run, tmp_path):
    """A MusicVAE decodes whole windows from z: --top-k cannot apply, so it is an error, not ignored."""
    from midigen import models
    from midigen.representations.grid import DrumGrid
    from midigen.training import checkpoint

    rep = DrumGrid(bars=1)
    mp = {**DEFAULTS["model"], "kind": "musicvae", "z_dim": 4, "enc_hidden": 8, "conductor_hidden": 8}
    mp.update(dec_hidden=8, emb_dim=4, num_layers=1)
    family = models.family("musicvae")
    model = family.build(mp, rep)
    ckpt = checkpoint.build(model, family, rep, 1, [], "fp", "fp", model.state_dict())
    checkpoint.save(tmp_path / "vae.pt", ckpt)
    cli = [sys.executable, "-m", "midigen", "sample", "--checkpoint", str(tmp_path / "vae.pt"), "--out", "x"]
    proc = subprocess.run([*cli, "--top-k", "5"], cwd=tmp_path, capture_output=True, text=True, env=subprocess_env())
    assert proc.returncode == 2, proc.stderr
    assert "--top-k: a musicvae model does not use it" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()
    ok = subprocess.run([*cli, "--num-files", "2"], cwd=tmp_path, capture_output=True, text=True, env=subprocess_env())
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == [
        f"sample_0{i}.{e}" for i in (0, 1) for e in ("mid", "txt")
    ]
