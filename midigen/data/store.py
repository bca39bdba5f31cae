"""The token store: one flat uint16 file of every piece's ids plus an index table.

Layout of a store folder:
  tokens.bin    all pieces' ids back to back (little-endian uint16), each framed by <BOS>/<EOS>
  index.csv     one row per piece: rel_path, offset, length, n_notes, duration_s, the
                representation's other info columns, then the manifest's metadata (a metadata
                column named like one of those gets a meta_ prefix: see metadata_names)
  rejected.csv  one row per input that was skipped, with the reason
  vocab.json    the representation's config and its tokens, in id order

Training memory-maps tokens.bin, so memory stays flat however large the corpus.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from midigen import representations
from midigen.errors import DataError
from midigen.table import RowWriter, free_name

if TYPE_CHECKING:
    import pandas as pd

TOKEN_DTYPE = np.dtype("<u2")


#: the index columns every store has, first; the rest follow in the order of the rows' keys
LEAD_COLUMNS = ["rel_path", "offset", "length", "n_notes", "duration_s"]
#: how many rejected rows StoreSummary keeps, for the log
FIRST_REJECTED = 10


@dataclass
class StoreSummary:
    """What write_store wrote, in a size that does not grow with the corpus."""

    pieces: int = 0
    tokens: int = 0
    notes: int = 0
    duration_s: float = 0.0
    rejected: int = 0
    first_rejected: list[dict] = field(default_factory=list)


def index_columns(keys: Iterable[str]) -> list[str]:
    """The index.csv columns for rows with these keys (rel_path, info, metadata)."""
    return LEAD_COLUMNS + [k for k in dict.fromkeys(keys) if k not in LEAD_COLUMNS]


def metadata_names(metadata: Iterable[str], info_keys: Iterable[str]) -> dict[str, str]:
    """The index column of each metadata key: the key itself, or meta_<key> where the store has
    a column of that name (offset, n_notes, duration_s, a representation's info key ...), so a
    metadata CSV with an n_notes column neither overrides the count nor breaks the sums."""
    metadata = list(dict.fromkeys(metadata))
    own = set(LEAD_COLUMNS) | set(info_keys)
    taken = own | set(metadata)
    names = {}
    for key in metadata:
        names[key] = free_name(key, taken) if key in own else key
        taken.add(names[key])
    return names


def write_store(
    out_dir: Path,
    pieces: Iterable[tuple[dict, np.ndarray | None]],
    rep: representations.Representation,
    columns: list[str] | None = None,
) -> StoreSummary:
    """Stream (index row, ids) pairs into a store; a pair whose ids are None is a rejected
    input (row: rel_path, reason). Both tables are written as the pairs arrive, so memory stays
    flat; columns (index.csv's, see index_columns) default to those of the first row."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = StoreSummary()
    index: RowWriter | None = None
    tmp = out_dir / "tokens.bin.tmp"
    try:
        with contextlib.ExitStack() as stack:
            f = stack.enter_context(open(tmp, "wb"))
            rejected = stack.enter_context(RowWriter(out_dir / "rejected.csv", ["rel_path", "reason"]))
            if columns is not None:
                index = stack.enter_context(RowWriter(out_dir / "index.csv", columns, extrasaction="raise"))
            for row, ids in pieces:
                if ids is None:
                    rejected.write(row)
                    summary.rejected += 1
                    if len(summary.first_rejected) < FIRST_REJECTED:
                        summary.first_rejected.append(row)
                    continue
                if index is None:
                    writer = RowWriter(out_dir / "index.csv", index_columns(row), extrasaction="raise")
                    index = stack.enter_context(writer)
                ids = np.ascontiguousarray(ids, dtype=TOKEN_DTYPE)
                f.write(ids.tobytes())
                length = int(ids.shape[0])
                index.write({**row, "offset": summary.tokens, "length": length})
                summary.pieces += 1
                summary.tokens += length
                summary.notes += row["n_notes"]
                summary.duration_s += row["duration_s"]
            if index is None:  # no piece: an index with the lead columns only
                stack.enter_context(RowWriter(out_dir / "index.csv", LEAD_COLUMNS))
    except BaseException:  # the stream broke off (a crashed worker, Ctrl-C): no half file left
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out_dir / "tokens.bin")
    rep.save_vocab(out_dir / "vocab.json")
    return summary


class TokenStore:
    """Read access to a store folder written by write_store."""

    def __init__(self, path: str | Path):
        import pandas as pd

        self.path = Path(path)
        for name in ("tokens.bin", "index.csv", "vocab.json"):
            if not (self.path / name).exists():
                raise DataError(f"{self.path / name}: missing (run the preprocess stage first: dvc repro preprocess)")
        vocab = json.loads((self.path / "vocab.json").read_text(encoding="utf-8"))
        self.representation = representations.from_config(vocab["representation"])
        if vocab["tokens"] != self.representation.vocab:
            raise DataError(f"{self.path / 'vocab.json'}: tokens do not match its representation config")
        self.index = pd.read_csv(self.path / "index.csv", keep_default_na=False, na_values=[""])
        size = (self.path / "tokens.bin").stat().st_size // TOKEN_DTYPE.itemsize
        self.tokens = (
            np.memmap(self.path / "tokens.bin", dtype=TOKEN_DTYPE, mode="r", shape=(size,))
            if size
            else np.zeros(0, TOKEN_DTYPE)
        )

    def __len__(self) -> int:
        return len(self.index)

    def piece(self, i: int) -> np.ndarray:
        row = self.index.iloc[i]
        return np.asarray(self.tokens[int(row["offset"]) : int(row["offset"]) + int(row["length"])])

    @property
    def rejected(self) -> pd.DataFrame:
        import pandas as pd

        return pd.read_csv(self.path / "rejected.csv")
