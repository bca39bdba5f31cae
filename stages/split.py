"""Stage split: data/tokens/index.csv -> data/split.csv (rel_path, split, copy_of) + metrics/split.json.

Copies (the same file sha1, which the index carries from ingest's manifest; with
split.dedupe_by notes also the same token ids) are grouped or dropped as split.dedupe says,
and counted in metrics/split.json. That count lives here and not in preprocess's data.json:
what counts as a copy, and what was done about it, are the split params'.
"""

import sys
from pathlib import Path

import pandas as pd

from midigen.data.split import SPLITS, split_pieces, token_hashes
from midigen.errors import DataError, run_main
from midigen.jsonio import write_json
from midigen.params import load_params

STORE = Path("data/tokens")
OUT = Path("data/split.csv")
METRICS = Path("metrics/split.json")


def main() -> None:
    p = load_params(sections=("split",))["split"]
    index_path = STORE / "index.csv"
    if not index_path.exists():
        raise DataError(f"{index_path}: missing (run the preprocess stage first: dvc repro preprocess)")
    index = pd.read_csv(index_path, keep_default_na=False, na_values=[""])
    if p["dedupe_by"] == "notes":
        if not (STORE / "tokens.bin").exists():
            raise DataError(f"{STORE / 'tokens.bin'}: missing (run the preprocess stage first: dvc repro preprocess)")
        index["tokens_sha1"] = token_hashes(STORE / "tokens.bin", index)
    result = split_pieces(
        index, p["val_ratio"], p["test_ratio"], p["seed"], p["from_metadata"], p["dedupe"], p["dedupe_by"]
    )
    result.table.to_csv(OUT, index=False)
    counts = result.table["split"].value_counts()
    sizes = {s: int(counts.get(s, 0)) for s in SPLITS}
    write_json(METRICS, {"pieces": len(result.table), **sizes, **result.duplicates.metrics()})
    print(
        f"split ({result.how}): "
        + ", ".join(f"{s} {counts.get(s, 0)}" for s in SPLITS)
        + f"; {result.duplicates.describe()}"
    )


if __name__ == "__main__":
    sys.exit(run_main(main))
