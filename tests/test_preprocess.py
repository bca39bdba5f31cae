"""preprocess(): good files go into the token store, each bad file is rejected with a reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pretty_midi
import pytest
from conftest import random_melody, write_pretty_midi

from midigen.data.ingest import ingest
from midigen.data.midi_io import read_notes
from midigen.data.preprocess import preprocess
from midigen.data.store import TokenStore
from midigen.errors import DataError
from midigen.representations import EventRepresentation
from midigen.table import read_rows, write_frame

PARAMS = {
    "representation": "events",
    "time_step": 0.05,
    "max_shift_steps": 100,
    "velocity_bins": 0,
    "drums": "drop",
    "pitch_min": 21,
    "pitch_max": 108,
    "max_file_mb": 10,
    "max_notes": 200000,
    "max_duration_s": 3600,
    "timeout_s": 30,
}


def write_bad_files(folder, chorale):
    """The broken inputs, by name."""
    data = chorale.read_bytes()
    (folder / "truncated.mid").write_bytes(data[: len(data) // 2])
    (folder / "random_bytes.mid").write_bytes(np.random.default_rng(0).bytes(3000))
    (folder / "empty.mid").write_bytes(b"")
    pm = pretty_midi.PrettyMIDI()
    pm.instruments.append(pretty_midi.Instrument(program=0))  # an instrument, but no notes
    pm.write(str(folder / "no_notes.mid"))
    return ["empty.mid", "no_notes.mid", "random_bytes.mid", "truncated.mid"]


@pytest.fixture
def mixed_folder(tmp_path, chorale_paths):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = []
    for p in chorale_paths[:3]:
        shutil.copy(p, folder / p.name)
        good.append(p.name)
    bad = write_bad_files(folder, chorale_paths[0])
    return folder, sorted(good), bad


def manifest_of(folder) -> list[dict]:
    """The folder's manifest as preprocess takes it (a list of row dicts)."""
    manifest, failed = ingest(str(folder), folder.parent / "raw", workers=1)
    assert len(failed) == 0
    return manifest.to_dict("records") if hasattr(manifest, "to_dict") else list(manifest)


def run(manifest, params: dict, out: Path, workers: int = 1) -> tuple[pd.DataFrame, list[dict]]:
    """preprocess, then the index and rejected rows it wrote (checked against its summary)."""
    summary = preprocess(manifest, params, out, workers=workers)
    index = pd.read_csv(out / "index.csv", keep_default_na=False, na_values=[""])
    rejected = read_rows(out / "rejected.csv")
    assert (summary.pieces, summary.tokens) == (len(index), index["length"].sum())
    assert summary.notes == index["n_notes"].sum()
    assert summary.rejected == len(rejected) and summary.first_rejected == rejected[:10]
    return index, rejected


def test_good_files_are_kept_and_each_bad_file_is_rejected_with_a_reason(mixed_folder, tmp_path):
    folder, good, bad = mixed_folder
    index, rejected = run(manifest_of(folder), PARAMS, tmp_path / "tokens")
    assert sorted(index["rel_path"]) == good
    reasons = {r["rel_path"]: r["reason"] for r in rejected}
    assert sorted(reasons) == bad
    for name, reason in reasons.items():
        assert isinstance(reason, str) and reason.strip(), f"{name}: empty reason"
        assert "\n" not in reason
        assert str(folder) not in reason, "the reason should not repeat the file's path"
    assert "empty" in reasons["empty.mid"]
    assert "no notes" in reasons["no_notes.mid"]
    assert "not a readable MIDI" in reasons["random_bytes.mid"]
    assert "not a readable MIDI" in reasons["truncated.mid"]
    on_disk = pd.read_csv(tmp_path / "tokens" / "rejected.csv")
    assert sorted(on_disk["rel_path"]) == bad and on_disk["reason"].str.len().min() > 0


def test_store_holds_exactly_the_encoded_tokens_of_each_kept_piece(mixed_folder, tmp_path):
    folder, good, _ = mixed_folder
    index, _ = run(manifest_of(folder), PARAMS, tmp_path / "tokens")
    store = TokenStore(tmp_path / "tokens")
    rep = EventRepresentation(0.05, 100, 0, 21, 108)
    assert store.representation.vocab == rep.vocab
    assert len(store) == len(good)
    assert store.tokens.shape[0] == int(index["length"].sum())
    for i, row in store.index.iterrows():
        expected = rep.encode(read_notes(folder / row["rel_path"]))
        assert store.piece(i).tolist() == expected.tolist()
        assert row["n_notes"] == read_notes(folder / row["rel_path"]).shape[0]
        assert isinstance(row["sha1"], str) and len(row["sha1"]) == 40  # manifest columns carried over


def test_parallel_preprocess_writes_the_same_store_as_serial(tmp_path, chorale_paths):
    folder = tmp_path / "many"
    folder.mkdir()
    for p in chorale_paths:
        shutil.copy(p, folder / p.name)
    write_bad_files(folder, chorale_paths[1])  # 9 files: enough for the process pool
    manifest = manifest_of(folder)
    serial_index, serial_rej = run(manifest, PARAMS, tmp_path / "serial")
    par_index, par_rej = run(manifest, PARAMS, tmp_path / "parallel", workers=2)
    assert (tmp_path / "serial" / "tokens.bin").read_bytes() == (tmp_path / "parallel" / "tokens.bin").read_bytes()
    pd.testing.assert_frame_equal(serial_index, par_index)
    assert serial_rej == par_rej


@pytest.mark.parametrize(
    "kind,override,reason_word",
    [
        ("drums_only", {}, "drum"),
        ("out_of_range", {}, "pitch_min"),
        ("long", {"max_duration_s": 10}, "max_duration_s"),
        ("many_notes", {"max_notes": 5}, "max_notes"),
        ("big", {"max_file_mb": 0.005}, "max_file_mb"),
    ],
)
def test_limits_reject_a_file_with_a_reason_naming_the_limit(tmp_path, kind, override, reason_word):
    folder = tmp_path / "in"
    write_pretty_midi(folder / "keep.mid", [(60, 0.0, 0.5), (64, 0.5, 1.0)])  # ~100 bytes, 1 s, 2 notes
    case = folder / "case.mid"
    if kind == "drums_only":
        pm = pretty_midi.PrettyMIDI()
        drums = pretty_midi.Instrument(program=0, is_drum=True)
        drums.notes.append(pretty_midi.Note(velocity=100, pitch=36, start=0.0, end=0.1))
        pm.instruments.append(drums)
        pm.write(str(case))
    elif kind == "out_of_range":
        write_pretty_midi(case, [(10, 0.0, 0.5), (120, 0.5, 1.0)])
    elif kind == "long":
        write_pretty_midi(case, [(60, 0.0, 0.5), (62, 30.0, 31.0)])
    elif kind == "many_notes":
        write_pretty_midi(case, [(60 + i, i * 0.1, i * 0.1 + 0.1) for i in range(20)])
    else:
        write_pretty_midi(case, [(40 + i % 40, i * 0.01, i * 0.01 + 0.1) for i in range(2000)])
        assert case.stat().st_size > 5000
    index, rejected = run(manifest_of(folder), {**PARAMS, **override}, tmp_path / "tokens")
    assert index["rel_path"].tolist() == ["keep.mid"]
    assert [r["rel_path"] for r in rejected] == ["case.mid"]
    assert reason_word in rejected[0]["reason"], rejected


def test_manifest_with_nothing_usable_raises_data_error(tmp_path, chorale_paths):
    folder = tmp_path / "bad_only"
    folder.mkdir()
    write_bad_files(folder, chorale_paths[0])
    with pytest.raises(DataError, match="no usable piece among 4 files"):
        preprocess(manifest_of(folder), PARAMS, tmp_path / "tokens", workers=1)


def test_drums_keep_turns_drum_notes_into_pitches(tmp_path):
    folder = tmp_path / "drums"
    pm = pretty_midi.PrettyMIDI()
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    drums.notes.append(pretty_midi.Note(velocity=100, pitch=36, start=0.0, end=0.1))
    drums.notes.append(pretty_midi.Note(velocity=100, pitch=42, start=0.5, end=0.6))
    pm.instruments.append(drums)
    folder.mkdir()
    pm.write(str(folder / "beat.mid"))
    index, rejected = run(manifest_of(folder), {**PARAMS, "drums": "keep"}, tmp_path / "tokens")
    assert rejected == [] and index["n_notes"].tolist() == [2]


def test_a_manifest_csv_is_streamed_into_the_same_store_as_its_rows_and_repeats_keep_the_first(mixed_folder, tmp_path):
    folder, good, bad = mixed_folder
    rows = [{**r, "genre": f"g{i}"} for i, r in enumerate(manifest_of(folder))]
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    run(tmp_path / "manifest.csv", PARAMS, tmp_path / "from_csv")
    index, _ = run(rows, PARAMS, tmp_path / "from_rows")
    for name in ("tokens.bin", "index.csv", "rejected.csv", "vocab.json"):
        assert (tmp_path / "from_csv" / name).read_bytes() == (tmp_path / "from_rows" / name).read_bytes(), name
    assert index.columns.tolist()[-2:] == ["sha1", "genre"]
    # a path listed twice counts once, with its first row, whether the repeat is adjacent or not
    first = next(i for i, r in enumerate(rows) if r["rel_path"] in good)
    repeat = {**rows[first], "genre": "repeat"}
    unsorted = [*rows[first:], *rows[:first], repeat] if first else [*rows[1:], rows[0], repeat]
    for manifest in ([*rows[: first + 1], repeat, *rows[first + 1 :]], [*rows, repeat], unsorted):
        index, rejected = run(manifest, PARAMS, tmp_path / "repeats")
        assert len(index) + len(rejected) == len(rows)
        assert index.set_index("rel_path").loc[rows[first]["rel_path"], "genre"] == f"g{first}"


def test_metadata_columns_named_like_the_stores_own_are_kept_with_a_meta_prefix(tmp_path):
    folder = tmp_path / "src"
    names = ["a.mid", "b.mid", "c.mid"]
    for i, name in enumerate(names):
        write_pretty_midi(folder / name, random_melody(i, n=10 + i))
    plain, _ = ingest(str(folder), tmp_path / "raw0", workers=1)
    write_frame(tmp_path / "plain.csv", plain)
    run(tmp_path / "plain.csv", PARAMS, tmp_path / "plain")
    own = pd.read_csv(tmp_path / "plain" / "index.csv").set_index("rel_path")

    # a metadata CSV (as GMD's info.csv) whose columns clash with the manifest's and the store's
    info = pd.DataFrame(
        {
            "midi_filename": names,
            "n_notes": ["many", "few", "some"],
            "duration_s": [1.5, 2.5, 3.5],
            "size": [7, 8, 9],
            "offset": [0, 0, 0],
            "meta_size": ["x", "y", "z"],
            "style": ["rock", "jazz", "funk"],
        }
    )
    info.to_csv(folder / "info.csv", index=False)
    manifest, _ = ingest(str(folder), tmp_path / "raw", workers=1)
    write_frame(tmp_path / "manifest.csv", manifest)  # through the CSV, as the stage reads it
    index, _ = run(tmp_path / "manifest.csv", PARAMS, tmp_path / "tokens")
    index = index.set_index("rel_path")
    for column in ("n_notes", "duration_s", "offset", "length"):
        assert index[column].tolist() == own[column].tolist(), column
    assert index["meta_n_notes"].tolist() == ["many", "few", "some"]
    assert index["meta_duration_s"].tolist() == [1.5, 2.5, 3.5]
    assert index["meta_offset"].tolist() == [0, 0, 0]
    assert index["meta_meta_size"].tolist() == [7, 8, 9] and index["meta_size"].tolist() == ["x", "y", "z"]
    assert index["style"].tolist() == ["rock", "jazz", "funk"]
    assert [int(s) for s in manifest["size"]] == [(folder / n).stat().st_size for n in names]
