"""Stage split: data/tokens/index.csv -> data/split.csv (rel_path, split)."""

import sys
from pathlib import Path

import pandas as pd

from midigen.data.split import SPLITS, make_split
from midigen.errors import DataError, run_main
from midigen.params import load_params

OUT = Path("data/split.csv")


def main() -> None:
    p = load_params(sections=("split",))["split"]
    index_path = Path("data/tokens/index.csv")
    if not index_path.exists():
        raise DataError(f"{index_path}: missing (run the preprocess stage first: dvc repro preprocess)")
    index = pd.read_csv(index_path, keep_default_na=False, na_values=[""])
    table, how = make_split(index, p["val_ratio"], p["test_ratio"], p["seed"], p["from_metadata"])
    table.to_csv(OUT, index=False)
    counts = table["split"].value_counts()
    print(f"split ({how}): " + ", ".join(f"{s} {counts.get(s, 0)}" for s in SPLITS))


if __name__ == "__main__":
    sys.exit(run_main(main))
