"""MIDI files that symusic misreads, built from raw bytes: note-ons that no note-off ends (how many
drum files are written) count as notes, and a set-tempo event of the wrong length rejects the
file with the reason instead of giving it a tempo made of the bytes that follow."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import PROJECT_ROOT, folder_preprocess_params, vlq

from midigen.data.midi_io import HANGING_DRUM_QUARTERS, make_notes, read_notes, read_tick_notes, write_midi
from midigen.data.preprocess import preprocess
from midigen.errors import MidiError
from midigen.representations import from_params
from midigen.table import read_rows

TPQ = 96
#: no tempo event: 120 bpm, half a second per quarter
SEC_PER_TICK = 0.5 / TPQ


def track(events: list[tuple[int, bytes]], end_tick: int | None = None) -> bytes:
    """(absolute tick, message bytes) -> an MTrk chunk ending with End of Track."""
    body, now = bytearray(), 0
    for tick, msg in sorted(events, key=lambda e: e[0]):
        body += vlq(tick - now) + msg
        now = tick
    body += vlq((end_tick if end_tick is not None else now) - now) + b"\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body)) + bytes(body)


def midi_file(path: Path, *tracks: bytes) -> Path:
    head = b"MThd" + struct.pack(">IHHH", 6, 1 if len(tracks) > 1 else 0, len(tracks), TPQ)
    path.write_bytes(head + b"".join(tracks))
    return path


def drum_hits(n: int, step: int = TPQ // 4) -> list[tuple[int, bytes]]:
    """n drum note-ons on channel 10 (kick, snare, closed hi-hat in turn), no note-offs."""
    return [(i * step, bytes([0x99, (36, 38, 42)[i % 3], 100])) for i in range(n)]


def pitched(notes: list[tuple[int, int, int]], channel: int = 0) -> list[tuple[int, bytes]]:
    """(pitch, on tick, off tick) with real note-offs."""
    events = []
    for pitch, on, off in notes:
        events += [(on, bytes([0x90 | channel, pitch, 80])), (off, bytes([0x80 | channel, pitch, 0]))]
    return events


def test_drum_hits_without_note_offs_are_short_notes_not_no_notes(tmp_path):
    path = midi_file(tmp_path / "drums.mid", track(drum_hits(64)))
    notes = read_notes(path)
    assert len(notes) == 64 and notes["is_drum"].all()
    assert np.allclose(notes["start_s"], np.arange(64) * (TPQ // 4) * SEC_PER_TICK)
    # a 32nd note each: shorter than the 16th notes between hits
    assert np.allclose(notes["end_s"] - notes["start_s"], HANGING_DRUM_QUARTERS * TPQ * SEC_PER_TICK)


def test_a_drum_file_without_note_offs_tokenizes_for_the_drum_grid(tmp_path):
    path = midi_file(tmp_path / "drums.mid", track(drum_hits(64)))
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))["preprocess"]
    rep = from_params({**params, "representation": "drums"})
    ids, info = rep.tokenize_file(str(path), {**params, "max_notes": 1000})
    assert info["n_notes"] == 64 and info["windows"] >= 1
    assert (ids > 0).sum() == 64  # every hit is a step with a drum in it


def test_a_band_file_keeps_the_drum_hits_of_its_track_without_note_offs(tmp_path):
    melody = pitched([(60 + i % 5, i * TPQ, i * TPQ + TPQ // 2) for i in range(16)])
    path = midi_file(tmp_path / "band.mid", track(melody), track(drum_hits(64)))
    t = read_tick_notes(path)
    assert int((~t.is_drum).sum()) == 16 and int(t.is_drum.sum()) == 64
    keep = ~t.is_drum
    melody_notes = sorted(zip(t.start_tick[keep].tolist(), t.end_tick[keep].tolist(), strict=True))
    assert melody_notes == [(i * TPQ, i * TPQ + TPQ // 2) for i in range(16)]
    assert len(set(t.track[t.is_drum])) == 1 and set(t.track[t.is_drum]).isdisjoint(t.track[keep])


def test_pitched_notes_without_note_offs_end_at_the_next_event_of_their_pitch_or_the_track_end(tmp_path):
    on = [(0, b"\x90\x3c\x50"), (TPQ, b"\x90\x40\x50"), (2 * TPQ, b"\x90\x3c\x50"), (3 * TPQ, b"\x90\x43\x50")]
    path = midi_file(tmp_path / "hanging.mid", track(on, end_tick=8 * TPQ))
    notes = read_notes(path)
    got = sorted(
        zip(notes["pitch"].tolist(), (notes["start_s"] / SEC_PER_TICK).round().astype(int).tolist(),
            (notes["end_s"] / SEC_PER_TICK).round().astype(int).tolist(), strict=True)
    )  # fmt: skip
    # C4 sounds until it is struck again; the others until the end of the track
    assert got == [(60, 0, 2 * TPQ), (60, 2 * TPQ, 8 * TPQ), (64, TPQ, 8 * TPQ), (67, 3 * TPQ, 8 * TPQ)]


def test_a_file_where_every_note_has_its_note_off_reads_as_before(tmp_path, chorale_paths):
    import pretty_midi

    for path in chorale_paths[:2]:
        notes = read_notes(path)
        pm = pretty_midi.PrettyMIDI(str(path))
        assert len(notes) == sum(len(i.notes) for i in pm.instruments)


@pytest.mark.parametrize("length", [0, 2, 4])
def test_a_set_tempo_event_of_the_wrong_length_rejects_the_file_naming_it(tmp_path, length):
    tempo = b"\xff\x51" + vlq(length) + bytes(range(7, 7 + length))
    path = midi_file(tmp_path / "tempo.mid", track([(0, tempo)] + pitched([(60, 0, TPQ), (62, TPQ, 2 * TPQ)])))
    with pytest.raises(MidiError, match=rf"tempo.mid: set-tempo event at tick 0 has {length} data bytes, not 3"):
        read_notes(path)


def test_preprocess_lists_a_zero_length_tempo_file_as_rejected_with_the_reason(tmp_path, chorale_paths):
    broken = midi_file(tmp_path / "tempo0.mid", track([(0, b"\xff\x51\x00")] + pitched([(60, 0, TPQ)])))
    params = folder_preprocess_params()
    rows = [{"rel_path": "good.mid", "path": str(chorale_paths[0])}, {"rel_path": "tempo0.mid", "path": str(broken)}]
    summary = preprocess(rows, params, tmp_path / "tokens", workers=1)
    assert summary.pieces == 1
    (rejected,) = read_rows(tmp_path / "tokens/rejected.csv")
    assert rejected["rel_path"] == "tempo0.mid" and "set-tempo event at tick 0 has 0 data bytes" in rejected["reason"]


def test_write_midi_onto_a_folder_fails_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "song.mid"
    target.mkdir()
    with pytest.raises(OSError):
        write_midi(make_notes([0.0], [0.5], [60]), target)
    assert [p.name for p in tmp_path.iterdir()] == ["song.mid"]
