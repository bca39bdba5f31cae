"""Train/val/test assignment: stable when the collection grows, ratios respected, metadata honoured."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from midigen.data.split import assign_splits, make_split


def paths(n: int, prefix: str = "piece") -> list[str]:
    return [f"{prefix}/{i:05d}_{prefix}.mid" for i in range(n)]


def test_adding_fifty_paths_does_not_move_any_existing_path():
    old = paths(2000)
    before = dict(zip(old, assign_splits(old, 0.1, 0.1, 1234), strict=True))
    grown = old + paths(50, "new")
    rng = np.random.default_rng(0)
    grown = [grown[i] for i in rng.permutation(len(grown))]  # and in another order
    after = dict(zip(grown, assign_splits(grown, 0.1, 0.1, 1234), strict=True))
    moved = [p for p in old if before[p] != after[p]]
    assert moved == []


def test_removing_paths_does_not_move_the_others():
    old = paths(500)
    before = dict(zip(old, assign_splits(old, 0.2, 0.1, 7), strict=True))
    kept = old[::3]
    after = dict(zip(kept, assign_splits(kept, 0.2, 0.1, 7), strict=True))
    assert all(before[p] == after[p] for p in kept)


def test_adding_paths_to_a_tiny_corpus_does_not_move_its_test_piece():
    old = [f"p{i}.mid" for i in range(5)]
    before = dict(zip(old, assign_splits(old, 0.3, 0.3, 1234), strict=True))
    assert "test" in before.values()
    grown = old + [f"new{i}.mid" for i in range(50)]
    after = dict(zip(grown, assign_splits(grown, 0.3, 0.3, 1234), strict=True))
    assert {p: after[p] for p in old} == before


@pytest.mark.parametrize("val_ratio,test_ratio", [(0.1, 0.1), (0.05, 0.2), (0.0, 0.3)])
def test_ratios_are_roughly_respected_on_two_thousand_paths(val_ratio, test_ratio):
    split = assign_splits(paths(2000), val_ratio, test_ratio, 99)
    n = len(split)
    for name, ratio in (("val", val_ratio), ("test", test_ratio), ("train", 1 - val_ratio - test_ratio)):
        frac = float(np.mean(split == name))
        # 4 binomial standard deviations
        assert abs(frac - ratio) <= 4 * np.sqrt(max(ratio * (1 - ratio), 1e-12) / n) + 1e-12, (name, frac, ratio)
    assert set(split) <= {"train", "val", "test"}


def test_split_depends_on_the_seed_and_not_on_the_order():
    ps = paths(300)
    a = dict(zip(ps, assign_splits(ps, 0.1, 0.1, 1), strict=True))
    rev = list(reversed(ps))
    b = dict(zip(rev, assign_splits(rev, 0.1, 0.1, 1), strict=True))
    assert a == b
    c = dict(zip(ps, assign_splits(ps, 0.1, 0.1, 2), strict=True))
    assert a != c


def test_tiny_corpus_may_have_no_test_piece_rather_than_a_forced_one():
    # the split of a piece depends on its own hash only, even when that leaves a split empty
    names = ["a.mid", "b.mid", "c.mid"]
    alone = assign_splits(names, 0.1, 0.1, 1234)
    with_others = assign_splits(names + [f"x{i}.mid" for i in range(100)], 0.1, 0.1, 1234)[:3]
    assert list(alone) == list(with_others)


def test_from_metadata_uses_the_split_column():
    index = pd.DataFrame(
        {
            "rel_path": [f"d/{i}.mid" for i in range(6)],
            "split": ["train", "validation", "test", "Train", " test ", "validation"],
        }
    )
    table, how = make_split(index, 0.1, 0.1, 1234, from_metadata=True)
    assert table["split"].tolist() == ["train", "val", "test", "train", "test", "val"]
    assert table["rel_path"].tolist() == index["rel_path"].tolist()
    assert "metadata" in how


def test_from_metadata_false_ignores_the_split_column():
    index = pd.DataFrame({"rel_path": paths(200), "split": ["test"] * 200})
    table, how = make_split(index, 0.1, 0.1, 1234, from_metadata=False)
    assert table["split"].tolist() == assign_splits(paths(200), 0.1, 0.1, 1234).tolist()
    assert "hash" in how


@pytest.mark.parametrize("bad", [["test", "holdout", "test"], ["test", None, "test"]])
def test_pieces_without_a_usable_metadata_split_are_split_by_hash(bad):
    # files added beside a dataset (or with an unknown split name) do not discard its split
    rel = ["a.mid", "b.mid", "c.mid"]
    index = pd.DataFrame({"rel_path": rel, "split": bad})
    table, how = make_split(index, 0.1, 0.1, 1234, from_metadata=True)
    hashed = assign_splits(rel, 0.1, 0.1, 1234).tolist()
    assert table["split"].tolist() == ["test", hashed[1], "test"]
    assert "metadata" in how and "1 pieces by hash" in how


def test_a_split_column_with_no_usable_value_falls_back_to_the_hash():
    index = pd.DataFrame({"rel_path": ["a.mid", "b.mid"], "split": ["holdout", None]})
    table, how = make_split(index, 0.1, 0.1, 1234, from_metadata=True)
    assert table["split"].tolist() == assign_splits(["a.mid", "b.mid"], 0.1, 0.1, 1234).tolist()
    assert "hash" in how


def test_missing_split_column_uses_the_hash():
    index = pd.DataFrame({"rel_path": paths(50)})
    table, how = make_split(index, 0.1, 0.1, 5, from_metadata=True)
    assert table["split"].tolist() == assign_splits(paths(50), 0.1, 0.1, 5).tolist()
