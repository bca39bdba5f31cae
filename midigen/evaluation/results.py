"""Where the evaluate stage writes: metrics/eval.json and metrics/eval_features.csv."""

from __future__ import annotations

from pathlib import Path

from midigen.jsonio import write_json
from midigen.table import write_rows


def write_results(result: dict, distance: dict, metrics_dir: str | Path = "metrics") -> None:
    """eval.json (every number) and eval_features.csv (the set distance per feature, for `dvc plots`)."""
    metrics_dir = Path(metrics_dir)
    write_json(metrics_dir / "eval.json", result)
    write_rows(
        metrics_dir / "eval_features.csv",
        [{"feature": k, "overlap": v["overlap"], "kl": v["kl"]} for k, v in distance.items()],
        ["feature", "overlap", "kl"],
    )
