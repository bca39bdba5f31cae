"""builtin:nabiya, seed 003's one-song dataset: ingested as MIDI, trained on for a few hundred
steps, judged one step at a time (teacher forcing) and free-running, greedy next to sampled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pretty_midi
import pytest
import torch
import yaml
from conftest import PROJECT_ROOT, tiny_params

from midigen.data.builtin import NABIYA
from midigen.data.dataset import load_split_data
from midigen.data.ingest import ingest
from midigen.data.preprocess import preprocess
from midigen.data.split import make_split
from midigen.evaluation.lm_eval import compare_decoding, teacher_forced
from midigen.table import read_rows
from midigen.training.checkpoint import load_checkpoint, model_from_checkpoint
from midigen.training.loop import train_model

SAMPLING = {"temperature": 1.0, "top_k": 40, "top_p": 0.95, "seed": 7}


def test_ingest_writes_the_54_note_song_into_the_training_split(tmp_path):
    manifest, failed = ingest("builtin:nabiya", tmp_path)
    assert failed.empty
    assert manifest["rel_path"].tolist() == ["builtin/nabiya.mid"]
    assert manifest["split"].tolist() == ["train"]
    pm = pretty_midi.PrettyMIDI(str(tmp_path / "midi/builtin/nabiya.mid"))
    notes = pm.instruments[0].notes
    assert len(notes) == len(NABIYA) == 54
    assert pm.get_tempo_changes()[1].tolist() == pytest.approx([130.0], abs=1e-3)
    assert [pretty_midi.key_number_to_key_name(k.key_number) for k in pm.key_signature_changes] == ["C Major"]
    # g8 e8 e4: G5 and E5 (octave 5, as the seed writes them), an eighth is half a quarter
    assert [n.pitch for n in notes[:3]] == [79, 76, 76]
    quarter = 60 / 130
    assert [round((n.end - n.start) / quarter, 3) for n in notes[:3]] == [0.5, 0.5, 1.0]


def test_an_unknown_builtin_dataset_is_one_clear_error(tmp_path):
    from midigen.errors import DataError

    with pytest.raises(DataError, match="built-in datasets: nabiya"):
        ingest("builtin:nope", tmp_path)


@pytest.mark.parametrize("representation", ["pitch_duration", "notes_chords"])
def test_a_short_run_on_nabiya_predicts_the_next_token_and_greedy_is_reported_next_to_sampling(
    tmp_path, monkeypatch, torch_one_thread, representation
):
    monkeypatch.chdir(tmp_path)
    manifest, _ = ingest("builtin:nabiya", tmp_path / "data/raw")
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))["preprocess"]
    # the song spans G4..G5: a narrow pitch range keeps the vocabulary (and the run) small
    params.update(representation=representation, pitch_min=55, pitch_max=84)
    preprocess(manifest.to_dict("records"), params, tmp_path / "data/tokens", workers=1)
    index = pd.read_csv(tmp_path / "data/tokens/index.csv", keep_default_na=False, na_values=[""])
    split, how = make_split(index, 0.1, 0.1, 1234, True)
    assert how == "metadata split column" and split["split"].tolist() == ["train"]
    split.to_csv(tmp_path / "data/split.csv", index=False)

    data = load_split_data()
    rep = data.store.representation
    stream = data.stream("train")
    # one 55- or 110-token window per step: 200 epochs are 200 steps
    p = tiny_params(model={"emb_dim": 32, "hidden_dim": 64}, epochs=200, lr=0.02, seq_len=128, warmup_steps=10)
    train_model(rep, stream, data.stream("val", fallbacks=("train",)), p, tmp_path / "models", "nabiya")
    model = model_from_checkpoint(load_checkpoint(tmp_path / "models/best.pt"))

    test = data.stream("test", fallbacks=("val", "train"))
    _, accuracy = teacher_forced(model, test, 128, 32, torch.device("cpu"))
    assert accuracy >= 0.9, f"{representation}: one-step accuracy {accuracy:.3f} after 200 steps"

    piece = data.store.piece(0).astype(np.int64)
    decoding = compare_decoding(model, rep, [piece], 8, 120, SAMPLING, torch.device("cpu"))
    for mode in ("greedy", "sampled"):
        d = decoding[mode]
        assert set(d) == {"longest_run", "distinct_share", "free_running_accuracy", "tokens"}
        assert d["longest_run"]["mean"] >= 1 and 0 < d["distinct_share"]["mean"] <= 1
        assert 0 <= d["free_running_accuracy"]["mean"] <= 1
    # greedy ignores the sampling settings; hot sampling wanders off the song
    hot = compare_decoding(
        model, rep, [piece], 8, 120, {**SAMPLING, "seed": 8, "temperature": 5.0}, torch.device("cpu")
    )
    assert hot["greedy"] == decoding["greedy"]
    assert hot["sampled"]["free_running_accuracy"]["mean"] < decoding["greedy"]["free_running_accuracy"]["mean"]
    assert read_rows(tmp_path / "data/tokens/index.csv")[0]["split"] == "train"
