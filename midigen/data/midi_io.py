"""Read MIDI into plain note arrays and write note arrays back to MIDI.

Reading uses symusic (a C++ parser, ~100x faster than pretty_midi); tick times are turned
into seconds here in float64 through the tempo map, so long pieces keep sub-millisecond
precision. Writing uses pretty_midi, the object model the rest of the ecosystem knows.
"""

from __future__ import annotations

import os
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


def read_tick_notes(path: str | Path, max_notes: int | None = None) -> TickNotes:
    """Parse a MIDI file with symusic; all tracks' notes in ticks, unsorted.

    Raises MidiError with the reason when the file cannot be parsed or exceeds max_notes.
    """
    from symusic import Score

    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise MidiError(path, "empty file")
        # symusic guesses the format from the suffix and knows only .mid/.MID/.midi/.MIDI
        score = Score.from_file(str(path), ttype="tick", fmt="midi")
    except MidiError:
        raise
    except OSError as exc:
        raise MidiError(path, f"cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # symusic raises RuntimeError/ValueError with a parser message
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MidiError(path, f"not a readable MIDI file ({msg})") from None
    tpq = int(score.ticks_per_quarter)
    if tpq <= 0:
        raise MidiError(path, f"invalid ticks-per-quarter {tpq}")
    cols, counts, programs, drums = [], [], [], []
    total = 0
    for track in score.tracks:
        c = track.notes.numpy()
        n = c["time"].shape[0]
        if n == 0:
            continue
        total += n
        if max_notes is not None and total > max_notes:
            raise MidiError(path, f"more than {max_notes} notes (preprocess.max_notes)")
        cols.append(c)
        counts.append(n)
        programs.append(track.program)
        drums.append(track.is_drum)

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
    time_signature: tuple[int, int] | None = None,
    length_s: float | None = None,
    key: str | None = None,
) -> None:
    """Write notes to a MIDI file, one instrument per (program, is_drum) pair.

    empty_track: the (program, is_drum) track written when there are no notes (a silent drum
    pattern is still a drum track). time_signature: a meta event at time 0. length_s: the file
    lasts at least this long (a text event marks the end), so a pattern ending in rests keeps
    its full length. key: a key signature at time 0 (one of KEY_NAMES).
    """
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=float(tempo_bpm))
    if key is not None:
        pm.key_signature_changes.append(pretty_midi.KeySignature(pretty_midi.key_name_to_key_number(key), 0.0))
    if time_signature is not None:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(*time_signature, 0.0))
    if length_s is not None:
        pm.text_events.append(pretty_midi.Text("end", float(length_s)))
    keys = sorted({(int(p), bool(d)) for p, d in zip(notes["program"], notes["is_drum"], strict=True)})
    for program, is_drum in keys or [empty_track]:
        inst = pretty_midi.Instrument(program=program, is_drum=is_drum)
        sel = notes[(notes["program"] == program) & (notes["is_drum"] == is_drum)]
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
    pm.write(str(tmp))
    os.replace(tmp, path)
