"""ingest() of a folder: what gets listed, in which order, and which metadata is joined."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import random_melody, write_pretty_midi

from midigen.data.ingest import ingest
from midigen.errors import DataError

# name on disk -> seed of its melody; mixed case suffixes, nesting and non-ASCII names
FILES = {
    "b/Zeta.MID": 1,
    "a/deep/er/one.midi": 2,
    "a/Two.MIDI": 3,
    "Ünïcødé ♪ Fuga.mid": 4,
    "日本/曲.Mid": 5,
    "top.mid": 6,
}
IGNORED = ["notes.txt", "a/song.mid.bak", "b/cover.jpg", "midi"]


def make_folder(root: Path, order=None) -> Path:
    names = list(FILES) if order is None else order
    for name in names:
        write_pretty_midi(root / name, random_melody(FILES[name], n=6))
    for name in IGNORED:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"not midi")
    return root


def rows(manifest) -> list[dict]:
    return manifest.to_dict("records") if hasattr(manifest, "to_dict") else list(manifest)


def test_folder_ingest_finds_midi_files_recursively_in_any_case(tmp_path):
    root = make_folder(tmp_path / "src")
    manifest, failed = ingest(str(root), tmp_path / "raw", workers=1)
    assert len(failed) == 0
    assert sorted(r["rel_path"] for r in rows(manifest)) == sorted(FILES)


def test_folder_manifest_is_sorted_and_identical_whatever_the_creation_order(tmp_path):
    a = make_folder(tmp_path / "one")
    b = make_folder(tmp_path / "two", order=list(reversed(FILES)))
    ma, _ = ingest(str(a), tmp_path / "raw1", workers=1)
    mb, _ = ingest(str(b), tmp_path / "raw2", workers=1)
    rel_a = [r["rel_path"] for r in rows(ma)]
    assert rel_a == sorted(FILES)
    assert rel_a == [r["rel_path"] for r in rows(mb)]
    assert [r["sha1"] for r in rows(ma)] == [r["sha1"] for r in rows(mb)]
    again, _ = ingest(str(a), tmp_path / "raw3", workers=1)
    assert rows(again) == rows(ma)


def test_folder_manifest_lists_files_in_place_with_size_and_sha1(tmp_path):
    root = make_folder(tmp_path / "src")
    manifest, _ = ingest(str(root), tmp_path / "raw", workers=1)
    for r in rows(manifest):
        on_disk = root / r["rel_path"]
        assert Path(r["path"]).resolve() == on_disk.resolve()
        assert int(r["size"]) == on_disk.stat().st_size
        assert r["sha1"] == hashlib.sha1(on_disk.read_bytes()).hexdigest()
    assert not (tmp_path / "raw" / "midi").exists() or not any((tmp_path / "raw" / "midi").iterdir())


def test_changing_a_file_changes_its_manifest_hash_only(tmp_path):
    root = make_folder(tmp_path / "src")
    before = {r["rel_path"]: r["sha1"] for r in rows(ingest(str(root), tmp_path / "r1", workers=1)[0])}
    write_pretty_midi(root / "top.mid", random_melody(99, n=6))
    after = {r["rel_path"]: r["sha1"] for r in rows(ingest(str(root), tmp_path / "r2", workers=1)[0])}
    assert [k for k in before if before[k] != after[k]] == ["top.mid"]


def test_max_pieces_keeps_the_first_files_in_manifest_order(tmp_path):
    root = make_folder(tmp_path / "src")
    manifest, _ = ingest(str(root), tmp_path / "raw", max_pieces=2, workers=1)
    assert [r["rel_path"] for r in rows(manifest)] == sorted(FILES)[:2]


def test_gmd_like_info_csv_is_joined_onto_the_manifest(tmp_path):
    root = tmp_path / "groove"
    names = [
        "drummer1/session1/1_funk_80_beat_4-4.mid",
        "drummer1/session1/2_jazz_120_fill_4-4.mid",
        "drummer2/eval_session/3_rock_100_beat_4-4.mid",
        "drummer2/unlisted.mid",
    ]
    for i, name in enumerate(names):
        write_pretty_midi(root / name, random_melody(i, n=4))
    info = pd.DataFrame(
        {
            "drummer": ["drummer1", "drummer1", "drummer2"],
            "session": ["drummer1/session1", "drummer1/session1", "drummer2/eval_session"],
            "id": ["drummer1/session1/1", "drummer1/session1/2", "drummer2/eval_session/3"],
            "style": ["funk/groove1", "jazz", "rock"],
            "bpm": [80, 120, 100],
            "beat_type": ["beat", "fill", "beat"],
            "time_signature": ["4-4", "4-4", "4-4"],
            # GMD lists paths relative to the dataset root; one written with Windows separators
            "midi_filename": [names[0], names[1].replace("/", "\\"), names[2]],
            "audio_filename": ["a.wav", "b.wav", "c.wav"],
            "duration": [1.0, 2.0, 3.0],
            "split": ["train", "validation", "test"],
        }
    )
    info.to_csv(root / "info.csv", index=False)
    manifest, _ = ingest(str(root), tmp_path / "raw", workers=1)
    by_path = {r["rel_path"]: r for r in rows(manifest)}
    assert sorted(by_path) == sorted(names)
    assert by_path[names[0]]["style"] == "funk/groove1" and int(by_path[names[0]]["bpm"]) == 80
    assert by_path[names[1]]["split"] == "validation" and by_path[names[1]]["style"] == "jazz"
    assert by_path[names[2]]["split"] == "test" and int(by_path[names[2]]["bpm"]) == 100
    assert pd.isna(by_path[names[3]]["split"]) or by_path[names[3]]["split"] in ("", None)
    assert "midi_filename" not in by_path[names[0]]


def test_unknown_music21_corpus_raises_data_error_naming_the_choices(tmp_path):
    with pytest.raises(DataError) as info:
        ingest("music21:xyz", tmp_path / "raw")
    msg = str(info.value)
    assert "music21:xyz" in msg and "music21:bach" in msg
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())


def test_missing_folder_raises_data_error_naming_it(tmp_path):
    missing = tmp_path / "no" / "such" / "folder"
    with pytest.raises(DataError) as info:
        ingest(str(missing), tmp_path / "raw")
    assert str(missing) in str(info.value) and "not a folder" in str(info.value)


def test_folder_without_midi_files_raises_data_error(tmp_path):
    root = tmp_path / "empty"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "readme.txt").write_text("no music here")
    with pytest.raises(DataError, match="no .mid or .midi files"):
        ingest(str(root), tmp_path / "raw")


def test_a_file_given_as_source_raises_data_error(tmp_path, chorale_paths):
    shutil.copy(chorale_paths[0], tmp_path / "one.mid")
    with pytest.raises(DataError, match="not a folder"):
        ingest(str(tmp_path / "one.mid"), tmp_path / "raw")


def test_a_pickup_is_delayed_so_bar_lines_fall_on_the_bar_grid(tmp_path):
    # music21 writes the anacrusis at time 0; bar 2 (the first full bar) must start on beat 1
    from midigen.data.ingest import export_music21_file
    from midigen.representations.grid import read_grid_notes

    abc = tmp_path / "pickup.abc"
    abc.write_text("X:1\nT:pickup\nM:4/4\nL:1/4\nK:C\nG | c d e f | g4 |]\n", encoding="utf-8")
    [(rel, reason)] = export_music21_file((str(abc), str(tmp_path / "out"), "t"))
    assert reason is None
    piece = read_grid_notes(tmp_path / "out" / rel)
    # the pickup G is the last quarter of bar 1; c d e f fill bar 2 from step 16
    assert piece.notes["onset_step"].tolist() == [12, 16, 20, 24, 28, 32]
    assert piece.time_signatures.tolist() == [(0, 4, 4)]


def test_music21_chorales_keeps_the_four_part_chorales_under_bach_names(tmp_path):
    """music21:chorales skips, with the reason, a score of another number of parts (a chorale
    with instrumental parts, a keyboard piece) and writes the others where music21:bach would,
    so a chorale lands in the same split under either source."""
    from music21 import corpus

    from midigen.data.ingest import export_music21_file

    def export(name: str):
        (path,) = [p for p in corpus.getComposer("bach") if str(p).endswith(name)]
        return export_music21_file((str(path), str(tmp_path / "out"), "chorales"))

    assert export("bwv10.7.mxl") == [("bach/bwv10.7.mid", None)]
    assert (tmp_path / "out/bach/bwv10.7.mid").is_file()
    [(rel, reason)] = export("bwv120.8-a.mxl")
    assert rel == "bach/bwv120.8-a.mid" and reason.startswith("skipped: 8 parts")
    assert not (tmp_path / "out/bach/bwv120.8-a.mid").exists()
