"""File names of any bytes (Linux allows all but "/" and NUL) survive ingest, manifest.csv,
index.csv and rejected.csv: a name that is not UTF-8 is kept as text with its odd bytes written
\\xNN (and opened by its exact bytes), a carriage return or newline in a name keeps its CSV row,
and a name that cannot be told apart from another file's as text is listed in failed.csv."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import folder_preprocess_params, random_melody, run_stage, stage_workdir, write_pretty_midi

from midigen.data.ingest import ingest
from midigen.data.preprocess import preprocess
from midigen.data.store import TokenStore
from midigen.table import RowWriter, iter_rows, read_rows, text_to_path

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="names of any bytes are a Linux file system's")

#: name on disk (bytes) -> its rel_path as text in the tables; each holds a distinct melody
GOOD = {
    b"plain.mid": "plain.mid",
    b"latin1 caf\xe9.mid": "latin1 caf\\xe9.mid",
    b"not utf8 \xff\xfe.mid": "not utf8 \\xff\\xfe.mid",
    b"dir \xff/inside.mid": "dir \\xff/inside.mid",
    b"carriage\rreturn.mid": "carriage\rreturn.mid",
    b"new\nline.mid": "new\nline.mid",
    b"both\r\n.mid": "both\r\n.mid",
    b'quote " and, comma.mid': 'quote " and, comma.mid',
}
#: a broken file whose name has a carriage return: rejected, under its own name
BROKEN = (b"broken\r\xff.mid", "broken\r\\xff.mid")
#: a name that is not UTF-8 whose text form is the real name of another file
CLASH = (b"clash\xff.mid", b"clash\\xff.mid", "clash\\xff.mid")


def make_folder(root: Path) -> Path:
    """The folder, built with byte names (os functions take bytes paths)."""
    broot = os.fsencode(root)
    os.makedirs(broot)
    for i, name in enumerate([*GOOD, CLASH[0], CLASH[1]]):
        tmp = write_pretty_midi(root.parent / f"melody{i}.mid", random_melody(100 + i, n=20))
        path = broot + b"/" + name
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(tmp.read_bytes())
        tmp.unlink()
    with open(broot + b"/" + BROKEN[0], "wb") as f:
        f.write(b"MThd" + np.random.default_rng(0).bytes(500))
    return root


def expected_names() -> set[str]:
    """The rel_paths the manifest lists: every file but the clashing one."""
    return {*GOOD.values(), BROKEN[1], CLASH[2]}


def test_files_named_with_any_bytes_go_through_the_ingest_and_preprocess_stages(tmp_path):
    src = make_folder(tmp_path / "src")
    work = stage_workdir(tmp_path, src, workers=2)

    def stage(name: str) -> subprocess.CompletedProcess:
        proc = run_stage(work, name, 120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    ingested = stage("ingest")
    manifest = read_rows(work / "data/raw/manifest.csv")
    assert {r["rel_path"] for r in manifest} == expected_names()
    assert len(manifest) == len(expected_names())  # no row split in two by a "\r" or "\n"
    assert sorted(pd.read_csv(work / "data/raw/manifest.csv")["rel_path"]) == sorted(expected_names())
    for r in manifest:  # each path opens exactly its file
        assert os.path.getsize(text_to_path(r["path"])) == int(r["size"])
    failed = read_rows(work / "data/raw/failed.csv")
    assert [r["source"] for r in failed] == [CLASH[2]], failed
    assert "not UTF-8" in failed[0]["reason"]
    assert "failed: clash\\xff.mid: its name is not UTF-8" in ingested.stdout, ingested.stdout

    pre = stage("preprocess")
    store = TokenStore(work / "data/tokens")
    assert sorted(store.index["rel_path"]) == sorted([*GOOD.values(), CLASH[2]])
    assert sorted(pd.read_csv(work / "data/tokens/index.csv")["rel_path"]) == sorted(store.index["rel_path"])
    rejected = read_rows(work / "data/tokens/rejected.csv")
    assert [r["rel_path"] for r in rejected] == [BROKEN[1]]
    assert rejected[0]["reason"]
    # the log names it on one line, its carriage return escaped
    lines = [ln for ln in pre.stdout.splitlines() if ln.startswith("  rejected: ")]
    assert len(lines) == 1 and lines[0].startswith("  rejected: broken\\r\\xff.mid: "), pre.stdout


def test_a_carriage_return_in_a_name_keeps_its_manifest_row_through_the_stages(tmp_path):
    src = tmp_path / "src"
    names = ["a\rb.mid", "c\nd.mid", "plain.mid"]
    for i, name in enumerate(names):
        write_pretty_midi(src / name, random_melody(i, n=20))
    work = stage_workdir(tmp_path, src, workers=1)
    for stage in ("ingest", "preprocess"):
        proc = run_stage(work, stage, 120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [r["rel_path"] for r in read_rows(work / "data/raw/manifest.csv")] == sorted(names)
    assert sorted(TokenStore(work / "data/tokens").index["rel_path"]) == sorted(names)


def test_a_file_that_is_not_utf8_by_name_is_read_by_its_exact_bytes(tmp_path):
    src = make_folder(tmp_path / "src")
    manifest, failed = ingest(str(src), tmp_path / "raw", workers=1)
    by_name = {r["rel_path"]: r for r in manifest.to_dict("records")}
    ff = by_name["not utf8 \\xff\\xfe.mid"]
    assert os.path.samefile(text_to_path(ff["path"]), os.fsencode(src) + b"/not utf8 \xff\xfe.mid")
    assert ff["path"].startswith("file://") and by_name["plain.mid"]["path"] == str(src / "plain.mid")
    # the same bytes under a plain name give the same tokens
    twin = src / "twin.mid"
    with open(os.fsencode(src) + b"/not utf8 \xff\xfe.mid", "rb") as f:
        twin.write_bytes(f.read())
    manifest, _ = ingest(str(src), tmp_path / "raw", workers=1)
    params = folder_preprocess_params()
    summary = preprocess(manifest.to_dict("records"), params, tmp_path / "tokens", workers=1)
    store = TokenStore(tmp_path / "tokens")
    row = {r: i for i, r in enumerate(store.index["rel_path"])}
    assert summary.pieces == len(GOOD) + 2  # and twin.mid, and the file whose real name is CLASH[1]
    assert np.array_equal(store.piece(row["not utf8 \\xff\\xfe.mid"]), store.piece(row["twin.mid"]))


def test_a_field_with_a_carriage_return_keeps_its_row(tmp_path):
    rows = [{"a": "one\rtwo", "b": 1}, {"a": "x\ny", "b": 2}, {"a": "cr lf\r\n", "b": 3}, {"a": "plain", "b": 4}]
    with RowWriter(tmp_path / "t.csv", ["a", "b"]) as w:
        for r in rows:
            w.write(r)
    assert [r["a"] for r in iter_rows(tmp_path / "t.csv")] == [r["a"] for r in rows]
    assert pd.read_csv(tmp_path / "t.csv")["b"].tolist() == [1, 2, 3, 4]
    # a plain row is written as before, unquoted
    assert (tmp_path / "t.csv").read_text(encoding="utf-8").endswith("\nplain,4\n")


def test_text_that_is_not_utf8_is_written_escaped_instead_of_failing_the_table(tmp_path):
    with RowWriter(tmp_path / "t.csv", ["rel_path", "reason"]) as w:
        w.write({"rel_path": "ok.mid", "reason": "cannot read: /src/bad \udcff.mid"})
    assert read_rows(tmp_path / "t.csv") == [{"rel_path": "ok.mid", "reason": "cannot read: /src/bad \\udcff.mid"}]
