"""MusicVAE's groove head (GrooVAE): the 27 values per step and back, the three losses, decoding
with fixed hits, the family choosing the head from the representation, the task transforms in
training, the groovae_4bar preset and the attribute vectors saved in the checkpoint."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import TINY_GROOVAE as GROOVE_VAE
from conftest import TINY_TRAIN

from midigen.errors import ParamsError
from midigen.generation.attributes import attribute_shift, parse_attributes, window_attributes
from midigen.models import family
from midigen.models.groove import features, to_ids
from midigen.models.musicvae import GROOVE_TERMS, MusicVAE, MusicVAEConfig, evaluate_vae
from midigen.params import DEFAULTS, PRESETS, validate
from midigen.representations.grid import DrumGrid
from midigen.representations.groove import GrooveGrid, cell_ids, humanize_input
from midigen.training.checkpoint import load_model
from midigen.training.loop import train_model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def accented_grooves(n: int = 16, bars: int = 2, seed: int = 0) -> np.ndarray:
    """n groove windows: 8th hi-hats accented on the beat, kick and snare; four loudness levels,
    each marked by an open hi-hat at its own step, and laid-back snares in the windows with an
    extra kick on step 14: how each is played follows from its hits."""
    rng = np.random.default_rng(seed)
    steps = 16 * bars
    out = []
    for i in range(n):
        hit = np.zeros((steps, 9), dtype=bool)
        velocity = np.zeros((steps, 9))
        shift = np.zeros((steps, 9))
        level, laid_back = 60 + 40 * (i % 4) / 3, i % 2 == 1
        for s in range(steps):
            if s % 2 == 0:
                hit[s, 2], velocity[s, 2] = True, level + (25 if s % 4 == 0 else -20)
            if s % 8 == 0 or (laid_back and s % 16 == 14):
                hit[s, 0], velocity[s, 0] = True, level + 20
            if s % 8 == 4:
                hit[s, 1], velocity[s, 1], shift[s, 1] = True, level + 10, 0.25 if laid_back else 0.0
            if s % 16 == 1 + 2 * (i % 4):
                hit[s, 3], velocity[s, 3] = True, level
        velocity = np.clip(velocity + rng.normal(0, 2, velocity.shape) * hit, 1, 127)
        out.append(cell_ids(hit, velocity, shift).reshape(-1))
    return np.stack(out).astype(np.int64)


def groove_model(**kw) -> MusicVAE:
    torch.manual_seed(0)
    config = dict(num_classes=len(GrooveGrid().vocab), bars=2, z_dim=8, enc_hidden=16, enc_layers=1)
    config.update(conductor_hidden=16, conductor_layers=1, dec_hidden=16, dec_layers=1, emb_dim=8, head="groove")
    return MusicVAE(MusicVAEConfig(**{**config, **kw}))


def test_ids_become_magentas_27_values_and_back():
    ids = torch.as_tensor(accented_grooves(2))
    values = features(ids, 9)
    assert values.shape == (2, 32, 27)
    hits, velocity, offset = values.split(9, dim=-1)
    assert set(hits.unique().tolist()) <= {0.0, 1.0}
    assert 0 <= float(velocity.min()) and float(velocity.max()) <= 1
    assert float(offset.max()) == pytest.approx(0.5)  # +0.25 steps, times 2 as Magenta stores it
    assert (velocity[hits == 0] == 0).all() and (offset[hits == 0] == 0).all()
    assert (to_ids(values, 9) == ids).all()


@pytest.mark.parametrize("decoder", ["flat", "hierarchical"])
def test_the_groove_head_has_three_losses_and_decodes_ids(decoder):
    model = groove_model(decoder=decoder)
    x = torch.as_tensor(accented_grooves(3))
    out = model.loss(x, beta=0.2, free_bits=0.0)
    assert {"loss", "recon", "kl", "accuracy", *GROOVE_TERMS} <= set(out)
    assert out["recon"].item() == pytest.approx(sum(out[k].item() for k in GROOVE_TERMS), rel=1e-5)
    # an untrained head: about ln 2 nats per (step, class) for the hits
    assert out["hit_loss"].item() == pytest.approx(32 * 9 * math.log(2), rel=0.2)
    ids = model.decode(torch.randn(3, 8), temperature=1.0)
    assert ids.shape == (3, 32 * 9)
    assert model.reconstruct(x).shape == x.shape


def test_decoding_with_fixed_hits_keeps_exactly_those_hits():
    model = groove_model()
    x = accented_grooves(4)
    hits = torch.as_tensor(GrooveGrid(bars=2).class_hits(x))
    out = model.decode(torch.randn(4, 8), temperature=1.0, hits=hits).numpy()
    assert (GrooveGrid(bars=2).class_hits(out) == hits.numpy()).all()


def test_a_small_groove_vae_learns_accents_from_quantized_input():
    """The humanize task on its own: the encoder reads the hits alone, the decoder must give the
    accents back (the real-data test is tests/test_groove_openmsx.py)."""
    model = groove_model(z_dim=16, enc_hidden=32, dec_hidden=32, emb_dim=16)
    x = torch.as_tensor(accented_grooves(16))
    x_in = torch.as_tensor(humanize_input(x.numpy()))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    first = None
    for _ in range(200):
        out = model.loss(x, beta=0.0, free_bits=0.0, x_in=x_in)
        first = first or {k: out[k].item() for k in GROOVE_TERMS}
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    last = model.loss(x, beta=0.0, free_bits=0.0, x_in=x_in)
    assert last["velocity_loss"].item() < 0.25 * first["velocity_loss"]
    assert last["offset_loss"].item() < first["offset_loss"]
    # the accents (on-beat hi-hats louder than off-beat ones) come back from hits alone
    rep = GrooveGrid(bars=2)
    from midigen.generation.latent import humanize

    played = humanize(model, rep, x.numpy(), 0.0, 0, torch.device("cpu"))
    hit, velocity, _ = rep.features(played)
    assert (hit == rep.class_hits(x.numpy())).all()
    assert velocity[:, 0::4, 2].mean() > velocity[:, 2::4, 2].mean() + 20


def test_the_family_picks_the_head_from_the_representation():
    fam = family("musicvae")
    params = {**DEFAULTS["model"], **GROOVE_VAE}
    assert fam.build(params, GrooveGrid()).config.head == "groove"
    assert fam.build(params, DrumGrid()).config.head == "categorical"
    assert fam.build({**params, "num_layers": 2, "enc_layers": 1}, GrooveGrid()).config.enc_layers == 1


def _train(windows, tmp_path, **train):
    rep = GrooveGrid(bars=2)
    params = {"model": GROOVE_VAE, "train": {**TINY_TRAIN, "batch_size": 8, "max_beta": 0.2, "beta_rate": 0.99}}
    params["train"].update({"free_bits": 0.0, "input_transform": "none", "epochs": 2, **train})
    return rep, params, train_model(rep, windows, windows[:4], params, tmp_path, "grooves")


def test_training_logs_the_three_losses_and_saves_attribute_vectors(tmp_path):
    rep, params, result = _train(accented_grooves(32), tmp_path, input_transform="humanize")
    row = result.history.rows[-1]
    for key in GROOVE_TERMS:  # every history field is logged to MLflow per epoch (stages/train.py)
        assert f"train_{key}" in row and f"val_{key}" in row
    loaded = load_model(result.best_path, "cpu")
    assert loaded.ckpt["input_transform"] == "humanize"
    vectors = loaded.model.config.attributes
    assert {"density", "velocity", "laid_back", "density_kick"} <= set(vectors)
    assert all(len(v) == GROOVE_VAE["z_dim"] for v in vectors.values())
    assert "density_ride" not in vectors and "density_snare" not in vectors  # never hit, always 2 a bar
    shift = attribute_shift(loaded.model, parse_attributes(["velocity=+1.5", "density=-1"]))
    expected = 1.5 * torch.tensor(vectors["velocity"]) - torch.tensor(vectors["density"])
    assert torch.allclose(shift, expected, atol=1e-6)
    with pytest.raises(ParamsError, match="not an attribute of this checkpoint; it has: density"):
        attribute_shift(loaded.model, (("groove", 1.0),))


@pytest.mark.parametrize("text", ["density", "density=", "=1", "density=fast", "density=nan"])
def test_a_malformed_attribute_flag_is_one_line(text):
    with pytest.raises(ParamsError, match="expected NAME=AMOUNT"):
        parse_attributes([text])


def test_evaluation_reads_windows_through_the_models_input_transform(tmp_path):
    windows = accented_grooves(16)
    rep, params, result = _train(windows, tmp_path)
    model = load_model(result.best_path, "cpu").model
    plain = evaluate_vae(model, windows, 8, torch.device("cpu"), 0.2, 0.0, free_running=True)
    human = evaluate_vae(model, windows, 8, torch.device("cpu"), 0.2, 0.0, free_running=True, transform=humanize_input)
    assert {"hit_loss", "velocity_loss", "offset_loss", "free_accuracy"} <= set(plain)
    assert plain["velocity_loss"] != human["velocity_loss"]


def test_a_task_transform_needs_the_groove_representation(tmp_path):
    drums = DrumGrid(bars=2)
    windows = drums.step_ids(GrooveGrid(bars=2).class_hits(accented_grooves(8)).astype(np.int64) * 0) + 5
    params = {"model": GROOVE_VAE, "train": {**TINY_TRAIN, "max_beta": 0.2, "beta_rate": 0.99, "free_bits": 0.0}}
    params["train"]["input_transform"] = "tapify"
    with pytest.raises(ParamsError, match="input_transform = 'tapify' needs preprocess.representation = 'groove'"):
        train_model(drums, windows, windows, params, tmp_path, "drums")


def test_window_attributes_measure_what_they_say():
    rep = GrooveGrid(bars=2)
    a = window_attributes(accented_grooves(4), rep)
    assert a["density"] == pytest.approx([13.0, 14.0, 13.0, 14.0])  # 8 hi-hats, 2 (3) kicks, 2 snares, 1 open hi-hat
    assert a["syncopation"] == pytest.approx([1 / 13, 1 / 14] * 2)  # the open hi-hat
    assert a["laid_back"][1] > 0 == a["laid_back"][0]
    assert a["velocity"][3] > a["velocity"][0] + 30
    assert a["density_snare"] == pytest.approx([2.0] * 4)


def test_the_groovae_4bar_preset_fills_in_magentas_values_and_keeps_what_was_changed():
    raw = {s: dict(v) for s, v in DEFAULTS.items()}
    raw["model"].update(kind="musicvae", preset="groovae_4bar")
    raw["train"]["epochs"] = 3
    raw["train"]["batch_size"] = 64  # changed from the default: kept
    p = validate(raw)
    magenta = PRESETS["groovae_4bar"]
    assert p["model"]["decoder"] == "flat" and p["model"]["z_dim"] == 256
    assert p["model"]["enc_layers"] == 1 and p["model"]["dec_layers"] == 2
    assert p["model"]["dropout"] == 0.7 and p["train"]["beta_rate"] == 0.0 and p["train"]["free_bits"] == 48
    assert p["model"]["velocity_loss"] == "squared"  # Magenta's; the default is l1
    assert p["train"]["schedule"] == "exponential" and p["train"]["lr"] == magenta["train"]["lr"]
    assert p["train"]["batch_size"] == 64 and p["train"]["epochs"] == 3
    assert validate({s: dict(v) for s, v in DEFAULTS.items()}) == DEFAULTS  # no preset: nothing changes


def test_a_token_model_refuses_attribute_flags(trained_run, tmp_path):
    import subprocess
    import sys

    from conftest import subprocess_env

    cli = [sys.executable, "-m", "midigen", "sample", "--checkpoint", str(trained_run[1].best_path), "--out", "x"]
    proc = subprocess.run(
        [*cli, "--attribute", "density=1"], cwd=tmp_path, capture_output=True, text=True, env=subprocess_env()
    )
    assert proc.returncode == 2 and "--attribute: a lstm model does not use it" in proc.stderr
    assert not (tmp_path / "x").exists()
