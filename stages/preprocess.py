"""Stage preprocess: data/raw/manifest.csv -> data/tokens/ (token store) + metrics/data.json."""

import sys
from pathlib import Path

from midigen.data.preprocess import preprocess
from midigen.errors import DataError, run_main
from midigen.jsonio import write_json
from midigen.params import load_params, resolve_time_unit
from midigen.table import one_line

OUT = Path("data/tokens")


def main() -> None:
    params = load_params(sections=("data", "preprocess"))
    manifest_path = Path("data/raw/manifest.csv")
    if not manifest_path.exists():
        raise DataError(f"{manifest_path}: missing (run the ingest stage first: dvc repro ingest)")
    # streamed: memory does not grow with the corpus
    settings = resolve_time_unit(params["preprocess"], params["data"]["source"])
    store = preprocess(manifest_path, settings, OUT, params["data"]["workers"])
    hours = store.duration_s / 3600
    summary = {
        "pieces": store.pieces,
        "rejected": store.rejected,
        "tokens": store.tokens,
        "notes": store.notes,
        "hours": round(float(hours), 3),
    }
    write_json("metrics/data.json", summary)
    print(
        f"preprocess: kept {summary['pieces']} pieces ({summary['tokens']:,} tokens, {hours:.1f} h), "
        f"rejected {summary['rejected']} (see {OUT}/rejected.csv)"
    )
    for row in store.first_rejected:
        print(f"  rejected: {one_line(row['rel_path'])}: {one_line(row['reason'])}")


if __name__ == "__main__":
    sys.exit(run_main(main))
