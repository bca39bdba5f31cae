"""Robustness against hostile input: a folder of broken, absurd and tricky MIDI files goes through
ingest and preprocess without a hang or a crash; every good piece is kept and every bad file is
listed with a reason. The stage scripts print one summary line, or one `error:` line when nothing
is usable.

Hangs are caught with faulthandler.dump_traceback_later (a watchdog thread): signal.alarm would
share ITIMER_REAL with preprocess.timeout_s and be cancelled by it.
"""

from __future__ import annotations

import faulthandler
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import (
    folder_preprocess_params,
    random_melody,
    run_stage,
    stage_workdir,
    vlq,
    write_pretty_midi,
)

from midigen.data.ingest import ingest
from midigen.data.preprocess import preprocess
from midigen.errors import DataError
from midigen.table import read_rows

HANG_LIMIT_S = 90


@pytest.fixture(autouse=True)
def watchdog():
    """Abort the whole test process (with tracebacks) if a test hangs."""
    faulthandler.dump_traceback_later(HANG_LIMIT_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


# -- raw MIDI bytes ---------------------------------------------------------------------------


def header(fmt: int = 0, ntracks: int = 1, division: int = 480) -> bytes:
    return b"MThd" + struct.pack(">IHHH", 6, fmt, ntracks, division)


def chunk(data: bytes, length: int | None = None) -> bytes:
    return b"MTrk" + struct.pack(">I", len(data) if length is None else length) + data


END_OF_TRACK = b"\x00\xff\x2f\x00"


def tempo_event(mspq: int, delta: int = 0) -> bytes:
    return vlq(delta) + b"\xff\x51\x03" + mspq.to_bytes(3, "big")


def note_events(notes: list[tuple[int, int, int]]) -> bytes:
    """(pitch, start_tick, end_tick) -> delta-timed note on/off events (running order)."""
    events = []
    for pitch, start, end in notes:
        events.append((start, 1, b"\x90" + bytes([pitch, 90])))
        events.append((end, 0, b"\x80" + bytes([pitch, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    out, now = bytearray(), 0
    for t, _, msg in events:
        out += vlq(t - now) + msg
        now = t
    return bytes(out)


def simple_track(n: int = 16, tempo: int | None = 500000, step: int = 240) -> bytes:
    body = tempo_event(tempo) if tempo is not None else b""
    body += note_events([(60 + (i % 12), i * step, i * step + step) for i in range(n)])
    return body + END_OF_TRACK


def raw_midi(*tracks: bytes, fmt: int | None = None, division: int = 480) -> bytes:
    fmt = (0 if len(tracks) == 1 else 1) if fmt is None else fmt
    return header(fmt, len(tracks), division) + b"".join(chunk(t) for t in tracks)


def note_bomb(n_notes: int) -> bytes:
    """n_notes short notes (~8 bytes each): cheap to write, many notes to parse."""
    one = vlq(0) + b"\x90\x3c\x5a" + vlq(1) + b"\x80\x3c\x00"
    return raw_midi(one * n_notes + END_OF_TRACK)


# -- the corpus -------------------------------------------------------------------------------

#: bad file (relative path) -> a word its reason should contain (None: any reason)
BAD = {
    "bad/truncated.mid": None,
    "bad/random_bytes.mid": None,
    "bad/zero_bytes.mid": "empty",
    "bad/header_no_tracks.mid": None,
    "bad/header_zero_tracks.mid": None,
    "bad/track_length_too_long.mid": None,
    "bad/no_notes.mid": "no notes",
    "bad/text.mid": None,
    "bad/hours_long_note.mid": "max_duration_s",
    "bad/slow_tempo_hours.mid": "max_duration_s",
}
#: files that must not crash or hang; kept or rejected (with a reason) are both acceptable
EITHER = ("odd/tempo_1us.mid", "odd/tempo_ffffff.mid", "odd/type2.mid", "odd/track_length_too_short.mid")


def build_good(root: Path, chorale_paths: list[Path]) -> list[str]:
    good = []
    for src in chorale_paths[:2]:
        rel = f"chorales/{src.name}"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / rel)
        good.append(rel)
    deep = "/".join(f"d{i:02d}" for i in range(30))
    for rel, seed in (
        ("plain/tune.mid", 1),
        ("plain/UPPER.MID", 2),
        ("plain/lower.midi", 3),
        ("plain/Bach – Ärger 日本 ß.mid", 4),
        ("plain/spaces and 'quotes'.midi", 5),
        (f"{deep}/deep.mid", 6),
    ):
        write_pretty_midi(root / rel, random_melody(seed, n=20))
        good.append(rel)
    return sorted(good)


def build_bad(root: Path, good_file: Path) -> None:
    def put(rel: str, data: bytes) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)

    good = good_file.read_bytes()
    rng = np.random.default_rng(0)
    put("bad/truncated.mid", good[: len(good) // 2])
    put("bad/random_bytes.mid", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    put("bad/zero_bytes.mid", b"")
    put("bad/header_no_tracks.mid", header(1, 3))
    put("bad/header_zero_tracks.mid", header(1, 0))
    track = simple_track()
    put("bad/track_length_too_long.mid", header(0, 1) + chunk(track, length=len(track) + 5000))
    put("bad/no_notes.mid", raw_midi(tempo_event(500000) + END_OF_TRACK))
    put("bad/text.mid", b"These are not the notes you are looking for.\n" * 20)
    put(
        "bad/hours_long_note.mid",
        raw_midi(tempo_event(500000) + note_events([(60, 0, 480 * 2 * 3600 * 2)]) + END_OF_TRACK),
    )
    # 0xFFFFFF us per quarter = 16.8 s per quarter: 300 quarter notes last ~84 minutes
    put("bad/slow_tempo_hours.mid", raw_midi(simple_track(300, tempo=0xFFFFFF, step=480)))
    put("odd/tempo_1us.mid", raw_midi(simple_track(64, tempo=1)))
    put("odd/tempo_ffffff.mid", raw_midi(simple_track(4, tempo=0xFFFFFF, step=48)))
    put("odd/type2.mid", raw_midi(simple_track(8), simple_track(8), fmt=2))
    put(
        "odd/track_length_too_short.mid", header(0, 1) + chunk(track, length=len(track) // 2) + track[len(track) // 2 :]
    )
    # a folder symlink pointing at its parent: walking must not loop
    (root / "loop").mkdir()
    os.symlink("..", root / "loop" / "parent")
    # not MIDI by name: ignored silently
    put("notes.txt", b"hello")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, chorale_paths):
    root = tmp_path_factory.mktemp("hostile")
    good = build_good(root, chorale_paths)
    build_bad(root, root / "plain/tune.mid")
    return root, good


@pytest.fixture(scope="module")
def pre_params():
    return folder_preprocess_params()


def run_both(folder: Path, out: Path, params: dict, workers: int = 2):
    manifest, failed = ingest(str(folder), out / "raw", 0, workers)
    preprocess(manifest.to_dict("records"), params, out / "tokens", workers)
    index, rejected = read_rows(out / "tokens/index.csv"), read_rows(out / "tokens/rejected.csv")
    return manifest, failed, index, rejected


@pytest.fixture(scope="module")
def hostile_result(hostile, pre_params, tmp_path_factory):
    root, _ = hostile
    faulthandler.dump_traceback_later(HANG_LIMIT_S, exit=True)
    try:
        return run_both(root, tmp_path_factory.mktemp("hostile_out"), pre_params)
    finally:
        faulthandler.cancel_dump_traceback_later()


def test_every_good_piece_is_kept(hostile, hostile_result):
    _, good = hostile
    _, _, index, _ = hostile_result
    kept = {r["rel_path"] for r in index}
    assert set(good) <= kept, sorted(set(good) - kept)
    assert not any(k.startswith("bad/") for k in kept), sorted(kept)


def test_every_bad_file_is_listed_once_with_a_reason(hostile_result):
    manifest, failed, index, rejected = hostile_result
    reasons: dict[str, str] = {}
    for r in rejected:
        reasons[r["rel_path"]] = r["reason"]
    for r in failed.itertuples():
        reasons[r.source] = r.reason
    for rel, word in BAD.items():
        assert rel in reasons, f"{rel} neither kept nor rejected: {reasons}"
        assert reasons[rel].strip(), rel
        if word:
            assert word in reasons[rel], (rel, reasons[rel])
    kept = {r["rel_path"] for r in index}
    for rel in EITHER:
        assert (rel in kept) != (rel in reasons), f"{rel}: kept={rel in kept} rejected={reasons.get(rel)}"
    # rejected + kept account for every manifest row exactly once
    assert len(index) + len(rejected) == len(manifest)
    assert len(set(manifest["rel_path"])) == len(manifest)


def test_a_symlink_loop_is_walked_once(hostile, hostile_result):
    manifest, failed, _, _ = hostile_result
    assert not [p for p in manifest["rel_path"] if p.startswith("loop/")], list(manifest["rel_path"])
    assert any("symlink loop" in r for r in failed["reason"]), failed.to_string()


def test_text_and_other_non_midi_names_are_not_picked_up(hostile_result):
    manifest = hostile_result[0]
    assert "notes.txt" not in set(manifest["rel_path"])


def test_a_folder_where_nothing_is_usable_gives_data_error(tmp_path, chorale_paths, pre_params):
    bad = tmp_path / "all_bad"
    build_bad(bad, chorale_paths[0])
    for odd in EITHER:  # keep only the certainly-bad files
        (bad / odd).unlink()
    with pytest.raises(DataError, match="no usable piece"):
        run_both(bad, tmp_path / "out", pre_params)
    assert not (tmp_path / "out" / "tokens" / "tokens.bin").exists()


def test_a_folder_without_midi_files_gives_data_error(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "readme.txt").write_text("nothing here")
    with pytest.raises(DataError, match="no .mid or .midi files"):
        ingest(str(tmp_path / "src"), tmp_path / "raw", 0, 1)


def test_a_mixed_case_extension_is_read(tmp_path, pre_params):
    src = tmp_path / "src"
    for name in ("a.Mid", "b.MiDi"):
        write_pretty_midi(src / name, random_melody(3, n=20))
    _, _, index, rejected = run_both(src, tmp_path / "out", pre_params, workers=1)
    assert sorted(r["rel_path"] for r in index) == ["a.Mid", "b.MiDi"], rejected


def test_a_file_whose_notes_all_collapse_to_zero_seconds_is_rejected(tmp_path, pre_params):
    src = tmp_path / "src"
    write_pretty_midi(src / "ok.mid", random_melody(1, n=20))
    (src / "tempo_1us.mid").write_bytes(raw_midi(simple_track(64, tempo=1)))
    _, _, index, rejected = run_both(src, tmp_path / "out", pre_params, workers=1)
    assert [r["rel_path"] for r in index] == ["ok.mid"], index


# -- caps -------------------------------------------------------------------------------------


def test_max_notes_and_max_duration_reject_with_the_param_named(tmp_path, pre_params):
    src = tmp_path / "src"
    write_pretty_midi(src / "ok.mid", random_melody(1, n=20))
    write_pretty_midi(src / "many.mid", [(60 + i % 12, i * 0.01, i * 0.01 + 0.01) for i in range(300)])
    write_pretty_midi(src / "long.mid", [(60, 0.0, 1.0), (62, 100.0, 101.0)])
    params = {**pre_params, "max_notes": 100, "max_duration_s": 60.0}
    _, _, index, rejected = run_both(src, tmp_path / "out", params, workers=1)
    assert [r["rel_path"] for r in index] == ["ok.mid"]
    reasons = {r["rel_path"]: r["reason"] for r in rejected}
    assert "preprocess.max_notes" in reasons["many.mid"], reasons
    assert "preprocess.max_duration_s" in reasons["long.mid"], reasons


def test_a_tiny_timeout_rejects_files_naming_timeout_s(tmp_path, pre_params, chorale_paths):
    src = tmp_path / "src"
    src.mkdir()
    for p in chorale_paths:
        shutil.copy(p, src / p.name)
    params = {**pre_params, "timeout_s": 1e-6}
    with pytest.raises(DataError, match="timeout_s"):
        run_both(src, tmp_path / "out", params, workers=1)


def test_a_tiny_timeout_rejects_files_in_worker_processes_too(tmp_path, pre_params):
    src = tmp_path / "src"
    for i in range(10):  # >= 8 files: the process pool is used
        write_pretty_midi(src / f"t{i}.mid", random_melody(i, n=20))
    params = {**pre_params, "timeout_s": 1e-6}
    with pytest.raises(DataError, match="timeout_s") as err:
        run_both(src, tmp_path / "out", params, workers=2)
    assert "(10)" in str(err.value), str(err.value)


# -- the stage scripts ------------------------------------------------------------------------


def test_stage_scripts_on_the_hostile_folder_keep_the_good_pieces(tmp_path, hostile):
    root, good = hostile
    work = stage_workdir(tmp_path, root)
    ing = run_stage(work, "ingest", HANG_LIMIT_S)
    assert ing.returncode == 0, ing.stdout + ing.stderr
    assert "Traceback" not in ing.stderr, ing.stderr
    pre = run_stage(work, "preprocess", HANG_LIMIT_S)
    assert pre.returncode == 0, pre.stdout + pre.stderr
    assert "Traceback" not in pre.stderr, pre.stderr
    summary = [ln for ln in pre.stdout.splitlines() if ln.startswith("preprocess: kept")]
    assert len(summary) == 1, pre.stdout
    assert "rejected" in summary[0]
    index = pd.read_csv(work / "data/tokens/index.csv")
    assert set(good) <= set(index["rel_path"])
    rejected = pd.read_csv(work / "data/tokens/rejected.csv", keep_default_na=False)
    assert set(BAD) - {"bad/zero_bytes.mid"} <= set(rejected["rel_path"]) | set(
        pd.read_csv(work / "data/raw/failed.csv")["source"]
    )
    assert (rejected["reason"].str.len() > 0).all()
    assert f"kept {len(index)} pieces" in summary[0] and f"rejected {len(rejected)}" in summary[0], summary


def test_stage_scripts_on_an_all_bad_folder_fail_with_one_error_line(tmp_path, chorale_paths):
    bad = tmp_path / "all_bad"
    build_bad(bad, chorale_paths[0])
    for odd in EITHER:
        (bad / odd).unlink()
    work = stage_workdir(tmp_path, bad)
    ing = run_stage(work, "ingest", HANG_LIMIT_S)
    assert ing.returncode == 0, ing.stdout + ing.stderr
    pre = run_stage(work, "preprocess", HANG_LIMIT_S)
    assert pre.returncode != 0
    assert "Traceback" not in pre.stderr, pre.stderr
    errors = [ln for ln in pre.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, pre.stderr
    assert "no usable piece" in errors[0]
    assert not (work / "data/tokens/tokens.bin").exists()


def test_ingest_stage_on_a_folder_without_midi_fails_with_one_error_line(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("x")
    work = stage_workdir(tmp_path, src)
    ing = run_stage(work, "ingest", HANG_LIMIT_S)
    assert ing.returncode == 2, ing.stdout + ing.stderr
    assert "Traceback" not in ing.stderr
    assert [ln for ln in ing.stderr.splitlines() if ln.startswith("error:")], ing.stderr
