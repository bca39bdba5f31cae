"""Copies of a piece never straddle train and test: real chorales plus byte-identical copies under
other names go through the ingest, preprocess and split stage scripts; copies land in one split
(split.dedupe group), or all but one are dropped (drop), and the count is reported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mido
import pandas as pd
import pytest
import yaml
from conftest import FOLDER_REPRESENTATION, PROJECT_ROOT, run_stage

from midigen.data.split import assign_splits, split_pieces

#: copies of each chorale under other names: with 30% test and 20% val, seven pieces hashed by
#: their own paths all landing in one split is unlikely; the off test checks they do not
COPIES = 6


def run_ok(name: str, root: Path) -> str:
    proc = run_stage(root, name, 300)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def write_params(root: Path, **split) -> None:
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["data"].update(source="corpus", watch="corpus", workers=1)
    params["preprocess"]["representation"] = FOLDER_REPRESENTATION
    params["split"].update({"val_ratio": 0.2, "test_ratio": 0.3, **split})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def resaved(src: Path, dst: Path) -> None:
    """The same notes in other bytes: the file saved again with a text event added."""
    mid = mido.MidiFile(src)
    mid.tracks[0].insert(0, mido.MetaMessage("text", text="re-saved by another program", time=0))
    dst.parent.mkdir(parents=True, exist_ok=True)
    mid.save(dst)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, chorale_paths) -> Path:
    """A work folder after ingest and preprocess of the chorales, byte-identical copies of each
    under other names (in other folders too), and one re-saved copy of the first chorale."""
    root = tmp_path_factory.mktemp("dedupe")
    corpus = root / "corpus"
    for src in chorale_paths:
        (corpus / "chorales").mkdir(parents=True, exist_ok=True)
        shutil.copy(src, corpus / "chorales" / src.name)
        for i in range(COPIES):
            copy = corpus / f"copies_{i}" / f"{src.stem}_copy{i}.mid"
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, copy)
    resaved(chorale_paths[0], corpus / "resaved" / "other_name.mid")
    write_params(root)
    run_ok("ingest", root)
    run_ok("preprocess", root)
    return root


def split_in(prepared: Path, tmp_path: Path, **split) -> tuple[Path, str]:
    """Run the split stage on a copy of the prepared folder with these split params."""
    root = tmp_path / "work"
    shutil.copytree(prepared, root, symlinks=True)
    write_params(root, **split)
    return root, run_ok("split", root)


def by_sha1(root: Path) -> pd.DataFrame:
    index = pd.read_csv(root / "data/tokens/index.csv")
    split = pd.read_csv(root / "data/split.csv", keep_default_na=False)
    return split.merge(index[["rel_path", "sha1"]], on="rel_path", how="left")


def metrics(root: Path) -> dict:
    return json.loads((root / "metrics/split.json").read_text(encoding="utf-8"))


def test_the_copies_would_cross_splits_if_nothing_grouped_them(prepared, tmp_path):
    root, out = split_in(prepared, tmp_path, dedupe="off")
    table = by_sha1(root)
    spread = table.groupby("sha1")["split"].nunique()
    assert (spread > 1).any(), "the test corpus must give copies a chance to leak"
    m = metrics(root)
    assert m["duplicates"] == 5 * COPIES and m["duplicates_crossing"] > 0
    assert f"{5 * COPIES} duplicates of 5 pieces" in out and "split.dedupe off" in out


def test_byte_identical_copies_always_land_in_one_split_and_are_counted(prepared, tmp_path):
    root, out = split_in(prepared, tmp_path)  # the default: dedupe group, by file
    table = by_sha1(root)
    assert len(table) == 5 * (COPIES + 1) + 1
    assert (table.groupby("sha1")["split"].nunique() == 1).all(), table.sort_values("sha1").to_string()
    # each copy follows the first piece with its content by path, and names it
    originals = table[table["rel_path"].str.startswith("chorales/")]
    assert (originals["copy_of"] == "").all()
    copies = table[table["rel_path"].str.startswith("copies_")]
    assert copies["copy_of"].str.startswith("chorales/").all()
    first = dict(zip(originals["rel_path"], assign_splits(list(originals["rel_path"]), 0.2, 0.3, 1234), strict=True))
    assert (copies["split"] == copies["copy_of"].map(first)).all()
    m = metrics(root)
    assert m["duplicates"] == 5 * COPIES and m["duplicate_groups"] == 5 and m["duplicates_dropped"] == 0
    assert m["duplicates_crossing"] > 0 and m["pieces"] == len(table)
    assert m["train"] + m["val"] + m["test"] == len(table)
    assert f"{5 * COPIES} duplicates of 5 pieces (same file sha1)" in out
    assert f"({m['duplicates_crossing']} would have crossed splits)" in out


def test_dedupe_drop_keeps_the_first_copy_of_each_piece(prepared, tmp_path, chorale_paths):
    root, out = split_in(prepared, tmp_path, dedupe="drop")
    table = by_sha1(root)
    assert table["sha1"].is_unique
    # the first by path of each content; the re-saved chorale has other bytes, so it is no copy by file
    kept = {f"chorales/{p.name}" for p in chorale_paths} | {"resaved/other_name.mid"}
    assert set(table["rel_path"]) == kept
    assert (table["copy_of"] == "").all()
    m = metrics(root)
    assert m["duplicates_dropped"] == 5 * COPIES and m["pieces"] == 6
    assert f"{5 * COPIES} duplicates of 5 pieces (same file sha1) dropped, one copy kept" in out


def test_dedupe_by_notes_also_groups_a_copy_saved_with_other_bytes(prepared, tmp_path):
    root, out = split_in(prepared, tmp_path, dedupe_by="notes")
    table = by_sha1(root).set_index("rel_path")
    resaved_row = table.loc["resaved/other_name.mid"]
    first = table.loc[f"chorales/{Path(resaved_row['copy_of']).name}"]
    assert resaved_row["copy_of"].startswith("chorales/") and resaved_row["sha1"] != first["sha1"]
    assert resaved_row["split"] == first["split"]
    assert metrics(root)["duplicates"] == 5 * COPIES + 1
    assert "same file sha1 or token ids" in out


# -- split_pieces on its own ------------------------------------------------------------------


def index_of(rows: list[tuple[str, str]], **extra) -> pd.DataFrame:
    return pd.DataFrame({"rel_path": [r for r, _ in rows], "sha1": [h for _, h in rows], **extra})


def test_a_copy_added_later_joins_its_pieces_split_and_moves_nothing_else():
    base = [(f"p/{i:03d}.mid", f"h{i}") for i in range(300)]
    before = split_pieces(index_of(base), 0.1, 0.1, 1234, False).table.set_index("rel_path")["split"]
    grown = base + [(f"zz_copies/{i:03d}.mid", f"h{i}") for i in range(0, 300, 7)]
    after = split_pieces(index_of(grown), 0.1, 0.1, 1234, False).table.set_index("rel_path")["split"]
    assert (after[before.index] == before).all()
    for i in range(0, 300, 7):
        assert after[f"zz_copies/{i:03d}.mid"] == before[f"p/{i:03d}.mid"]


def test_a_group_takes_the_metadata_split_of_its_member_that_has_one():
    index = index_of([("a_copy.mid", "h"), ("dataset/piece.mid", "h")], split=[None, "test"])
    result = split_pieces(index, 0.1, 0.1, 1234, from_metadata=True)
    assert result.table["split"].tolist() == ["test", "test"]
    assert result.table["copy_of"].tolist() == ["dataset/piece.mid", ""]


def test_pieces_without_a_sha1_are_never_grouped_together():
    index = index_of([("a.mid", None), ("b.mid", None), ("c.mid", "x"), ("d.mid", "x")])
    result = split_pieces(index, 0.1, 0.1, 1234, False)
    assert result.duplicates.copies == 1 and result.table["copy_of"].tolist() == ["", "", "", "c.mid"]
