"""Corpora as DVC data: an archive of MIDI files served over HTTP (loopback) is fetched with
`dvc import-url` (via `python -m midigen add-data URL`) and `dvc repro` ingests it; a folder
tracked with `dvc add` is linked from the cache, not copied, and a clone that `dvc pull`s from a
remote gets it and the same manifest; archives are extracted safely."""

from __future__ import annotations

import functools
import http.server
import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import random_melody, write_pretty_midi
from test_interruption import DVC, WATCHED, make_tiny_repo, run

from midigen.data.add import set_source
from midigen.data.ingest import extract_archive, ingest, parse_source
from midigen.errors import DataError


def add_data(root: Path, env: dict, *args: str) -> str:
    return run([sys.executable, "-m", "midigen", "add-data", *args], root, env)


def tune_bytes(tmp: Path, seed: int) -> bytes:
    return write_pretty_midi(tmp / f"t{seed}.mid", random_melody(seed, n=16)).read_bytes()


def midi_zip(tmp: Path) -> bytes:
    """A GMD-like zip: one top folder, an info.csv naming each file's split, MIDI in subfolders,
    a readme (not extracted) and a member whose name climbs out of the extraction folder."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        rows = ["midi_filename,split,style"]
        for i in range(6):
            name = f"drummer{i % 2}/session/tune_{i}.mid"
            zf.writestr(f"groove/{name}", tune_bytes(tmp, 300 + i))
            rows.append(f"{name},{'train' if i < 4 else 'test'},funk")
        zf.writestr("groove/info.csv", "\n".join(rows) + "\n")
        zf.writestr("groove/README.txt", "not music")
        zf.writestr("../escape.mid", tune_bytes(tmp, 399))
    return buf.getvalue()


@pytest.fixture
def http_folder(tmp_path):
    """A folder served by http.server on a loopback port: (folder, base URL)."""
    folder = tmp_path / "www"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# -- archives, without DVC ----------------------------------------------------------------------


def test_an_archive_is_extracted_from_its_top_folder_and_nothing_leaves_the_extraction_folder(tmp_path):
    archive = tmp_path / "gmd.zip"
    archive.write_bytes(midi_zip(tmp_path))
    assert parse_source(str(archive)).kind == "archive"
    out = tmp_path / "out"
    root, failed = extract_archive(archive, out / "x")
    assert root == out / "x" / "groove"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == sorted(
        ["info.csv"] + [f"drummer{i % 2}/session/tune_{i}.mid" for i in range(6)]
    )
    assert failed == [("../escape.mid", "its name would leave the extraction folder: not extracted")]
    assert not (out / "escape.mid").exists() and not (tmp_path / "escape.mid").exists()


def test_a_tar_gz_is_ingested_with_its_metadata_split(tmp_path, monkeypatch):
    archive = tmp_path / "lmd.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for i in range(3):
            data = tune_bytes(tmp_path, 310 + i)
            info = tarfile.TarInfo(f"lmd_full/{i}/song{i}.MID")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("lmd_full/link.mid")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    monkeypatch.chdir(tmp_path)
    manifest, failed = ingest(str(archive), Path("data/raw"), workers=1)
    assert list(manifest["rel_path"]) == [f"{i}/song{i}.MID" for i in range(3)]
    # paths relative to the project root: the same manifest in every clone
    assert list(manifest["path"]) == [f"data/raw/midi/lmd/lmd_full/{i}/song{i}.MID" for i in range(3)]
    assert len(failed) == 0
    assert not (tmp_path / "data/raw/midi/lmd/lmd_full/link.mid").exists()


def test_a_file_that_is_no_archive_is_one_error_naming_it(tmp_path):
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=r"broken\.zip.*not a readable archive"):
        ingest(str(bad), tmp_path / "raw")


def test_set_source_rewrites_only_the_data_source_line(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(
        "data:\n  # where the music comes from\n  source: music21:bach  # the default\n  max_pieces: 0\n"
        "other:\n  source: keep\n",
        encoding="utf-8",
    )
    set_source(params, "data/external/my corpus.zip")
    assert params.read_text(encoding="utf-8") == (
        'data:\n  # where the music comes from\n  source: "data/external/my corpus.zip"  # the default\n'
        "  max_pieces: 0\nother:\n  source: keep\n"
    )


# -- DVC: import-url from a loopback server, dvc add, push and pull -----------------------------


@pytest.mark.pipeline
def test_a_zip_served_over_http_is_imported_with_dvc_import_url_and_dvc_repro_ingests_it(
    tmp_path, chorale_paths, http_folder
):
    folder, base = http_folder
    (folder / "groove-midionly.zip").write_bytes(midi_zip(tmp_path))
    root = tmp_path / "repo"
    env = make_tiny_repo(root, tmp_path / "home", chorale_paths)
    shutil.rmtree(root / WATCHED)
    out = add_data(root, env, f"{base}/groove-midionly.zip")
    assert "dvc import-url" in out, out
    dvc_file = (root / "data/external/groove-midionly.zip.dvc").read_text(encoding="utf-8")
    assert f"path: {base}/groove-midionly.zip" in dvc_file, dvc_file  # where it came from, for dvc update
    assert "source: data/external/groove-midionly.zip" in (root / "params.yaml").read_text(encoding="utf-8")

    repro = run([DVC, "repro", "split"], root, env)
    assert "Running stage 'ingest'" in repro and "ingest: 6 MIDI files from archive" in repro, repro
    manifest = pd.read_csv(root / "data/raw/manifest.csv")
    assert sorted(manifest["rel_path"]) == sorted(f"drummer{i % 2}/session/tune_{i}.mid" for i in range(6))
    assert set(manifest["style"]) == {"funk"}  # info.csv at the archive's top folder was joined
    split = pd.read_csv(root / "data/split.csv").set_index("rel_path")["split"]
    assert split["drummer0/session/tune_4.mid"] == "test" and split["drummer1/session/tune_1.mid"] == "train"
    failed = pd.read_csv(root / "data/raw/failed.csv")
    assert list(failed["source"]) == ["../escape.mid"]
    assert len(pd.read_csv(root / "data/tokens/index.csv")) == 6

    again = run([DVC, "repro", "split"], root, env)
    assert "Running stage" not in again, again


@pytest.mark.pipeline
def test_a_dvc_added_corpus_is_linked_and_a_clone_pulls_it_and_ingests_the_same_manifest(tmp_path, chorale_paths):
    root = tmp_path / "repo"
    env = make_tiny_repo(root, tmp_path / "home", chorale_paths)
    out = add_data(root, env, WATCHED)
    assert f"dvc add {WATCHED}" in out and "cache.type reflink,hardlink,symlink" in out, out
    corpus = sorted((root / WATCHED).iterdir())
    one = corpus[0]
    # linked from the cache, not copied: a hard link (two names) or a symbolic link
    assert one.is_symlink() or os.stat(one).st_nlink == 2, (one, os.stat(one))
    run([DVC, "repro", "preprocess"], root, env)
    run([DVC, "remote", "add", "-d", "team", str(tmp_path / "remote")], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-q", "-m", "corpus as DVC data"], root, env)
    run([DVC, "push"], root, env)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(root), str(clone)], tmp_path, env)
    assert not (clone / WATCHED).exists()
    # the corpus, and the outputs of ingest and preprocess (a plain `dvc pull` takes every stage's)
    run([DVC, "pull", "--with-deps", f"{WATCHED}.dvc", "preprocess"], clone, env)
    assert [p.name for p in sorted((clone / WATCHED).iterdir())] == [p.name for p in corpus]
    for p in corpus:
        assert (clone / WATCHED / p.name).read_bytes() == p.read_bytes(), p.name
    assert "Running stage" not in run([DVC, "repro", "preprocess"], clone, env)
    run([DVC, "repro", "-f", "ingest"], clone, env)
    assert (clone / "data/raw/manifest.csv").read_bytes() == (root / "data/raw/manifest.csv").read_bytes()


def test_add_data_outside_a_project_is_one_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "midigen", "add-data", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "error: add-data: run it from the project root (the folder with dvc.yaml and .dvc/)"
    ]
