"""Read MIDI into plain note arrays and write note arrays back to MIDI.

Reading uses symusic (a C++ parser, ~100x faster than pretty_midi); tick times are turned
into seconds here in float64 through the tempo map, so long pieces keep sub-millisecond
precision. Writing uses pretty_midi, the object model the rest of the ecosystem knows.

symusic (like pretty_midi) drops every note-on that no note-off ends, which is how many drum
files are written, and reads a set-tempo event of the wrong length as whatever bytes follow it.
A file where either may have happened is walked a second time by our own event scanner
(scan_events): hanging notes get an end (see HANGING_DRUM_QUARTERS) and a malformed tempo event
rejects the file with the reason.
"""

from __future__ import annotations

import io
import os
from bisect import bisect_right
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from midigen.errors import MidiError

#: One row per note. Times are in seconds from the start of the file.
NOTE_DTYPE = np.dtype(
    [
        ("start_s", "f8"),
        ("end_s", "f8"),
        ("pitch", "i2"),
        ("velocity", "i2"),
        ("program", "i2"),
        ("is_drum", "?"),
    ]
)


def empty_notes() -> np.ndarray:
    return np.zeros(0, dtype=NOTE_DTYPE)


def select_notes(notes: np.ndarray, drums: str) -> np.ndarray:
    """Apply the drum policy: 'drop' removes drum-track notes, 'keep' keeps them as pitches."""
    return notes[~notes["is_drum"]] if drums == "drop" else notes


def make_notes(start_s, end_s, pitch, velocity=100, program=0, is_drum=False) -> np.ndarray:
    """Build a note array from columns (scalars broadcast)."""
    start_s = np.asarray(start_s, dtype="f8")
    notes = np.zeros(start_s.shape[0], dtype=NOTE_DTYPE)
    notes["start_s"] = start_s
    notes["end_s"] = end_s
    notes["pitch"] = pitch
    notes["velocity"] = velocity
    notes["program"] = program
    notes["is_drum"] = is_drum
    return notes


def ticks_to_seconds(ticks: np.ndarray, tempo_ticks: np.ndarray, tempo_mspq: np.ndarray, tpq: int) -> np.ndarray:
    """Convert tick positions to seconds through a tempo map (microseconds per quarter)."""
    tempo_ticks = np.asarray(tempo_ticks, dtype=np.int64)
    tempo_mspq = np.asarray(tempo_mspq, dtype=np.float64)
    if tempo_ticks.size == 0 or tempo_ticks[0] != 0:
        tempo_ticks = np.concatenate([[0], tempo_ticks])
        tempo_mspq = np.concatenate([[500000.0], tempo_mspq])
    sec_per_tick = tempo_mspq / 1e6 / tpq
    seg_start_s = np.concatenate([[0.0], np.cumsum(np.diff(tempo_ticks) * sec_per_tick[:-1])])
    idx = np.searchsorted(tempo_ticks, ticks, side="right") - 1
    return seg_start_s[idx] + (np.asarray(ticks, dtype=np.int64) - tempo_ticks[idx]) * sec_per_tick[idx]


@dataclass
class TickNotes:
    """Every note of a parsed file in MIDI ticks, plus the score for its meta events."""

    score: Any
    tpq: int
    start_tick: np.ndarray
    end_tick: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    program: np.ndarray
    is_drum: np.ndarray
    #: index of the note's track among the tracks that have notes, in file order
    track: np.ndarray


def _parse(path: Path) -> tuple[bytes, Any]:
    """A file's bytes and symusic's Score of them; MidiError with the reason when it cannot be
    read or parsed."""
    from symusic import Score

    try:
        data = path.read_bytes()
        if not data:
            raise MidiError(path, "empty file")
        return data, Score.from_midi(data)
    except MidiError:
        raise
    except OSError as exc:
        raise MidiError(path, f"cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # symusic raises RuntimeError/ValueError with a parser message
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MidiError(path, f"not a readable MIDI file ({msg})") from None


#: the text of the marker event ingest writes where a music21 score has a fermata
FERMATA = "fermata"


@dataclass
class ScoreMarks:
    """What a file's meta events mark in its score, in quarter notes from the start."""

    #: (quarter, numerator, denominator) of each time signature
    meters: list[tuple[float, int, int]]
    #: (quarter, text) of each marker event (meta type 6, e.g. ingest's "fermata")
    markers: list[tuple[float, str]]


def read_marks(path: str | Path) -> ScoreMarks:
    """The time signatures and marker events of a MIDI file (symusic reads both at C speed; a
    text event, meta type 1, is not a marker and is not read)."""
    path = Path(path)
    _, score = _parse(path)
    tpq = int(score.ticks_per_quarter)
    if tpq <= 0:
        raise MidiError(path, f"invalid ticks-per-quarter {tpq}")
    meters = [(ts.time / tpq, int(ts.numerator), int(ts.denominator)) for ts in score.time_signatures]
    return ScoreMarks(meters, [(m.time / tpq, str(m.text)) for m in score.markers])


def add_markers(data: bytes, marks: Sequence[tuple[float, str]]) -> bytes:
    """MIDI file bytes with a marker event (meta type 6) added to the first track per (quarter
    notes from the start, text) mark: how a score's marks that MIDI has no event for (a
    fermata) survive the export, for read_marks to find."""
    import mido

    mid = mido.MidiFile(file=io.BytesIO(data))
    track = mid.tracks[0]
    now, timed = 0, []
    for msg in track:
        now += msg.time
        timed.append((now, msg))
    end = timed.pop() if timed and timed[-1][1].type == "end_of_track" else None
    timed += [(round(q * mid.ticks_per_beat), mido.MetaMessage("marker", text=text)) for q, text in marks]
    timed.sort(key=lambda tm: tm[0])  # stable: a marker comes after the events already at its time
    if end is not None:
        timed.append((max(end[0], timed[-1][0] if timed else 0), end[1]))
    prev = 0
    track.clear()
    for t, msg in timed:
        track.append(msg.copy(time=t - prev))
        prev = t
    out = io.BytesIO()
    mid.save(file=out)
    return out.getvalue()


def read_tick_notes(path: str | Path, max_notes: int | None = None) -> TickNotes:
    """Parse a MIDI file with symusic; all tracks' notes in ticks, unsorted.

    Note-ons that no note-off ends count too (see scan_events). Raises MidiError with the reason
    when the file cannot be parsed, has a malformed set-tempo event or exceeds max_notes.
    """
    path = Path(path)
    data, score = _parse(path)
    tpq = int(score.ticks_per_quarter)
    if tpq <= 0:
        raise MidiError(path, f"invalid ticks-per-quarter {tpq}")
    cols, counts, programs, drums = [], [], [], []
    total, empty_drums = 0, False
    for track in score.tracks:
        c = track.notes.numpy()
        n = c["time"].shape[0]
        if n == 0:
            empty_drums = empty_drums or track.is_drum
            continue
        total += n
        if max_notes is not None and total > max_notes:
            raise MidiError(path, f"more than {max_notes} notes (preprocess.max_notes)")
        cols.append(c)
        counts.append(n)
        programs.append(track.program)
        drums.append(track.is_drum)
    if _needs_scan(data, total, empty_drums):
        scanned = scan_events(data, path, max_notes)
        if scanned is not None and scanned.hanging:
            return TickNotes(score=score, tpq=tpq, **scanned.columns())

    def cat(key: str) -> np.ndarray:
        return np.concatenate([c[key] for c in cols]).astype(np.int64) if cols else np.zeros(0, np.int64)

    start = cat("time")
    return TickNotes(
        score=score,
        tpq=tpq,
        start_tick=start,
        end_tick=start + cat("duration"),
        pitch=cat("pitch") & 0x7F,
        velocity=cat("velocity") & 0x7F,
        program=np.repeat(np.asarray(programs, dtype=np.int64), counts),
        is_drum=np.repeat(np.asarray(drums, dtype=bool), counts),
        track=np.repeat(np.arange(len(counts), dtype=np.int64), counts),
    )


# -- our own event scanner: note-ons without note-offs, malformed tempo events -----------------

#: how long a drum hit without a note-off lasts (a 32nd note; never past the next event of that
#: drum): drum sounds are one-shots, so many drum files never send note-offs
HANGING_DRUM_QUARTERS = 1 / 8
#: MIDI channel 10 (0-based 9) is the General MIDI drum channel
DRUM_CHANNEL = 9
#: above this many file bytes per note symusic found, its notes do not explain the file's events
#: and the file is scanned for note-ons without note-offs (chorales take 11-13 bytes per note; a
#: note-on and its note-off take at least 6)
SCAN_BYTES_PER_NOTE = 24


def _needs_scan(data: bytes, notes: int, empty_drums: bool) -> bool:
    """Whether symusic may have dropped note-ons without note-offs, or read a set-tempo event
    whose length is not 3.

    Scanning costs ~30x symusic's parse (pure Python), so only a suspect file is scanned: no
    notes at all, a drum track without notes (drum hits without note-offs leave one behind),
    fewer notes than the file's size suggests, or the bytes of a set-tempo event of another
    length (found at C speed). A few hanging notes among many good ones may go unnoticed.
    """
    if notes == 0 or empty_drums or len(data) > SCAN_BYTES_PER_NOTE * notes:
        return True
    i = data.find(b"\xff\x51")
    while i >= 0:
        if data[i + 2 : i + 3] != b"\x03":  # or a coincidence in other bytes: the scan decides
            return True
        i = data.find(b"\xff\x51", i + 2)
    return False


@dataclass
class ScannedNotes:
    """Notes found by scan_events, one list entry per note; hanging = how many had no note-off."""

    start_tick: list[int]
    end_tick: list[int]
    pitch: list[int]
    velocity: list[int]
    program: list[int]
    is_drum: list[bool]
    track: list[int]
    hanging: int = 0
    note_ons: int = 0

    def columns(self) -> dict[str, np.ndarray]:
        cols = {k: np.asarray(getattr(self, k), dtype=np.int64) for k in ("start_tick", "end_tick", "pitch")}
        cols |= {k: np.asarray(getattr(self, k), dtype=np.int64) for k in ("velocity", "program", "track")}
        cols["is_drum"] = np.asarray(self.is_drum, dtype=bool)
        return cols


class _Malformed(Exception):
    """The bytes do not parse as MIDI events: symusic's reading of the file stands."""


def _vlq(data: bytes, i: int, end: int) -> tuple[int, int]:
    value = 0
    for _ in range(4):
        if i >= end:
            raise _Malformed
        b = data[i]
        i += 1
        value = (value << 7) | (b & 0x7F)
        if b < 0x80:
            return value, i
    raise _Malformed


def scan_events(data: bytes, path: str | Path = "<bytes>", max_notes: int | None = None) -> ScannedNotes | None:
    """Every note of a standard MIDI file's bytes, read event by event, including note-ons that
    no note-off ends. None when the bytes do not parse (the caller keeps symusic's reading).

    Pairing is symusic's: a note-off (or a note-on of velocity 0) ends the earliest sounding
    note of its channel and pitch. A note still sounding at the end of its track ends at the
    next note-on or note-off of that pitch on its channel; a drum (channel 10) lasts at most
    HANGING_DRUM_QUARTERS; a pitched note with nothing after it lasts to the end of its track.
    A track is a (chunk, channel, program) triple, as symusic splits them, numbered in that order.
    Raises MidiError for a set-tempo event whose length is not 3 bytes (its tempo would be
    whatever bytes follow it), or for more than max_notes note-ons.
    """
    if len(data) < 14 or data[:4] != b"MThd":
        return None
    tpq = int.from_bytes(data[12:14], "big")
    if tpq == 0 or tpq & 0x8000:  # SMPTE time: symusic's reading stands
        return None
    drum_ticks = max(1, round(tpq * HANGING_DRUM_QUARTERS))
    out = ScannedNotes([], [], [], [], [], [], [])
    tracks: dict[tuple[int, int, int], int] = {}
    pos, chunk_no = 8 + int.from_bytes(data[4:8], "big"), 0
    try:
        while pos + 8 <= len(data):
            kind, length = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "big")
            start, pos = pos + 8, pos + 8 + length
            if kind == b"MTrk":
                _scan_track(data, start, min(pos, len(data)), chunk_no, drum_ticks, tracks, out, path, max_notes)
                chunk_no += 1
    except _Malformed:
        return None
    order = {key: n for n, key in enumerate(sorted(tracks))}
    number = {tracks[key]: order[key] for key in tracks}
    out.track = [number[t] for t in out.track]
    return out


def _scan_track(
    data: bytes,
    i: int,
    end: int,
    chunk_no: int,
    drum_ticks: int,
    tracks: dict[tuple[int, int, int], int],
    out: ScannedNotes,
    path: str | Path,
    max_notes: int | None,
) -> None:
    """One MTrk chunk's events into out (see scan_events)."""
    tick, running = 0, 0
    program = [0] * 16
    sounding: dict[tuple[int, int], deque] = {}  # (channel, pitch) -> (tick, velocity, program) of open notes
    events: dict[tuple[int, int], list[int]] = {}  # (channel, pitch) -> ticks of its note-ons and note-offs

    def add(channel: int, pitch: int, on: int, off: int, velocity: int, prog: int) -> None:
        out.track.append(tracks.setdefault((chunk_no, channel, prog), len(tracks)))
        out.start_tick.append(on)
        out.end_tick.append(off)
        out.pitch.append(pitch)
        out.velocity.append(velocity)
        out.program.append(prog)
        out.is_drum.append(channel == DRUM_CHANNEL)

    while i < end:
        delta, i = _vlq(data, i, end)
        tick += delta
        if i >= end:
            break
        status = data[i]
        if status >= 0x80:
            i += 1
        elif running:  # running status: the previous channel message's status byte is implied
            status = running
        else:
            raise _Malformed
        if status == 0xFF:
            if i >= end:
                raise _Malformed
            kind = data[i]
            length, i = _vlq(data, i + 1, end)
            i += length
            if kind == 0x2F:
                break
            if kind == 0x51 and length != 3:
                raise MidiError(path, f"set-tempo event at tick {tick} has {length} data bytes, not 3 (a broken file)")
            continue
        if status in (0xF0, 0xF7):
            length, i = _vlq(data, i, end)
            i += length
            continue
        if status > 0xF0:  # system common and real-time messages do not belong in a file
            raise _Malformed
        running = status
        kind, channel = status & 0xF0, status & 0x0F
        width = 1 if kind in (0xC0, 0xD0) else 2
        if i + width > end or any(b >= 0x80 for b in data[i : i + width]):
            raise _Malformed
        if kind == 0xC0:
            program[channel] = data[i]
        elif kind in (0x80, 0x90):
            pitch, velocity = data[i], data[i + 1]
            events.setdefault((channel, pitch), []).append(tick)
            if kind == 0x90 and velocity > 0:
                out.note_ons += 1
                if max_notes is not None and out.note_ons > max_notes:
                    raise MidiError(path, f"more than {max_notes} notes (preprocess.max_notes)")
                sounding.setdefault((channel, pitch), deque()).append((tick, velocity, program[channel]))
            else:
                opened = sounding.get((channel, pitch))
                if opened:
                    on, vel, prog = opened.popleft()
                    add(channel, pitch, on, tick, vel, prog)
        i += width
    for (channel, pitch), opened in sounding.items():
        ticks = events[(channel, pitch)]
        for on, vel, prog in opened:
            j = bisect_right(ticks, on)
            nxt = ticks[j] if j < len(ticks) else None
            if channel == DRUM_CHANNEL:
                off = on + drum_ticks if nxt is None else min(on + drum_ticks, nxt)
            else:
                off = tick if nxt is None else nxt
            add(channel, pitch, on, max(off, on + 1), vel, prog)
            out.hanging += 1


def read_notes(path: str | Path, max_notes: int | None = None, tempo_bpm: float | None = None) -> np.ndarray:
    """Every note of every track of a MIDI file (times in seconds), sorted by start then pitch.

    With tempo_bpm (quarter notes per minute) the file's tempo map is ignored and times are
    musical time: quarter notes from the start times 60 / tempo_bpm, so a score-based grid does
    not move when the tempo changes. Raises MidiError with the reason when the file cannot be
    parsed or exceeds max_notes.
    """
    t = read_tick_notes(path, max_notes)
    total = t.start_tick.shape[0]
    if total == 0:
        return empty_notes()
    ticks = np.concatenate([t.start_tick, t.end_tick])
    if tempo_bpm is not None:
        secs = ticks / t.tpq * (60.0 / float(tempo_bpm))
    else:
        tempos = t.score.tempos.numpy()
        # one tempo-map lookup for onsets and offsets of all tracks together
        secs = ticks_to_seconds(ticks, tempos["time"], tempos["mspq"], t.tpq)
    notes = np.zeros(total, dtype=NOTE_DTYPE)
    notes["start_s"] = secs[:total]
    notes["end_s"] = secs[total:]
    notes["pitch"] = t.pitch
    notes["velocity"] = t.velocity
    notes["program"] = t.program
    notes["is_drum"] = t.is_drum
    return notes[np.lexsort((notes["pitch"], notes["start_s"]))]


#: key names write_midi accepts (pretty_midi's spelling): majors, and minors with an "m"
_KEY_ROOTS = ("C", "C#", "Db", "D", "Eb", "E", "F", "F#", "Gb", "G", "Ab", "A", "Bb", "B")
KEY_NAMES = tuple(root + mode for mode in ("", "m") for root in _KEY_ROOTS)


def write_midi(
    notes: np.ndarray,
    path: str | Path,
    tempo_bpm: float = 120.0,
    empty_track: tuple[int, bool] = (0, False),
    time_signature: tuple[int, int] | Sequence[tuple[float, int, int]] | None = None,
    length_s: float | None = None,
    key: str | None = None,
    track: np.ndarray | None = None,
    track_names: Sequence[str] = (),
    markers: Sequence[tuple[float, str]] = (),
) -> None:
    """Write notes to a MIDI file, one instrument per (program, is_drum) pair.

    empty_track: the (program, is_drum) track written when there are no notes (a silent drum
    pattern is still a drum track). time_signature: a meta event at time 0, or (seconds,
    numerator, denominator) events: a score whose meter changes. length_s: the file
    lasts at least this long (a text event marks the end), so a pattern ending in rests keeps
    its full length. key: a key signature at time 0 (one of KEY_NAMES). track: instead, one
    instrument per track number (each note's, 0 ...), named track_names[number], with the
    program of its first note (empty_track's when it has none): a chorale's voices. markers:
    (seconds, text) marker events (meta type 6, as read_marks reads them).
    """
    import pretty_midi

    # 480 ticks per quarter (pretty_midi's default is 220): every 32nd note and triplet of a
    # score lands on a whole tick
    pm = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=float(tempo_bpm))
    if key is not None:
        pm.key_signature_changes.append(pretty_midi.KeySignature(pretty_midi.key_name_to_key_number(key), 0.0))
    if time_signature is not None:
        changes = [(0.0, *time_signature)] if len(time_signature) == 2 else time_signature
        for at, num, den in changes:
            pm.time_signature_changes.append(pretty_midi.TimeSignature(int(num), int(den), float(at)))
    if length_s is not None:
        pm.text_events.append(pretty_midi.Text("end", float(length_s)))
    for inst, sel in _instruments(notes, empty_track, track, track_names):
        for n in sel:
            inst.notes.append(
                pretty_midi.Note(
                    velocity=int(np.clip(n["velocity"], 1, 127)),
                    pitch=int(n["pitch"]),
                    start=float(n["start_s"]),
                    end=float(n["end_s"]),
                )
            )
        pm.instruments.append(inst)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        if markers:
            buf = io.BytesIO()
            pm.write(buf)
            tmp.write_bytes(add_markers(buf.getvalue(), [(t * tempo_bpm / 60.0, text) for t, text in markers]))
        else:
            pm.write(str(tmp))
        os.replace(tmp, path)  # e.g. IsADirectoryError when path is a folder
    except BaseException:
        tmp.unlink(missing_ok=True)  # no half-written file is left behind
        raise


def _instruments(
    notes: np.ndarray, empty_track: tuple[int, bool], track: np.ndarray | None, track_names: Sequence[str]
) -> list[tuple[Any, np.ndarray]]:
    """(pretty_midi instrument, its notes) per track write_midi writes (see there)."""
    import pretty_midi

    if track is not None:
        track = np.asarray(track, dtype=np.int64)
        n = max(len(track_names), int(track.max()) + 1 if track.shape[0] else 1)
        out = []
        for k in range(n):
            sel = notes[track == k]
            program, is_drum = (int(sel["program"][0]), bool(sel["is_drum"][0])) if len(sel) else empty_track
            name = track_names[k] if k < len(track_names) else f"Voice {k + 1}"
            out.append((pretty_midi.Instrument(program=program, is_drum=is_drum, name=name), sel))
        return out
    keys = sorted({(int(p), bool(d)) for p, d in zip(notes["program"], notes["is_drum"], strict=True)})
    return [
        (
            pretty_midi.Instrument(program=program, is_drum=is_drum),
            notes[(notes["program"] == program) & (notes["is_drum"] == is_drum)],
        )
        for program, is_drum in keys or [empty_track]
    ]
