"""Assign pieces to train/val/test so that a piece never moves when others come or go.

Each piece's split follows from a hash of (seed, relative path) alone, so adding files to a
collection cannot leak a test piece into training.
"""

from __future__ import annotations

import hashlib

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


def make_split(
    index: pd.DataFrame, val_ratio: float, test_ratio: float, seed: int, from_metadata: bool
) -> tuple[pd.DataFrame, str]:
    """(table of rel_path -> split, a word on where the split came from).

    With a metadata split column, pieces it names keep that split and pieces without a usable
    value there (files added beside a dataset) are split by the hash of their path."""
    hashed = assign_splits(index["rel_path"].tolist(), val_ratio, test_ratio, seed)
    how = f"hash of path (seed {seed})"
    if from_metadata and "split" in index.columns:
        mapped = index["split"].astype(str).str.strip().str.lower().map(_METADATA_NAMES)
        known = mapped.notna().to_numpy()
        if known.any():
            split = np.where(known, mapped.to_numpy(dtype=object), hashed)
            how = "metadata split column" + (
                f" ({int((~known).sum())} pieces by hash of path)" if not known.all() else ""
            )
            return pd.DataFrame({"rel_path": index["rel_path"], "split": split}), how
    return pd.DataFrame({"rel_path": index["rel_path"], "split": hashed}), how
