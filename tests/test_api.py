"""The Python API (midigen.api): the README's example runs, sampling gives what the CLI gives for
the same seed, controls are checked like the CLI's flags, and the MusicVAE / GrooVAE tasks
return playable MIDI; all on tiny checkpoints trained in the tests."""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from conftest import PROJECT_ROOT

import midigen
from midigen.errors import DataError, MidiError, ParamsError


@pytest.fixture(scope="module", autouse=True)
def one_thread(torch_one_thread):
    yield


@pytest.fixture(scope="module")
def lstm(trained_run) -> midigen.Model:
    return midigen.load(trained_run[1].best_path, "cpu")


@pytest.fixture(scope="module")
def groove(tiny_groovae) -> midigen.Model:
    return midigen.load(tiny_groovae[0], "cpu")


def readme_example() -> str:
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readmes_python_example_runs_against_a_tiny_checkpoint(trained_run, tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    shutil.copy(trained_run[1].best_path, tmp_path / "models" / "best.pt")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), scope)
    for i in range(2):
        pm = pretty_midi.PrettyMIDI(str(tmp_path / f"piece_{i}.mid"))
        assert sum(len(inst.notes) for inst in pm.instruments) == len(scope["pieces"][i].notes)
    assert isinstance(scope["pm"], pretty_midi.PrettyMIDI)
    assert scope["notes"].dtype.names[:3] == ("start_s", "end_s", "pitch")
    # the continuation starts with the primer's tokens (the piece without its <EOS>)
    rep = scope["model"].rep
    primer = rep.encode(rep.read_piece(tmp_path / "piece_0.mid"))[:-1]
    (more,) = scope["more"]
    assert np.array_equal(more.ids[: len(primer)], primer) and len(more.ids) <= len(primer) + 100


def test_sampling_gives_the_clis_pieces_for_the_same_seed(lstm, tmp_path, monkeypatch):
    from midigen.cli import main

    monkeypatch.chdir(tmp_path)  # no params.yaml here: the CLI takes the shipped defaults, as load() does
    assert main(["sample", "--checkpoint", str(lstm.path), "--num-files", "3", "--max-steps", "40"]
                + ["--seed", "5", "--temperature", "1.3", "--out", "cli"]) == 0  # fmt: skip
    pieces = lstm.sample(3, max_steps=40, seed=5, temperature=1.3)
    for i, piece in enumerate(pieces):
        assert (tmp_path / "cli" / f"sample_{i:02d}.txt").read_text().split() == piece.tokens
        assert piece.midi_bytes() == (tmp_path / "cli" / f"sample_{i:02d}.mid").read_bytes()
    assert [p.tokens for p in lstm.sample(3, max_steps=40, seed=6, temperature=1.3)] != [p.tokens for p in pieces]


def test_a_model_says_what_it_is(lstm, groove):
    assert (lstm.family, lstm.representation) == ("lstm", "events")
    assert lstm.config["hidden_dim"] == 32 and lstm.info["val_loss"] > 0 and not lstm.has_latent
    assert (groove.family, groove.representation) == ("musicvae", "groove")
    assert groove.info["groove"] and "density" in groove.attributes
    assert "family='lstm'" in repr(lstm)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"top_k": -1}, "top_k = -1: expected an integer >= 0"),
        ({"temperature": "hot"}, "temperature = 'hot': expected a number"),
        ({"num": 0}, "num_files = 0: expected an integer >= 1"),
        ({"max_voices": 2.5}, "max_voices = 2.5: expected an integer"),
        ({"attributes": {"density": 1.0}}, "attributes: a lstm model does not use it"),
        ({"key": "H"}, "key = 'H': expected one of"),
        ({"min_beats": -1}, "min_beats = -1"),
    ],
)
def test_a_bad_control_is_a_params_error_naming_it(lstm, kwargs, message):
    kwargs = {"num": 1, **kwargs}
    with pytest.raises(ParamsError, match=re.escape(message)):
        lstm.sample(kwargs.pop("num"), **kwargs)


def test_a_token_model_has_no_latent_tasks(lstm, tiny_groovae):
    with pytest.raises(ParamsError, match="interpolate: a lstm model has no latent space"):
        lstm.interpolate(tiny_groovae[1][0], tiny_groovae[1][1])


def test_a_missing_checkpoint_or_primer_is_one_clear_error(lstm, tmp_path):
    with pytest.raises(DataError, match="checkpoint not found"):
        midigen.load(tmp_path / "nope.pt")
    (tmp_path / "noise.mid").write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(MidiError, match="noise.mid"):
        lstm.sample(1, primer=tmp_path / "noise.mid", max_steps=5)


def hits_of(piece: midigen.Piece) -> np.ndarray:
    return piece.rep.class_hits(piece.ids.reshape(-1, piece.rep.seq_len))


def test_groovae_interpolates_reconstructs_and_samples_with_attributes(groove, tiny_groovae):
    a, b = tiny_groovae[1][:2]
    steps = groove.interpolate(a, b, steps=4, tempo=90)
    assert len(steps) == 4
    first, _ = groove.reconstruct(a)
    # both ends of the path are the files' windows decoded from their mean codes
    assert np.array_equal(steps[0].ids, groove.reconstruct(a)[1].ids)
    assert np.array_equal(first.ids, groove.rep.encode(groove.rep.read_piece(a))[: groove.rep.seq_len])
    pm = steps[1].to_pretty_midi()
    assert pm.instruments[0].is_drum and abs(pm.get_tempo_changes()[1][0] - 90) < 0.01
    moved = groove.sample(8, attributes={"density": 2.0}, seed=3)
    plain = groove.sample(8, seed=3)
    assert sum(hits_of(p).sum() for p in moved) != sum(hits_of(p).sum() for p in plain)
    with pytest.raises(ParamsError, match="top_k: a musicvae model does not use it .*attributes"):
        groove.sample(1, top_k=5)
    with pytest.raises(ParamsError, match="steps = 1: 2 to 1024"):
        groove.interpolate(a, b, steps=1)


def test_humanize_keeps_every_hit_and_plays_it(groove, tiny_groovae):
    source = tiny_groovae[1][0]
    played = groove.humanize(source)
    windows, _ = _grid(groove, source)
    assert np.array_equal(hits_of(played), groove.rep.class_hits(windows))
    velocities = {n.velocity for n in played.to_pretty_midi().instruments[0].notes}
    assert len(velocities) > 1
    with pytest.warns(UserWarning, match="trained with train.input_transform = humanize; tap2drum works best"):
        drums = groove.tap2drum(source)
    assert drums.to_pretty_midi().instruments[0].is_drum
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the model was trained for humanize: no warning
        groove.humanize(source)


def _grid(model: midigen.Model, path: Path):
    from midigen.generation.latent import file_grid

    return file_grid(path, model.rep)
