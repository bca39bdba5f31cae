"""MIDI on a beat grid -> a MusicXML score (MuseScore, Sibelius, Finale, Dorico open it), via music21.

A score needs what a performance does not have: note values, a meter and a key. They are read
from the file's ticks, never from its seconds, so any tempo map gives the same score:

- every onset and end is a multiple of 1/GRID_PER_QUARTER of a quarter note (32nd notes, and
  triplets down to 32nd triplets), give or take the tick of rounding that writing seconds as
  ticks may add (on_grid_tolerance); a file with a note off that grid (a performance played
  freely in time) is a MidigenError saying how many, unless `quantize` snaps every onset and
  end to 1/quantize of a quarter note (4 = sixteenth notes);
- the meter is each time signature of the file (4/4 when it has none, as MIDI assumes);
- the key is each key signature of the file, else estimated from the pitches (music21's
  Krumhansl-Schmuckler analysis; a drum-only file gets none);
- one part per track (a chorale's Soprano, Alto, Tenor, Bass; a song's instruments), named
  after the track or its General MIDI instrument. Notes of one track that start and end
  together are one chord; overlapping ones go into voices of the part (music21's makeVoices,
  which gets slow for many overlapping notes over many bars: 14 s for 33 random notes held
  across 106 bars in 8 voices, against 0.1 to 3.4 s for the default run's pieces).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from midigen.data.midi_io import TickNotes, read_tick_notes
from midigen.errors import MidigenError, ParamsError

#: positions a score may hold per quarter note: 8 (32nd notes) and 3 and 6 (triplets) divide it
GRID_PER_QUARTER = 24
#: MIDI pitch of C0: MusicXML numbers octaves from 0, so nothing lower can be written
LOWEST_PITCH = 12
#: the largest quantize step count (steps per quarter note) the score grid takes
MAX_QUANTIZE = 96


@dataclass
class ScoreSummary:
    """What write_musicxml wrote: its parts, note count, key and meters."""

    path: Path
    parts: list[str]
    notes: int
    #: the key at the start, e.g. "f# minor"; "" when none (drums only)
    key: str
    #: "file" (a key signature of the file), "estimated" (from the pitches) or "" (none)
    key_source: str
    #: "num/den" of each time signature; ["4/4"] assumed when the file has none
    meters: list[str] = field(default_factory=list)
    #: notes moved to the grid by `quantize` (0 without it)
    quantized: int = 0

    def describe(self) -> str:
        key = f"key {self.key} ({self.key_source})" if self.key else "no key"
        moved = f"; {self.quantized} notes snapped to the grid" if self.quantized else ""
        parts = f"{len(self.parts)} part{'s' if len(self.parts) != 1 else ''} ({', '.join(self.parts)})"
        return f"{parts}, {self.notes} notes, {key}, meter {', '.join(self.meters)}{moved}"


def _read(midi: Any) -> tuple[TickNotes, str]:
    """The tick notes of a MIDI path or a pretty_midi.PrettyMIDI, and a name for messages."""
    if isinstance(midi, (str, os.PathLike)):
        return read_tick_notes(midi), str(midi)
    if not hasattr(midi, "write") or not hasattr(midi, "instruments"):
        raise TypeError(f"expected a MIDI file path or a pretty_midi.PrettyMIDI, got {type(midi).__name__}")
    with tempfile.TemporaryDirectory(prefix="midigen_xml_") as tmp:
        path = Path(tmp) / "piece.mid"
        midi.write(str(path))
        return read_tick_notes(path), "the PrettyMIDI object"


def _grid_positions(ticks: np.ndarray, tpq: int, per_quarter: int) -> tuple[np.ndarray, np.ndarray]:
    """(nearest grid position, ticks away from it) of each tick, per_quarter positions a quarter;
    halves round up, in exact integer arithmetic."""
    ticks = ticks.astype(np.int64)
    pos = (2 * ticks * per_quarter + tpq) // (2 * tpq)
    off_ticks = np.abs(ticks * per_quarter - pos * tpq) / per_quarter
    return pos, off_ticks


def on_grid_tolerance(tpq: int) -> float:
    """Ticks a note may lie off the score grid and still be on it: rounding seconds to ticks
    (how pretty_midi writes) moves a note by a tick at most; 2 at 480 ticks per quarter."""
    return max(1.0, tpq / 240)


def grid_notes(notes: TickNotes, name: str, quantize: int | None = None) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(onset, end) of every note in grid positions, the positions per quarter note, and how many
    notes were moved by `quantize`. Without quantize, MidigenError when a note is off the score grid."""
    tpq = notes.tpq
    if quantize is not None:
        if not 1 <= quantize <= MAX_QUANTIZE:
            raise ParamsError(f"quantize = {quantize}: 1 to {MAX_QUANTIZE} steps per quarter note (4 = sixteenths)")
        on, on_err = _grid_positions(notes.start_tick, tpq, quantize)
        end, end_err = _grid_positions(notes.end_tick, tpq, quantize)
        end = np.maximum(end, on + 1)  # a note shorter than half a step still lasts one
        tol = on_grid_tolerance(tpq)
        moved = int(((on_err > tol) | (end_err > tol)).sum())
        return on, end, quantize, moved
    on, on_err = _grid_positions(notes.start_tick, tpq, GRID_PER_QUARTER)
    end, end_err = _grid_positions(notes.end_tick, tpq, GRID_PER_QUARTER)
    off = (on_err > on_grid_tolerance(tpq)) | (end_err > on_grid_tolerance(tpq))
    if off.any():
        first = int(np.flatnonzero(off)[0])
        raise MidigenError(
            f"{name}: {int(off.sum())} of {off.size} notes are not on a beat grid (the first starts at quarter "
            f"{notes.start_tick[first] / tpq:.3f}; a score's notes start and end on 32nd notes or triplets): "
            "a performance played freely in time? Quantize it to write a score (midigen export --quantize 4: "
            "sixteenth notes)"
        )
    end = np.maximum(end, on + 1)
    return on, end, GRID_PER_QUARTER, 0


def _track_names(notes: TickNotes) -> list[str]:
    """Each track's name (tracks that have notes, in file order), "" where it has none."""
    named = [str(t.name).strip() for t in notes.score.tracks if len(t.notes)]
    count = int(notes.track.max()) + 1 if notes.track.size else 0
    return named if len(named) == count else [""] * count


def _part_name(name: str, program: int, is_drum: bool, taken: set[str]) -> str:
    """The track's name, else its General MIDI instrument's; made unique with a number."""
    import pretty_midi

    base = name or ("Drums" if is_drum else pretty_midi.program_to_instrument_name(program))
    out, i = base, 2
    while out in taken:
        out, i = f"{base} {i}", i + 1
    taken.add(out)
    return out


def _instrument(program: int, is_drum: bool, name: str):
    from music21 import instrument

    if is_drum:
        inst = instrument.Percussion()
    else:
        try:
            inst = instrument.instrumentFromMidiProgram(program)
        except instrument.InstrumentException:
            inst = instrument.Instrument()
        inst.midiProgram = program
    inst.partName = name
    return inst


def _key_of(sharps: int, minor: bool):
    from music21 import key

    return key.KeySignature(int(sharps)).asKey("minor" if minor else "major")


def build_score(notes: TickNotes, name: str, quantize: int | None = None, title: str | None = None):
    """A music21 Score of a file's notes (see the module docstring); (score, ScoreSummary
    without its path)."""
    from music21 import chord, metadata, meter, note, stream, tempo

    low = notes.pitch < LOWEST_PITCH
    if low.any():
        raise MidigenError(
            f"{name}: {int(low.sum())} notes below C0 (MIDI pitch {LOWEST_PITCH}; the lowest is "
            f"{int(notes.pitch.min())}), which MusicXML cannot write: its octaves start at 0"
        )
    on, end, per_quarter, moved = grid_notes(notes, name, quantize)

    def quarters(pos: int) -> Fraction:
        return Fraction(int(pos), per_quarter)

    meters, keys = _meta_events(notes, per_quarter)
    score = stream.Score()
    score.metadata = metadata.Metadata(title=title or Path(name).stem)
    track_names, taken, parts = _track_names(notes), set(), []
    for track in np.unique(notes.track):
        sel = np.flatnonzero(notes.track == track)
        program, is_drum = int(notes.program[sel[0]]), bool(notes.is_drum[sel[0]])
        part = stream.Part()
        part.partName = _part_name(track_names[track] if track < len(track_names) else "", program, is_drum, taken)
        part.insert(0, _instrument(program, is_drum, part.partName))
        for q, n, d in meters:
            part.insert(q, meter.TimeSignature(f"{n}/{d}"))
        # notes that start and end together are one chord; a pitch struck twice at once is one note
        groups: dict[tuple[int, int], set[int]] = {}
        for i in sel:
            groups.setdefault((int(on[i]), int(end[i])), set()).add(int(notes.pitch[i]))
        for (start, stop), pitches in sorted(groups.items()):
            element = note.Note(next(iter(pitches))) if len(pitches) == 1 else chord.Chord(sorted(pitches))
            element.quarterLength = quarters(stop - start)
            part.insert(quarters(start), element)
        parts.append(part)
    if not parts:  # a silent piece (a model may write one): one part with a bar's rest
        part = stream.Part()
        part.partName = "Piano"
        q, n, d = meters[0]
        part.insert(q, meter.TimeSignature(f"{n}/{d}"))
        part.insert(q, note.Rest(quarterLength=Fraction(4 * n, d)))
        parts.append(part)
    pitched = [p for p, drum in zip(parts, _part_is_drum(notes), strict=True) if not drum]
    key_source, key_name = "", ""
    if keys:
        key_source = "file"
        for part in pitched:
            for q, k, m in keys:
                part.insert(q, _key_of(k, m))
        key_name = str(_key_of(keys[0][1], keys[0][2]))
    elif pitched:
        key_source = "estimated"
        whole = stream.Score(pitched)
        estimated = whole.analyze("key")
        for part in pitched:
            part.insert(0, _key_of(estimated.sharps, estimated.mode == "minor"))
        key_name = str(estimated)
    tempos = notes.score.tempos.numpy()
    if tempos["time"].size and parts:
        parts[0].insert(0, tempo.MetronomeMark(number=round(6e7 / float(tempos["mspq"][0]), 2)))
    for part in parts:
        score.insert(0, part)
    summary = ScoreSummary(
        path=Path(),
        parts=[p.partName for p in parts],
        notes=int(notes.pitch.size),
        key=key_name,
        key_source=key_source,
        meters=[f"{n}/{d}" for _, n, d in meters],
        quantized=moved,
    )
    return score, summary


def _meta_events(notes: TickNotes, per_quarter: int) -> tuple[list[tuple], list[tuple]]:
    """(quarter, numerator, denominator) of each time signature (4/4 at 0 when there is none) and
    (quarter, sharps, minor) of each key signature, on the notes' grid; the last of several at
    one time wins."""
    tpq = notes.tpq

    def at(tick: int) -> Fraction:
        return Fraction(int((2 * int(tick) * per_quarter + tpq) // (2 * tpq)), per_quarter)

    ts = notes.score.time_signatures.numpy()
    meters = {
        at(t): (at(t), int(n), int(d)) for t, n, d in zip(ts["time"], ts["numerator"], ts["denominator"], strict=True)
    }
    ks = notes.score.key_signatures.numpy()
    keys = {at(t): (at(t), int(k), bool(m)) for t, k, m in zip(ks["time"], ks["key"], ks["tonality"], strict=True)}
    return list(meters.values()) or [(Fraction(0), 4, 4)], [v for v in keys.values() if -7 <= v[1] <= 7]


def _part_is_drum(notes: TickNotes) -> list[bool]:
    drums = [bool(notes.is_drum[np.flatnonzero(notes.track == t)[0]]) for t in np.unique(notes.track)]
    return drums or [False]


def require_beat_grid(rep, what: str) -> int:
    """The beat grid (steps per quarter note) of a representation's MIDI output; ParamsError
    naming `what` when it has none (event tokens timed in seconds)."""
    grid = rep.beat_grid()
    if grid is None:
        raise ParamsError(
            f"{what}: {rep.name} tokens timed in seconds (preprocess.time_unit = seconds) lie on no beat grid, so no "
            "score can be written of them; train with preprocess.time_unit: beats, or a score-time representation"
        )
    return grid


def write_musicxml(
    midi: str | os.PathLike | Any, out_path: str | os.PathLike, quantize: int | None = None, title: str | None = None
) -> ScoreSummary:
    """Write a MIDI file (a path or a pretty_midi.PrettyMIDI) as an uncompressed MusicXML score.

    quantize: None = the notes must lie on the score grid (else a MidigenError saying how many do
    not); N = snap every onset and end to 1/N of a quarter note first (4 = sixteenth notes).
    title: the score's title (default: the file name without its suffix).
    """
    from music21 import musicxml

    notes, name = _read(midi)
    score, summary = build_score(notes, name, quantize, title)
    out_path = Path(out_path)
    tmp = out_path.with_name(out_path.name + f".tmp{os.getpid()}")
    try:
        data = musicxml.m21ToXml.GeneralObjectExporter(score).parse()
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, out_path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise MidigenError(f"{out_path}: cannot write there ({exc.strerror or exc})") from None
    except musicxml.xmlObjects.MusicXMLExportException as exc:
        raise MidigenError(f"{name}: music21 cannot write this as MusicXML ({exc})") from None
    summary.path = out_path
    return summary


def read_musicxml_notes(path: str | os.PathLike) -> list[tuple[str, int, Fraction, Fraction]]:
    """(part name, MIDI pitch, onset, duration) of every note of a MusicXML file, onsets and
    durations in quarter notes; tied notes are one note. (music21's stripTies misses ties
    between voices of different measures, so the ties are followed here.)"""
    from music21 import converter

    out: list[list] = []
    for part in converter.parse(str(path)).parts:
        name = part.partName or ""
        tied: dict[int, int] = {}  # pitch -> index in out of the note its tie continues
        for element in part.flatten().notes:
            onset, length = Fraction(element.offset), Fraction(element.quarterLength)
            for n in getattr(element, "notes", None) or [element]:
                pitch, tie = int(n.pitch.midi), n.tie.type if n.tie is not None else None
                i = tied.pop(pitch, None)
                if tie in ("continue", "stop") and i is not None and out[i][2] + out[i][3] == onset:
                    out[i][3] += length
                else:
                    out.append([name, pitch, onset, length])
                    i = len(out) - 1
                if tie in ("start", "continue"):
                    tied[pitch] = i
    return [tuple(row) for row in out]
