"""Assign pieces to train/val/test so that a piece never moves when others come or go.

Each piece's split follows from a hash of (seed, relative path) alone, so adding files to a
collection cannot leak a test piece into training.

Copies are the exception (split_pieces): pieces with the same content (the file's sha1 from
the manifest, optionally the same token ids after preprocessing) follow the first of them by
path into its split, or are dropped but one, so a test piece never has a copy in training. A
copy added later joins its group's split; only a copy whose path sorts before every other
member of its group moves the group (all together, never apart).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")
_METADATA_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}


def unit_hash(seed: int, key: str) -> float:
    """A number in [0, 1) that depends only on seed and key."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(rel_paths: list[str], val_ratio: float, test_ratio: float, seed: int) -> np.ndarray:
    """Split name per path, from the path's hash alone.

    A tiny corpus may end up with an empty val or test split; the stages that need one fall back
    to another split with a warning rather than move pieces around (which would leak test pieces
    into training as soon as the corpus grows).
    """
    u = np.array([unit_hash(seed, p) for p in rel_paths])
    return np.where(u < test_ratio, "test", np.where(u < test_ratio + val_ratio, "val", "train")).astype(object)


def metadata_splits(index: pd.DataFrame) -> np.ndarray:
    """Per piece, the split its metadata split column names (train/val/test), or None."""
    if "split" not in index.columns:
        return np.full(len(index), None, dtype=object)
    mapped = index["split"].astype(str).str.strip().str.lower().map(_METADATA_NAMES)
    return np.where(mapped.notna().to_numpy(), mapped.to_numpy(dtype=object), None)


def make_split(
    index: pd.DataFrame, val_ratio: float, test_ratio: float, seed: int, from_metadata: bool
) -> tuple[pd.DataFrame, str]:
    """(table of rel_path -> split, a word on where the split came from), each piece on its own
    (split_pieces then puts copies together).

    With a metadata split column, pieces it names keep that split and pieces without a usable
    value there (files added beside a dataset) are split by the hash of their path."""
    hashed = assign_splits(index["rel_path"].tolist(), val_ratio, test_ratio, seed)
    how = f"hash of path (seed {seed})"
    if from_metadata:
        named = metadata_splits(index)
        known = np.array([s is not None for s in named], dtype=bool)
        if known.any():
            split = np.where(known, named, hashed)
            how = "metadata split column" + (
                f" ({int((~known).sum())} pieces by hash of path)" if not known.all() else ""
            )
            return pd.DataFrame({"rel_path": index["rel_path"], "split": split}), how
    return pd.DataFrame({"rel_path": index["rel_path"], "split": hashed}), how


# -- duplicates -------------------------------------------------------------------------------

DEDUPE_MODES = ("group", "drop", "off")
#: split.dedupe_by -> the index columns whose equal values make pieces copies of each other
DEDUPE_KEYS = {"file": ("sha1",), "notes": ("sha1", "tokens_sha1")}
#: the token store's layout (midigen.data.store.TOKEN_DTYPE), not imported from there: the store
#: module pulls in every representation, and the split stage needs none
_TOKEN_DTYPE = np.dtype("<u2")


@dataclass
class Duplicates:
    """What split_pieces found and did about pieces with the same content."""

    mode: str
    #: the index columns compared (those of DEDUPE_KEYS that the index has)
    keys: tuple[str, ...]
    #: pieces whose content an earlier piece (by path) already has
    copies: int = 0
    #: contents that more than one piece holds
    groups: int = 0
    #: copies whose own split differs from their group's: the leaks dedupe prevents
    crossing: int = 0
    #: copies left out of the split table (mode drop)
    dropped: int = 0

    def describe(self) -> str:
        """A few words for the split stage's summary line."""
        if not self.keys:
            return "duplicates not checked (the index has no sha1 column)"
        by = " or ".join({"sha1": "file sha1", "tokens_sha1": "token ids"}[k] for k in self.keys)
        if not self.copies:
            return f"no duplicates (same {by})"
        what = f"{self.copies} duplicates of {self.groups} pieces (same {by})"
        if self.mode == "drop":
            return f"{what} dropped, one copy kept"
        if self.mode == "group":
            return f"{what}, each in its first copy's split ({self.crossing} would have crossed splits)"
        return f"{what}, not grouped (split.dedupe off): {self.crossing} in another split than their first copy"

    def metrics(self) -> dict[str, int]:
        return {
            "duplicates": self.copies,
            "duplicate_groups": self.groups,
            "duplicates_crossing": self.crossing,
            "duplicates_dropped": self.dropped,
        }


@dataclass
class Split:
    """split_pieces' answer: the table written to data/split.csv, and how it was made."""

    #: rel_path, split, copy_of (the first piece by path with the same content; "" for that piece)
    table: pd.DataFrame
    how: str
    duplicates: Duplicates


def token_hashes(tokens_path: str | Path, index: pd.DataFrame) -> list[str]:
    """sha1 of each index row's token ids in a store's tokens.bin (offset and length are in
    ids), read from a memory map: the same notes give the same hash however the file was saved."""
    path = Path(tokens_path)
    size = path.stat().st_size // _TOKEN_DTYPE.itemsize
    tokens = np.memmap(path, dtype=_TOKEN_DTYPE, mode="r", shape=(size,)) if size else np.zeros(0, _TOKEN_DTYPE)
    return [
        hashlib.sha1(np.ascontiguousarray(tokens[int(o) : int(o) + int(n)]).tobytes()).hexdigest()
        for o, n in zip(index["offset"], index["length"], strict=True)
    ]


def content_groups(index: pd.DataFrame, keys: tuple[str, ...], prefer: np.ndarray | None = None) -> np.ndarray:
    """Per piece, the row of its group's first piece: pieces that share a non-empty value in any
    of the key columns are one group (transitively). The first piece is the one with the
    smallest rel_path among those `prefer` marks (e.g. with a metadata split), else overall."""
    n = len(index)
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for key in keys:
        for rows in index.groupby(key, sort=False).indices.values():  # empty values (NaN) are left out
            first = root(rows[0])
            for r in rows[1:]:
                parent[root(r)] = first
    rel = index["rel_path"].astype(str).to_numpy()
    rank = np.lexsort((rel, ~prefer)) if prefer is not None else np.argsort(rel, kind="stable")
    anchor: dict[int, int] = {}
    for i in rank:
        anchor.setdefault(root(int(i)), int(i))
    return np.array([anchor[root(i)] for i in range(n)], dtype=np.int64)


def split_pieces(
    index: pd.DataFrame,
    val_ratio: float,
    test_ratio: float,
    seed: int,
    from_metadata: bool,
    dedupe: str = "group",
    dedupe_by: str = "file",
) -> Split:
    """make_split, then copies together: with dedupe "group" every piece takes the split of the
    first piece with its content (by path, a piece with a metadata split first), with "drop"
    only that first piece is kept, with "off" copies are only counted.

    dedupe_by "file" compares the index's sha1 column (ingest's hash of the file); "notes" also
    a tokens_sha1 column (token_hashes), which the caller adds."""
    if dedupe not in DEDUPE_MODES:
        raise ValueError(f"dedupe must be one of {DEDUPE_MODES}, got {dedupe!r}")
    table, how = make_split(index, val_ratio, test_ratio, seed, from_metadata)
    keys = tuple(k for k in DEDUPE_KEYS[dedupe_by] if k in index.columns)
    prefer = np.array([s is not None for s in metadata_splits(index)], dtype=bool) if from_metadata else None
    anchor = content_groups(index, keys, prefer) if keys else np.arange(len(index))
    own = table["split"].to_numpy(dtype=object)
    is_copy = anchor != np.arange(len(index))
    rel = table["rel_path"].to_numpy(dtype=object)
    dups = Duplicates(
        mode=dedupe,
        keys=keys,
        copies=int(is_copy.sum()),
        groups=len(np.unique(anchor[is_copy])),
        crossing=int((is_copy & (own != own[anchor])).sum()),
    )
    table = pd.DataFrame({"rel_path": rel, "split": own, "copy_of": np.where(is_copy, rel[anchor], "")})
    if dedupe == "group":
        table["split"] = own[anchor]
    elif dedupe == "drop":
        table = table[~is_copy].reset_index(drop=True)
        dups.dropped = dups.copies
    return Split(table, how, dups)
