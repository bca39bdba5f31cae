"""End to end: `dvc exp run -S model.kind=transformer` (on voices tokens, so evaluate also
harmonizes the test sopranos) runs every stage in a throwaway repo, and `dvc exp show` lists
the experiment beside the LSTM baseline."""

from __future__ import annotations

import json

import pytest
from test_interruption import DVC, make_tiny_repo, run

pytestmark = pytest.mark.pipeline

TINY = {"layers": 1, "heads": 2, "d_model": 16, "d_ff": 32, "context": 64}


def test_dvc_exp_run_with_the_transformer_runs_end_to_end(tmp_path, chorale_paths):
    root = tmp_path / "repo"
    env = make_tiny_repo(
        root,
        tmp_path / "home",
        chorale_paths,
        model=TINY,
        train={"epochs": 1},
        evaluate={"decode_pieces": 2, "decode_steps": 30},
    )
    cmd = [DVC, "exp", "run", "-n", "tfm", "-S", "model.kind=transformer", "-S", "preprocess.representation=voices"]
    out = run(cmd, root, env, timeout=600)
    for stage in ("ingest", "preprocess", "split", "train", "generate", "evaluate"):
        assert f"Running stage '{stage}'" in out, out
    assert "harmonizing" in out, out  # evaluate's summary line

    ev = json.loads((root / "metrics/eval.json").read_text(encoding="utf-8"))
    h = ev["harmonization"]
    assert h["pieces"] >= 1 and h["soprano_kept"]
    assert 0 <= h["voice_count_tv"] <= 1 and h["bach"]["frames"] > 0
    assert len(list((root / "outputs/generated").glob("*.mid"))) == 2

    shown = json.loads(run([DVC, "exp", "show", "--json"], root, env))
    kinds = {}
    for commit in shown:
        rows = [commit, *(e for exp in commit.get("experiments") or [] for e in exp.get("revs", []))]
        for row in rows:
            params = ((row.get("data") or {}).get("params") or {}).get("params.yaml", {}).get("data", {})
            kinds[row.get("name") or row["rev"]] = params.get("model", {}).get("kind")
    assert kinds.get("tfm") == "transformer", kinds
    assert "lstm" in kinds.values(), kinds  # the baseline it was run from
