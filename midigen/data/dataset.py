"""What the train/generate/evaluate stages share: loading the data splits a model sees."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from midigen.data.store import TokenStore
from midigen.data.windows import PieceStream, split_tokens, split_view
from midigen.errors import DataError

STORE = Path("data/tokens")
SPLIT = Path("data/split.csv")


@dataclass
class SplitData:
    store: TokenStore
    split: pd.DataFrame

    def available(self, name: str, fallbacks: tuple[str, ...] = ()) -> str:
        """name if that split has pieces, else the first non-empty fallback (with a warning)."""
        counts = self.split["split"].value_counts()
        for candidate in (name, *fallbacks):
            if counts.get(candidate, 0) > 0:
                if candidate != name:
                    print(f"warning: the {name} split is empty (tiny corpus?); using the {candidate} split instead")
                return candidate
        raise DataError(f"the {name} split is empty (data/split.csv); add pieces or raise split ratios")

    def stream(self, name: str, fallbacks: tuple[str, ...] = ()) -> np.ndarray:
        return split_tokens(self.store, self.split, self.available(name, fallbacks))

    def view(self, name: str, fallbacks: tuple[str, ...] = ()) -> PieceStream:
        """Like stream(), but read from the memory-mapped store on demand (no copy)."""
        return split_view(self.store, self.split, self.available(name, fallbacks))

    def windows(self, name: str, fallbacks: tuple[str, ...] = ()) -> np.ndarray:
        """A grid representation's windows of one split: (n, seq_len) int64 ids."""
        width = self.store.representation.seq_len
        return self.stream(name, fallbacks).reshape(-1, width)

    def pieces(self, name: str, fallbacks: tuple[str, ...] = ()) -> pd.DataFrame:
        names = self.split.set_index("rel_path")["split"]
        return self.store.index[self.store.index["rel_path"].map(names).eq(self.available(name, fallbacks))]

    def fingerprint(self) -> str:
        """sha1 of the ids and split assignment the model is trained and judged on."""
        h = hashlib.sha1()
        # the file's bytes (= the little-endian ids) in 16 MB reads: never the whole store in
        # memory, and unlike reading through the memory map no page of it stays in our RSS
        with open(self.store.path / "tokens.bin", "rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                h.update(chunk)
        h.update(self.split.to_csv(index=False).encode())
        h.update(str(self.store.representation.config()).encode())
        return h.hexdigest()[:16]


def load_split_data(store: Path = STORE, split: Path = SPLIT) -> SplitData:
    if not split.exists():
        raise DataError(f"{split}: missing (run the split stage first: dvc repro split)")
    return SplitData(TokenStore(store), pd.read_csv(split))
