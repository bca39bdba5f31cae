"""Fixed-grid representations for MusicVAE: one token per 16th-note step, windows of whole bars.

Unlike the event tokens (`events.py`), a grid token stands for a span of musical time, so pieces
are read in ticks and put on a grid of `steps_per_quarter` steps per quarter note (4 = 16ths)
counted from the start of the file; bar lines fall every `4 * steps_per_quarter` steps. Tempo
changes therefore do not move anything on the grid, and decoding needs a tempo to give seconds.

Bars are 4/4 (a file without a time signature counts as 4/4), as in Magenta's MusicVAE drum and
2-bar/16-bar melody presets: other meters would put bar lines where the windows do not expect
them. Cut time (2/2) has the same bar lines and is accepted; melodies also accept 2/4 (two
notated bars per grid bar), the meter of many folk tunes. There is no <PAD>/<BOS>/<EOS>: every window has the same
length and every id is a step.

Units: `*_step` values are integer grid steps (16ths by default), `tempo_bpm` is quarter notes
per minute, `*_s` values are seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from midigen.data.midi_io import NOTE_DTYPE, empty_notes, read_tick_notes, write_midi
from midigen.errors import MidiError
from midigen.representations.base import OutputContext, Representation, _limits, check_duration

#: One row per note of a `GridPiece`, times in grid steps from the start of the file.
GRID_NOTE_DTYPE = np.dtype(
    [
        ("onset_step", "i8"),
        ("offset_step", "i8"),
        ("pitch", "i2"),
        ("velocity", "i2"),
        ("program", "i2"),
        ("is_drum", "?"),
        ("track", "i2"),
        # where the onset really is, in steps from onset_step: -0.5 (early) .. < 0.5 (late)
        ("shift", "f4"),
    ]
)

#: One row per time-signature event, its position in grid steps.
TIME_SIGNATURE_DTYPE = np.dtype([("step", "i8"), ("numerator", "i2"), ("denominator", "i2")])

DEFAULT_TEMPO_BPM = 120.0
DEFAULT_VELOCITY = 100


@dataclass(frozen=True)
class GridPiece:
    """The notes of one MIDI file on a step grid, plus what is needed to cut bars.

    notes: GRID_NOTE_DTYPE rows sorted by onset step then pitch; offset_step > onset_step always.
    time_signatures: TIME_SIGNATURE_DTYPE rows in file order (empty: no meta event in the file).
    tempo_bpm: the first tempo of the file in quarter notes per minute (120 when it has none).
    """

    path: str
    notes: np.ndarray
    time_signatures: np.ndarray
    tempo_bpm: float
    steps_per_quarter: int


def _ticks_to_steps(ticks: np.ndarray, steps_per_quarter: int, tpq: int) -> np.ndarray:
    """round(tick * steps_per_quarter / tpq) in exact integer arithmetic, halves rounded up."""
    ticks = np.asarray(ticks, dtype=np.int64)
    return (2 * ticks * steps_per_quarter + tpq) // (2 * tpq)


def read_grid_notes(path: str | Path, steps_per_quarter: int = 4, max_notes: int | None = None) -> GridPiece:
    """Every note of every track of a MIDI file on a grid of `steps_per_quarter` steps per quarter.

    Onsets and offsets are rounded to the nearest step; a note shorter than half a step still
    lasts one step. Raises MidiError with the reason when the file cannot be parsed, has an
    invalid ticks-per-quarter, or holds more than max_notes notes.
    """
    t = read_tick_notes(path, max_notes)
    score, tpq = t.score, t.tpq
    notes = np.zeros(t.start_tick.shape[0], dtype=GRID_NOTE_DTYPE)
    onset = _ticks_to_steps(t.start_tick, steps_per_quarter, tpq)
    notes["onset_step"] = onset
    notes["offset_step"] = np.maximum(_ticks_to_steps(t.end_tick, steps_per_quarter, tpq), onset + 1)
    notes["pitch"] = t.pitch
    notes["velocity"] = t.velocity
    notes["program"] = t.program
    notes["is_drum"] = t.is_drum
    notes["track"] = t.track
    # onset_step rounds halves up, so the exact position lies in [onset - 0.5, onset + 0.5)
    notes["shift"] = (t.start_tick.astype(np.int64) * steps_per_quarter - onset * tpq) / tpq
    notes = notes[np.lexsort((notes["pitch"], notes["onset_step"]))]

    ts = score.time_signatures.numpy()
    sigs = np.zeros(ts["time"].shape[0], dtype=TIME_SIGNATURE_DTYPE)
    sigs["step"] = _ticks_to_steps(ts["time"], steps_per_quarter, tpq)
    sigs["numerator"] = ts["numerator"]
    sigs["denominator"] = ts["denominator"]

    tempos = score.tempos.numpy()
    tempo_bpm = 60e6 / float(tempos["mspq"][0]) if tempos["mspq"].shape[0] and tempos["mspq"][0] > 0 else None
    return GridPiece(
        path=str(path),
        notes=notes,
        time_signatures=sigs,
        tempo_bpm=tempo_bpm or DEFAULT_TEMPO_BPM,
        steps_per_quarter=int(steps_per_quarter),
    )


class GridRepresentation(Representation):
    """The interface the grid representations share: pieces -> windows of step ids -> notes.

    The vocabulary is fixed by the params alone; ids are uint16 like the token store's. A grid
    representation also knows its window shape (`bars`, cut every `hop_bars` bars), so the token
    store holds each piece as its windows back to back and a model reads (n, seq_len) blocks.
    A step is `cells_per_step` ids (1 here; groove: one per drum class), step-major.
    """

    name: str = ""
    layout = "windows"
    info_keys = ("n_notes", "duration_s", "windows", "tempo_bpm")
    #: preprocess.key c does not apply: drum classes have no key, and a melody grid is read on
    #: its own path (read_piece)
    keyed = False
    #: a silent pattern is still written as a drum track (drums) or a pitched one (melody)
    drum_track: bool = False
    #: what a window must hold to be kept, for the reason given when a file has none
    window_content: str = ""
    #: names of the classes class_hits() returns per step (empty: the ids have no classes)
    class_names: tuple[str, ...] = ()
    #: ids per grid step (one per step, or one per drum class of a step: groove)
    cells_per_step: int = 1
    #: what a model predicts per step: "categorical" (one id of the vocabulary) or "groove" (per
    #: drum class a hit, a velocity and an offset); MusicVAE picks its output head from it
    head: str = "categorical"

    def __init__(self, vocab: list[str], steps_per_quarter: int = 4, bars: int = 4, hop_bars: int = 1):
        if steps_per_quarter < 1:
            raise ValueError(f"steps_per_quarter must be >= 1, got {steps_per_quarter}")
        if bars < 1 or hop_bars < 1:
            raise ValueError(f"bars and hop_bars must be >= 1, got {bars} and {hop_bars}")
        super().__init__(vocab)
        self.steps_per_quarter = int(steps_per_quarter)
        #: a grid bar is always four quarters (see `meters`)
        self.steps_per_bar = 4 * self.steps_per_quarter
        self.bars, self.hop_bars = int(bars), int(hop_bars)

    @classmethod
    def from_params(cls, preprocess: dict[str, Any]) -> GridRepresentation:
        return cls(
            steps_per_quarter=preprocess["steps_per_quarter"], bars=preprocess["bars"], hop_bars=preprocess["hop_bars"]
        )

    def beat_grid(self) -> int:
        return self.steps_per_quarter  # groove offsets (microtiming) are snapped to it in a score

    @property
    def steps(self) -> int:
        """Steps per window."""
        return self.bars * self.steps_per_bar

    @property
    def seq_len(self) -> int:
        """Ids per window: steps times cells_per_step."""
        return self.steps * self.cells_per_step

    @property
    def num_classes(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    def config(self) -> dict[str, Any]:
        """The params that rebuild this representation (stored with data and checkpoints)."""
        return {
            "name": self.name,
            "steps_per_quarter": self.steps_per_quarter,
            "bars": self.bars,
            "hop_bars": self.hop_bars,
        }

    def step_s(self, tempo_bpm: float) -> float:
        """Length of one grid step in seconds at tempo_bpm quarter notes per minute."""
        return 60.0 / float(tempo_bpm) / self.steps_per_quarter

    def read_piece(self, path: str | Path, limits: dict[str, Any] | None = None) -> GridPiece:
        """Every note of a MIDI file on this grid (the drum policy does not apply: a grid reads
        the tracks it models, see used_notes), within `limits` (max_notes, max_duration_s and
        max_memory_mb; default: their defaults). MidiError before any grid is built when its grids
        would take more than max_memory_mb: a tiny file can ask for an enormous grid (one tick per
        quarter and a 2^28-tick gap), or when it lasts longer than max_duration_s."""
        limits = _limits(limits)
        piece = read_grid_notes(path, self.steps_per_quarter, limits["max_notes"])
        used = self.used_notes(piece)
        duration = float(used["offset_step"].max()) * self.step_s(piece.tempo_bpm) if used.shape[0] else 0.0
        check_duration(str(path), duration, limits)
        self.check_size(piece, limits["max_memory_mb"])
        return piece

    def line_steps(self, piece: GridPiece) -> np.ndarray:
        """The length in steps of every id grid windows() would build (one per line), computed
        from the note table alone."""
        raise NotImplementedError

    def work_bytes(self, piece: GridPiece) -> int:
        """An upper estimate of the memory windows() needs for the piece: per step of every line
        its ids and the index arrays built beside them, per window its ids and gather indices."""
        steps = self.line_steps(piece).astype(np.int64)
        hop = self.hop_bars * self.steps_per_bar
        n_windows = np.maximum(0, (steps - self.steps) // hop + 1)
        return int((steps * 32 * self.cells_per_step + n_windows * self.seq_len * 20).sum())

    def check_size(self, piece: GridPiece, max_memory_mb: float) -> None:
        """MidiError when the piece's grids would take more than max_memory_mb."""
        need_mb = self.work_bytes(piece) / 1e6
        if need_mb > max_memory_mb:
            steps = int(self.line_steps(piece).max())
            raise MidiError(
                piece.path,
                f"its grid would be {steps:,} steps ({steps // self.steps_per_bar:,} bars) and take about "
                f"{need_mb:,.0f} MB, over preprocess.max_memory_mb = {max_memory_mb:g} (an absurd tick gap or tempo?)",
            )

    def used_notes(self, piece: GridPiece) -> np.ndarray:
        """The notes of a piece this representation models."""
        raise NotImplementedError

    def encode(self, piece: GridPiece) -> np.ndarray:
        """The whole piece as one id per step from step 0 to its last bar line (uint16)."""
        raise NotImplementedError

    def tokenize_file(self, path: str, limits: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        """A file's windows, flattened (the store holds each piece as its windows back to back),
        and its index fields; MidiError when there is no usable window."""
        piece = self.read_piece(path, limits)  # the size checks come before any grid is built
        used = self.used_notes(piece)
        if piece.notes.shape[0] == 0:
            raise MidiError(path, "no notes")
        duration = float(used["offset_step"].max()) * self.step_s(piece.tempo_bpm) if used.shape[0] else 0.0
        windows = self.windows(piece)  # MidiError when there is no drum track / melody, or not 4/4
        if windows.shape[0] == 0:
            raise MidiError(path, no_window_reason(self, piece))
        info = {
            "n_notes": int(used.shape[0]),
            "duration_s": round(duration, 3),
            "windows": int(windows.shape[0]),
            "tempo_bpm": round(piece.tempo_bpm, 3),
        }
        return windows.reshape(-1), info

    def windows(self, piece: GridPiece, bars: int | None = None, hop_bars: int | None = None) -> np.ndarray:
        """Windows of `bars` bars starting on bar lines every `hop_bars` bars: (n, bars * steps_per_bar).

        bars and hop_bars default to the representation's own. Only windows that lie inside the
        piece's bars are cut (the last bar is the one holding the last event; no silent padding
        past it). Windows without enough content are skipped.
        """
        return self.windows_with_starts(piece, bars, hop_bars)[0]

    def windows_with_starts(
        self, piece: GridPiece, bars: int | None = None, hop_bars: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """As windows(), plus the bar (counted from 0) where each kept window starts."""
        bars = self.bars if bars is None else bars
        hop_bars = self.hop_bars if hop_bars is None else hop_bars
        if bars < 1 or hop_bars < 1:
            raise ValueError(f"bars and hop_bars must be >= 1, got {bars} and {hop_bars}")
        width, cells = bars * self.steps_per_bar, self.cells_per_step
        windows, bar_starts = [], []
        for grid, line in self._lines(piece):
            starts = np.arange(0, grid.shape[0] // cells - width + 1, hop_bars * self.steps_per_bar)
            if starts.size == 0:
                continue
            out = self._window_starts(grid[starts[:, None] * cells + np.arange(width * cells)], line, starts)
            keep = self._keep(out)
            windows.append(out[keep])
            bar_starts.append(starts[keep] // self.steps_per_bar)
        if not windows:
            return np.zeros((0, width * cells), dtype=np.uint16), np.zeros(0, dtype=np.int64)
        return np.concatenate(windows), np.concatenate(bar_starts)

    def _lines(self, piece: GridPiece) -> list[tuple[np.ndarray, Any]]:
        """The id grids windows are cut from, each with what _window_starts needs: one per piece
        (drums) or one per track (melodies)."""
        return [(self.encode(piece), None)]

    def n_bars(self, piece: GridPiece) -> int:
        """Bars of the piece as the windows see it (through the bar holding its last event)."""
        return self.encode(piece).shape[0] // (self.steps_per_bar * self.cells_per_step)

    def decode_notes(self, ids: np.ndarray, tempo_bpm: float = DEFAULT_TEMPO_BPM, program: int = 0) -> np.ndarray:
        """Any id sequence -> notes (midigen.data.midi_io.NOTE_DTYPE, seconds at tempo_bpm)."""
        raise NotImplementedError

    def decode(self, ids: np.ndarray, context: OutputContext | None = None) -> np.ndarray:
        """Any id sequence -> notes at context.tempo_bpm (default 120), pitched notes on
        context.program (default 0)."""
        context = context or OutputContext()
        program = 0 if context.program is None else context.program
        return self.decode_notes(ids, context.tempo_bpm or DEFAULT_TEMPO_BPM, program)

    def write_midi(self, ids: np.ndarray, path: str | Path, context: OutputContext | None = None) -> np.ndarray:
        """A 4/4 file at the context's tempo that lasts the whole window, rests at the end included."""
        context = context or OutputContext()
        tempo = context.tempo_bpm or DEFAULT_TEMPO_BPM
        notes = self.decode(ids, context)
        ids = np.asarray(ids).reshape(-1)
        write_midi(
            notes,
            path,
            tempo,
            empty_track=(0, self.drum_track),
            time_signature=(4, 4),
            length_s=ids.shape[0] // self.cells_per_step * self.step_s(tempo),
        )
        return notes

    # what the rhythm metrics read
    def onsets(self, windows: np.ndarray) -> np.ndarray:
        """(n, T) bool: the steps where something starts."""
        raise NotImplementedError

    def hit_counts(self, windows: np.ndarray) -> np.ndarray:
        """(n, T) int: how many things start at each step."""
        return self.onsets(windows).astype(np.int64)

    def class_hits(self, windows: np.ndarray) -> np.ndarray:
        """(n, T, len(class_names)) bool: which classes each step hits."""
        return np.zeros((*np.shape(windows), 0), dtype=bool)

    def step_ids(self, windows: np.ndarray) -> np.ndarray:
        """(n, T): one id per step, what step accuracy and Hamming distances compare (the ids
        themselves here; groove: the drums id of the step's hits, velocities left out)."""
        return np.asarray(windows, dtype=np.int64)

    # hooks for windows()
    def _window_starts(self, windows: np.ndarray, line: Any, starts: np.ndarray) -> np.ndarray:
        return windows

    def _keep(self, windows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    #: meters accepted as they are: a grid bar is always four quarter notes, so 2/2 (cut time)
    #: has the same bar lines as 4/4, and in 2/4 a grid bar holds two notated bars
    meters: frozenset[tuple[int, int]] = frozenset({(4, 4), (2, 2)})

    def _check_meter(self, piece: GridPiece) -> None:
        """MidiError unless every time signature is one of `meters` and every change of meter
        starts on a grid bar line (no time signature counts as 4/4).

        The bar named in the reason counts grid bars (four quarters) from 1.
        """
        sigs = piece.time_signatures
        grid_bar = 4 * piece.steps_per_quarter
        previous = None
        for step, num, den in sigs.tolist():
            bar = int(step) // grid_bar + 1
            meter = (int(num), int(den))
            if meter not in self.meters:
                raise MidiError(piece.path, f"not 4/4 (found {num}/{den} at bar {bar})")
            # exporters restate the meter at sections (after a short bar, say): only a change of
            # meter has to fall on a bar line of the grid
            if meter != previous and int(step) % grid_bar:
                raise MidiError(piece.path, f"a change to {num}/{den} off the 4/4 bar lines (bar {bar})")
            previous = meter

    def _steps(self, piece: GridPiece, notes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Onset and offset steps of `notes` on this representation's grid."""
        if piece.steps_per_quarter != self.steps_per_quarter:
            raise ValueError(
                f"piece read with steps_per_quarter={piece.steps_per_quarter}, "
                f"representation expects {self.steps_per_quarter}"
            )
        return notes["onset_step"].astype(np.int64), notes["offset_step"].astype(np.int64)

    def _grid_length(self, last_step: int) -> int:
        """Steps from 0 through the bar holding `last_step`, in whole bars."""
        return (last_step // self.steps_per_bar + 1) * self.steps_per_bar


def no_window_reason(rep: GridRepresentation, piece: GridPiece, bar: int | None = None) -> str:
    """Why a piece that passed the track and meter checks gave no window (at `bar`, from 1)."""
    n_bars = rep.n_bars(piece)
    have = f"the file has {n_bars} bar{'s' * (n_bars != 1)}"
    start = 1 if bar is None else bar
    if start - 1 + rep.bars > n_bars:
        where = "" if bar is None else f" from bar {bar}"
        return f"too short for a {rep.bars}-bar window{where} ({have})"
    content = rep.window_content
    where = "" if bar is None else f" starting at bar {bar}"
    return f"no {rep.bars}-bar window{where} with {content} ({have})"


# -- drums ------------------------------------------------------------------------------------

#: Magenta's 9 drum classes (music_vae's reduced drum map); the first pitch is the one decoded.
DRUM_CLASSES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("kick", (36, 35)),
    ("snare", (38, 27, 28, 31, 32, 33, 34, 37, 39, 40, 56, 65, 66, 75, 85)),
    ("closed_hihat", (42, 44, 54, 68, 69, 70, 71, 73, 78, 80, 22)),
    ("open_hihat", (46, 67, 72, 74, 79, 81, 26)),
    ("low_tom", (45, 29, 41, 43, 61, 64, 84)),
    ("mid_tom", (48, 47, 60, 63, 77, 86, 87)),
    ("high_tom", (50, 30, 62, 76, 83)),
    ("crash", (49, 52, 55, 57, 58)),
    ("ride", (51, 53, 59, 82)),
)
NUM_DRUM_CLASSES = len(DRUM_CLASSES)

#: pitch -> drum class (-1: not a pitch any class uses; such hits are ignored, as in Magenta)
_PITCH_TO_CLASS = np.full(128, -1, dtype=np.int64)
for _cls, (_, _pitches) in enumerate(DRUM_CLASSES):
    _PITCH_TO_CLASS[list(_pitches)] = _cls
_CLASS_PITCH = np.array([p[0] for _, p in DRUM_CLASSES], dtype=np.int16)


class DrumGrid(GridRepresentation):
    """One token per step: the set of drum classes hit at that step as a 9-bit number.

    Token id = sum of 2**class over the classes hit (kick is bit 0, ride bit 8), so id 0 is a
    silent step and there are 512 tokens, named by their bits with bit 0 last:
    `DRUMS_000000101` = kick and closed hi-hat. Only tracks flagged is_drum (MIDI channel 10)
    are read; several drum tracks are merged.
    """

    name = "drums"
    drum_track = True
    window_content = "drum hits"
    class_names = tuple(name for name, _ in DRUM_CLASSES)

    def __init__(self, steps_per_quarter: int = 4, bars: int = 4, hop_bars: int = 1):
        vocab = [f"DRUMS_{i:0{NUM_DRUM_CLASSES}b}" for i in range(2**NUM_DRUM_CLASSES)]
        super().__init__(vocab, steps_per_quarter, bars, hop_bars)

    def used_notes(self, piece: GridPiece) -> np.ndarray:
        return piece.notes[piece.notes["is_drum"]]

    def line_steps(self, piece: GridPiece) -> np.ndarray:
        onset = self.used_notes(piece)["onset_step"]
        return np.array([self._grid_length(int(onset.max()))] if onset.shape[0] else [], dtype=np.int64)

    def onsets(self, windows: np.ndarray) -> np.ndarray:
        return np.asarray(windows, dtype=np.int64) > 0

    def class_hits(self, windows: np.ndarray) -> np.ndarray:
        return ((np.asarray(windows, dtype=np.int64)[..., None] >> np.arange(NUM_DRUM_CLASSES)) & 1).astype(bool)

    def hit_counts(self, windows: np.ndarray) -> np.ndarray:
        return self.class_hits(windows).sum(axis=-1)

    def encode(self, piece: GridPiece) -> np.ndarray:
        drums = self.used_notes(piece)
        if drums.shape[0] == 0:
            raise MidiError(piece.path, "no drum track")
        self._check_meter(piece)
        onset, _ = self._steps(piece, drums)
        cls = _PITCH_TO_CLASS[drums["pitch"].astype(np.int64)]
        grid = np.zeros(self._grid_length(int(onset.max())), dtype=np.uint16)
        known = cls >= 0
        # bitwise OR per step: a class hit twice at one step is still one bit
        np.bitwise_or.at(grid, onset[known], (1 << cls[known]).astype(np.uint16))
        return grid

    def _keep(self, windows: np.ndarray) -> np.ndarray:
        return windows.any(axis=1)

    def decode_notes(self, ids: np.ndarray, tempo_bpm: float = DEFAULT_TEMPO_BPM, program: int = 0) -> np.ndarray:
        """Ids -> drum hits: each class of a step becomes its first pitch, one step long, velocity
        100, is_drum True, program 0 (whatever `program` says). Ids outside 0..511 are ignored."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        valid = (ids > 0) & (ids < self.num_classes)
        steps = np.flatnonzero(valid)
        bits = (ids[steps, None] >> np.arange(NUM_DRUM_CLASSES)) & 1  # (hit steps, classes)
        step_idx, cls = np.nonzero(bits)
        if step_idx.size == 0:
            return empty_notes()
        step = steps[step_idx]
        dt = self.step_s(tempo_bpm)
        notes = np.zeros(step.shape[0], dtype=NOTE_DTYPE)
        notes["start_s"] = step * dt
        notes["end_s"] = (step + 1) * dt
        notes["pitch"] = _CLASS_PITCH[cls]
        notes["velocity"] = DEFAULT_VELOCITY
        notes["program"] = 0
        notes["is_drum"] = True
        return notes[np.lexsort((notes["pitch"], notes["start_s"]))]


# -- melody -----------------------------------------------------------------------------------

NO_EVENT, NOTE_OFF, NOTE_ON_BASE = 0, 1, 2


class MelodyGrid(GridRepresentation):
    """Magenta's monophonic melody: per step NO_EVENT (what sounds goes on, a note or a rest),
    NOTE_OFF, or NOTE_ON_p for p in 0..127 (id 2 + p): 130 tokens.

    Melodies are read per track (Magenta's extractor works per instrument): a track's top line
    keeps, where notes start, the highest pitch starting at that step; a new onset ends the note
    before it; otherwise a note ends at its own offset. windows() cuts every non-drum track.
    Meters: 4/4, 2/2 and 2/4 (see `meters`). In windows(), a note sounding across a
    window's first bar line is struck again at the window's first step, and windows with fewer
    than 2 note-ons are skipped (Magenta drops rest-only and one-note melodies).
    """

    name = "melody"
    #: folk tunes are often in 2/4: two of its bars make one grid bar
    meters = frozenset({(4, 4), (2, 2), (2, 4)})
    window_content = "two or more notes"

    def __init__(self, steps_per_quarter: int = 4, bars: int = 4, hop_bars: int = 1):
        vocab = ["NO_EVENT", "NOTE_OFF"] + [f"NOTE_ON_{p}" for p in range(128)]
        super().__init__(vocab, steps_per_quarter, bars, hop_bars)

    def used_notes(self, piece: GridPiece) -> np.ndarray:
        return piece.notes[~piece.notes["is_drum"]]

    def onsets(self, windows: np.ndarray) -> np.ndarray:
        return np.asarray(windows, dtype=np.int64) >= NOTE_ON_BASE

    def pitch_table(self) -> tuple[np.ndarray, int, int]:
        """NOTE_ON_p stands for pitch p (0..127)."""
        pitch = np.full(len(self.vocab), -1, dtype=np.int64)
        pitch[NOTE_ON_BASE:] = np.arange(128)
        return pitch, 0, 127

    def track_notes(self, piece: GridPiece) -> list[tuple[int, np.ndarray]]:
        """(track, its non-drum notes in the piece's order) per track that has any, the one with
        the most notes first (then file order); one pass over the notes however many tracks.

        Raises MidiError when there is none or the meter is not accepted."""
        notes = self.used_notes(piece)
        if notes.shape[0] == 0:
            raise MidiError(piece.path, "no melodic (non-drum) notes")
        self._check_meter(piece)
        track = notes["track"].astype(np.int64)
        order = np.argsort(track, kind="stable")  # stable: each track keeps the piece's order
        ids, starts, counts = np.unique(track[order], return_index=True, return_counts=True)
        return [(int(ids[i]), notes[order[starts[i] : starts[i] + counts[i]]]) for i in np.lexsort((ids, -counts))]

    def tracks(self, piece: GridPiece) -> list[int]:
        """The tracks with non-drum notes, the one with the most notes first (then file order)."""
        return [t for t, _ in self.track_notes(piece)]

    def line_steps(self, piece: GridPiece) -> np.ndarray:
        notes = self.used_notes(piece)
        if notes.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        track = notes["track"].astype(np.int64)
        order = np.argsort(track, kind="stable")
        _, starts = np.unique(track[order], return_index=True)
        last = np.maximum(notes["onset_step"], notes["offset_step"] - 1)[order].astype(np.int64)
        return (np.maximum.reduceat(last, starts) // self.steps_per_bar + 1) * self.steps_per_bar

    def melody(self, piece: GridPiece, track: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One track's top line as (onset_step, offset_step, pitch) arrays, sorted, never
        overlapping; the track with the most notes by default. As Magenta's melody extractor does
        per instrument: of the notes starting at one step the highest is kept, and a new onset
        ends the note before it."""
        groups = self.track_notes(piece)
        if track is None:
            return self._top_line(piece, groups[0][1])
        for t, notes in groups:
            if t == track:
                return self._top_line(piece, notes)
        raise MidiError(piece.path, f"no melodic notes in track {track}")

    def _top_line(self, piece: GridPiece, notes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        onset, offset = self._steps(piece, notes)
        pitch = notes["pitch"].astype(np.int64)
        # highest pitch per onset step: sort by onset, then pitch descending; keep the first
        order = np.lexsort((-pitch, onset))
        onset, offset, pitch = onset[order], offset[order], pitch[order]
        first = np.ones(onset.shape[0], dtype=bool)
        first[1:] = onset[1:] != onset[:-1]
        onset, offset, pitch = onset[first], offset[first], pitch[first]
        offset[:-1] = np.minimum(offset[:-1], onset[1:])
        return onset, offset, pitch

    def _grid_and_sounding(
        self, piece: GridPiece, track: int | None = None, notes: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One track's ids and, per step, the pitch sounding there (-1 for a rest); the track's
        notes when given, else those of `track` (default: the one with the most notes)."""
        onset, offset, pitch = self.melody(piece, track) if notes is None else self._top_line(piece, notes)
        n = self._grid_length(int(max(onset.max(), offset.max() - 1)))
        grid = np.full(n, NO_EVENT, dtype=np.uint16)
        # an offset that meets the next onset needs no NOTE_OFF: the onset ends the note
        nxt = np.append(onset[1:], np.iinfo(np.int64).max)
        off = offset[(offset < nxt) & (offset < n)]
        grid[off] = NOTE_OFF
        grid[onset] = NOTE_ON_BASE + pitch
        steps = np.arange(n)
        last = np.searchsorted(onset, steps, side="right") - 1  # the latest onset at or before each step
        held = (last >= 0) & (steps < offset[np.maximum(last, 0)])
        sounding = np.where(held, pitch[np.maximum(last, 0)], -1)
        return grid, sounding

    def encode(self, piece: GridPiece) -> np.ndarray:
        """The melody of the track with the most notes (windows() uses every track)."""
        return self._grid_and_sounding(piece)[0]

    def _lines(self, piece: GridPiece) -> list[tuple[np.ndarray, Any]]:
        return [self._grid_and_sounding(piece, notes=notes) for _, notes in self.track_notes(piece)]

    def _window_starts(self, windows: np.ndarray, line: Any, starts: np.ndarray) -> np.ndarray:
        held = line[starts]  # the pitch sounding at each window's first step
        first = windows[:, 0].astype(np.int64)
        # a held note is re-struck; a NOTE_OFF at the first step ends nothing, so it is a rest
        first = np.where((first == NO_EVENT) & (held >= 0), NOTE_ON_BASE + held, first)
        first = np.where(first == NOTE_OFF, NO_EVENT, first)
        windows[:, 0] = first
        return windows

    def _keep(self, windows: np.ndarray) -> np.ndarray:
        return (windows >= NOTE_ON_BASE).sum(axis=1) >= 2

    def decode_notes(self, ids: np.ndarray, tempo_bpm: float = DEFAULT_TEMPO_BPM, program: int = 0) -> np.ndarray:
        """Ids -> notes: a note lasts from its NOTE_ON to the next NOTE_ON or NOTE_OFF (or the end of
        the ids); velocity 100, is_drum False. A NOTE_OFF with nothing sounding and ids outside
        0..129 are ignored."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        ids = np.where((ids >= 0) & (ids < self.num_classes), ids, NO_EVENT)
        events = np.flatnonzero(ids != NO_EVENT)
        on = events[ids[events] >= NOTE_ON_BASE]
        if on.size == 0:
            return empty_notes()
        # each note ends at the next event (NOTE_ON or NOTE_OFF) after its onset
        nxt = np.searchsorted(events, on, side="right")
        end = np.where(nxt < events.shape[0], events[np.minimum(nxt, events.shape[0] - 1)], ids.shape[0])
        dt = self.step_s(tempo_bpm)
        notes = np.zeros(on.shape[0], dtype=NOTE_DTYPE)
        notes["start_s"] = on * dt
        notes["end_s"] = end * dt
        notes["pitch"] = ids[on] - NOTE_ON_BASE
        notes["velocity"] = DEFAULT_VELOCITY
        notes["program"] = program
        notes["is_drum"] = False
        return notes


def grid_from_config(config: dict[str, Any]) -> GridRepresentation:
    """Rebuild a grid representation from its config() (as stored in checkpoints)."""
    from midigen.representations import from_config

    rep = from_config(config)
    if not isinstance(rep, GridRepresentation):
        raise ValueError(f"{config.get('name')!r} is not a grid representation")
    return rep
