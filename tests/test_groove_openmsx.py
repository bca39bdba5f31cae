"""GrooVAE learns on real drums: Debian's openttd-openmsx songs (30 with a drum track), split by
song as the split stage does, a small model trained for a few epochs on one core. On the
held-out songs it reconstructs far better than always predicting the most common step, its
samples are as steady bar to bar as real drumming and are played (varied velocities, onsets off
the grid); a humanize model plays the held-out songs' hits closer to their real velocities than
their class's mean velocity and the training songs' far closer, tap2drum writes a kit, and the
attribute vectors move their attributes. The README's figures come from larger runs of the same
code (see "Expressive drums (GrooVAE)")."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_TRAIN

from midigen.data.dataset import SplitData
from midigen.data.preprocess import preprocess
from midigen.data.split import split_pieces
from midigen.data.store import TokenStore
from midigen.evaluation.vae_eval import MONOTONIC, evaluate_musicvae, humanize_scores
from midigen.models import family
from midigen.params import DEFAULTS
from midigen.training.checkpoint import load_model
from midigen.training.loop import train_model

SMALL = {
    "kind": "musicvae",
    "emb_dim": 32,
    "num_layers": 1,
    "dropout": 0.0,
    "decoder": "flat",
    "z_dim": 32,
    "enc_hidden": 64,
    "dec_hidden": 96,
}


@pytest.fixture(scope="module")
def songs(openmsx_dir, tmp_path_factory) -> SplitData:
    """The songs' 4-bar groove windows (hop 1 bar) in a token store, split by song with the
    split stage's defaults (3 test songs, 1 validation song)."""
    out = tmp_path_factory.mktemp("openmsx_tokens")
    manifest = [{"rel_path": p.name, "path": str(p)} for p in sorted(openmsx_dir.glob("*.mid"))]
    preprocess(manifest, {**DEFAULTS["preprocess"], "representation": "groove"}, out, workers=1)
    store = TokenStore(out)
    s = DEFAULTS["split"]
    split = split_pieces(store.index, s["val_ratio"], s["test_ratio"], s["seed"], s["from_metadata"]).table
    return SplitData(store, pd.DataFrame(split))


#: what the README recommends for a humanizer on a small corpus: dropout 0.5 (22 songs are
#: memorised at 0.1) with the default absolute velocity error
HUMANIZE = {"dropout": 0.5}


def _params(transform: str, epochs: int) -> dict:
    params = {section: dict(values) for section, values in DEFAULTS.items()}
    params["model"].update(SMALL, **(HUMANIZE if transform == "humanize" else {}))
    params["train"].update(TINY_TRAIN)
    params["train"].update(epochs=epochs, batch_size=32, lr=0.003, warmup_steps=50, input_transform=transform)
    params["generate"]["temperature"] = 0.5
    return params


@pytest.fixture(scope="module")
def evaluated(songs, tmp_path_factory, torch_one_thread):
    """transform -> (eval.json's numbers, the loaded checkpoint) of a small model trained with
    that input transform."""
    results = {}

    def run(transform: str, epochs: int):
        if transform not in results:
            out = tmp_path_factory.mktemp(f"groove_{transform}")
            params = _params(transform, epochs)
            train, val = family("musicvae").data(songs)
            torch.manual_seed(0)
            result = train_model(songs.store.representation, train, val, params, out, "openmsx")
            loaded = load_model(result.best_path, "cpu")
            ev, _ = evaluate_musicvae(loaded.model, loaded.rep, params, songs, out / "none", loaded.device)
            results[transform] = ev, loaded
        return results[transform]

    return run


def test_the_real_corpus_has_played_drums_and_a_song_split(songs):
    counts = songs.split["split"].value_counts()
    assert counts["train"] >= 20 and counts["test"] >= 2
    assert songs.windows("train").shape[0] > 1000


def test_held_out_songs_are_reconstructed_far_better_than_the_most_common_step(evaluated):
    ev = evaluated("none", 8)[0]
    base = ev["majority_accuracy"]
    print(
        f"openmsx: teacher-forced {ev['test_recon_accuracy']:.3f}, free-running {ev['test_free_accuracy']:.3f}, "
        f"most common step {base:.3f}; groove consistency samples {ev['generated']['groove_consistency']['mean']:.3f}"
        f" test {ev['test']['groove_consistency']['mean']:.3f}"
    )
    assert ev["test_recon_accuracy"] > base + 0.08
    assert ev["test_free_accuracy"] > base + 0.05
    for key in ("hit_loss", "velocity_loss", "offset_loss"):
        assert ev[f"test_{key}"] > 0


def test_samples_are_steady_and_played(evaluated):
    ev = evaluated("none", 8)[0]
    # 256 prior samples at temperature 0.5, Magenta's music_vae_generate default (the README's run)
    gap = ev["sampled"]["groove_consistency"]["mean"] - ev["test"]["groove_consistency"]["mean"]
    assert abs(gap) <= 0.1
    played = ev["expressive"]["generated"]
    assert played["distinct_velocities"] > 5 and played["velocity_std"] > 2
    assert played["off_grid_share"] > 0  # the data has onsets off the grid, so do the samples
    assert sum(played["velocity_histogram"]) == pytest.approx(1.0, abs=1e-3)
    assert set(played["class_velocity"]) == set(ev["class_hit_rate"]["test"])


def test_attribute_vectors_move_their_attributes(evaluated):
    ev = evaluated("none", 8)[0]
    rho = {name: a["spearman"] for name, a in ev["attributes"].items()}
    print("Spearman:", rho)
    assert {"density", "syncopation", "velocity", "laid_back", "swing", "density_kick"} <= set(rho)
    for name in ("density", "density_kick", "density_snare", "density_closed_hihat", "velocity"):
        assert rho[name] is not None and rho[name] >= MONOTONIC, name
    assert ev["attributes_monotonic"] >= 0.75 * len(rho)


def test_humanize_plays_held_out_songs_closer_than_their_class_mean_velocity(evaluated, songs):
    ev, loaded = evaluated("humanize", 8)
    train = songs.windows("train")
    own = humanize_scores(loaded.model, loaded.rep, train[::8], train, 0, loaded.device)
    held = ev["humanize"]
    print("humanize, held out:", held, "training songs:", own)
    assert held["hits"] > 1000 and held["played"]["windows"] == 0  # the 3 test songs are programmed
    # measured 5.4, 5.6 and 6.1 over three training seeds against 7.35 (README: the full-size run)
    assert held["velocity_mae"] < held["velocity_mae_class_mean"] - 0.5
    # dropout 0.5 fits the training songs less closely: measured 12.2 against 15.8
    assert own["played"]["velocity_mae"] < 0.85 * own["played"]["velocity_mae_class_mean"]
    assert np.isfinite(held["offset_mae"]) and {"velocity_mae_class_median", "offset_mae_zero"} <= set(held)


def test_tap2drum_writes_a_kit_from_taps(evaluated):
    t = evaluated("tapify", 4)[0]["tap2drum"]
    print("tap2drum:", t)
    assert len(t["classes_used"]) > 1 and t["classes_per_window"] > 1
    assert t["onset_accuracy"] > 0.6
