"""End to end: `dvc repro evaluate` with each score-time representation, in one throwaway repo
on nine files (five chorales, four melodies): MIDI written in musical time at generate.tempo,
teacher-forced accuracy and greedy vs sampled decoding in metrics/eval.json. Switching
preprocess.representation reruns preprocessing and everything after it, not the ingest."""

from __future__ import annotations

import json
from pathlib import Path

import pretty_midi
import pytest
import yaml
from test_interruption import DVC, make_tiny_repo, run

pytestmark = pytest.mark.pipeline

STAGES = ("ingest", "preprocess", "split", "train", "generate", "evaluate")


def check_outputs(root: Path, representation: str) -> None:
    vocab = json.loads((root / "data/tokens/vocab.json").read_text(encoding="utf-8"))
    assert vocab["representation"]["name"] == representation
    if representation == "notes_chords":
        assert (root / "data/tokens/chord_counts.csv").is_file()
        assert vocab["representation"]["chords"]

    mids = sorted((root / "outputs/generated").glob("*.mid"))
    assert len(mids) == 2
    played = 0
    for mid in mids:
        pm = pretty_midi.PrettyMIDI(str(mid))
        assert pm.get_tempo_changes()[1].tolist() == pytest.approx([90.0], abs=1e-3)
        assert [k.key_number for k in pm.key_signature_changes] == [pretty_midi.key_name_to_key_number("G")]
        with_notes = [i for i in pm.instruments if i.notes]
        assert {i.program for i in with_notes} <= {40}
        played += len(with_notes)
    assert played, f"{representation}: no generated piece has notes"

    ev = json.loads((root / "metrics/eval.json").read_text(encoding="utf-8"))
    assert 0 <= ev["test_accuracy"] <= 1
    for mode in ("greedy", "sampled"):
        d = ev["decoding"][mode]
        assert 0 <= d["longest_run"]["mean"] <= d["tokens"]["mean"] <= 30
        assert 0 <= d["distinct_share"]["mean"] <= 1
    for group in ("generated", "test"):
        assert {"longest_run", "distinct_share"} <= set(ev[group])


def test_dvc_repro_runs_end_to_end_with_each_new_representation(tmp_path, chorale_paths):
    root = tmp_path / "repo"
    env = make_tiny_repo(
        root,
        tmp_path / "home",
        chorale_paths,
        train={"epochs": 1},
        preprocess={"representation": "notes_chords", "chord_min_count": 2},
        generate={"tempo": 90.0, "key": "G", "program": 40},
        evaluate={"decode_pieces": 2, "decode_steps": 30},
    )
    out = run([DVC, "repro", "evaluate"], root, env)
    for stage in STAGES:
        assert f"Running stage '{stage}'" in out, out
    check_outputs(root, "notes_chords")

    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    params["preprocess"]["representation"] = "pitch_duration"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    out = run([DVC, "repro", "evaluate"], root, env)
    assert "Running stage 'ingest'" not in out, out
    for stage in STAGES[1:]:
        assert f"Running stage '{stage}'" in out, out
    check_outputs(root, "pitch_duration")
