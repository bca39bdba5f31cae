"""Stage ingest: data.source -> data/raw/ (MIDI files or a manifest of a folder's files)."""

import shutil
import sys
from pathlib import Path

from midigen.data.ingest import ingest, parse_source
from midigen.errors import run_main
from midigen.params import load_params
from midigen.table import one_line, write_frame

OUT = Path("data/raw")


def main() -> None:
    p = load_params(sections=("data",))["data"]
    src = parse_source(p["source"])
    watch = Path(p["watch"]).resolve()
    if src.kind == "folder" and not Path(src.name).is_relative_to(watch):
        print(
            f"warning: DVC watches data.watch = {p['watch']!r}, not {src.name}; "
            f"set data.watch to that folder too, or DVC will not notice when its files change",
            file=sys.stderr,
        )
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    manifest, failed = ingest(p["source"], OUT, p["max_pieces"], p["workers"])
    # written like every table (midigen.table): a name with a carriage return keeps its row
    write_frame(OUT / "manifest.csv", manifest)
    write_frame(OUT / "failed.csv", failed)
    skipped = failed["reason"].str.startswith("skipped:")
    print(
        f"ingest: {len(manifest)} MIDI files from {src.describe()}, {int((~skipped).sum())} failed, "
        f"{int(skipped.sum())} skipped (see {OUT}/failed.csv)"
    )
    for row in failed[~skipped].head(10).itertuples():
        print(f"  failed: {one_line(row.source)}: {one_line(row.reason)}")


if __name__ == "__main__":
    sys.exit(run_main(main))
