"""The token store: one flat uint16 file of every piece's ids plus an index table.

Layout of a store folder:
  tokens.bin    all pieces' ids back to back (little-endian uint16), each framed by <BOS>/<EOS>
  index.csv     one row per piece: rel_path, offset, length, n_notes, duration_s, ...
  rejected.csv  one row per input that was skipped, with the reason
  vocab.json    the representation's config and its tokens, in id order

Training memory-maps tokens.bin, so memory stays flat however large the corpus.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from midigen import representations
from midigen.errors import DataError
from midigen.table import write_rows

if TYPE_CHECKING:
    import pandas as pd

TOKEN_DTYPE = np.dtype("<u2")


def write_store(
    out_dir: Path,
    pieces: Iterable[tuple[dict, np.ndarray]],
    rejected: list[dict],
    rep: representations.Representation,
) -> list[dict]:
    """Stream (index row, ids) pairs into a store; return the index rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    offset = 0
    tmp = out_dir / "tokens.bin.tmp"
    with open(tmp, "wb") as f:
        for row, ids in pieces:
            ids = np.ascontiguousarray(ids, dtype=TOKEN_DTYPE)
            f.write(ids.tobytes())
            rows.append({**row, "offset": offset, "length": int(ids.shape[0])})
            offset += int(ids.shape[0])
    os.replace(tmp, out_dir / "tokens.bin")
    lead = ["rel_path", "offset", "length", "n_notes", "duration_s"]
    columns = lead + [k for k in dict.fromkeys(k for r in rows for k in r) if k not in lead]
    write_rows(out_dir / "index.csv", rows, columns)
    write_rows(out_dir / "rejected.csv", rejected, ["rel_path", "reason"])
    rep.save_vocab(out_dir / "vocab.json")
    return rows


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
