"""GrooVAE's drum representation (Gillick et al. 2019, Magenta's GrooveConverter): at every
16th-note step and for each of Magenta's 9 drum classes (the `drums` ones), a hit, its velocity
and its timing offset, so a pattern keeps how it was played and not only what was played.

One id per (step, class) cell, step-major (`cells_per_step` = 9, so a 4-bar window is
64 x 9 = 576 ids):

- id 0 = no hit;
- id 1 + v * 65 + (q + 32) = a hit of MIDI velocity v (0..127) whose onset lies q/64 of a step
  from the grid step (q in -32..32; negative = early, positive = late / laid back). Velocity 0
  is a hit of unknown loudness: what the humanize transform feeds the encoder.

Onsets are put on the nearest step (halves round up), so offsets lie in [-0.5, 0.5) steps; of
several hits of one class in one step the loudest is kept, as in Magenta. Decoding writes every
hit one step long at its shifted onset and velocity, on MIDI channel 10. Token names:
`HIT_V100_T+05` = velocity 100, 5/64 of a step late.

Input transforms (what the encoder sees when the model learns a task; `train.input_transform`):
`humanize` zeroes every velocity and offset (quantized drums in, the played groove out), `tapify`
folds each step's loudest hit onto one channel (a tapped rhythm in, a full kit out).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from midigen.data.midi_io import NOTE_DTYPE, empty_notes
from midigen.errors import MidiError
from midigen.representations.grid import (
    _CLASS_PITCH,
    _PITCH_TO_CLASS,
    DEFAULT_TEMPO_BPM,
    DRUM_CLASSES,
    NUM_DRUM_CLASSES,
    DrumGrid,
    GridPiece,
    GridRepresentation,
)

#: offsets are stored in 1/OFFSET_RES of a step
OFFSET_RES = 64
MAX_Q = OFFSET_RES // 2
N_Q = 2 * MAX_Q + 1
VELOCITIES = 128
NO_HIT = 0
#: Magenta's tapify puts every tap on class index 3 (the open hi-hat's channel)
TAP_CLASS = 3
INPUT_TRANSFORMS = ("none", "humanize", "tapify")


def cell_ids(hit: np.ndarray, velocity: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Cell ids (uint16) of hits (bool), MIDI velocities (0..127, clipped) and onset offsets in
    steps (clipped to +-0.5, stored to the nearest 1/64 step); 0 where there is no hit."""
    v = np.clip(np.rint(velocity), 0, VELOCITIES - 1).astype(np.int64)
    q = np.clip(np.rint(np.asarray(shift, dtype=np.float64) * OFFSET_RES), -MAX_Q, MAX_Q).astype(np.int64)
    return np.where(hit, 1 + v * N_Q + q + MAX_Q, NO_HIT).astype(np.uint16)


def cell_values(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hit bool, MIDI velocity int, offset in steps float) of cell ids; ids outside the
    vocabulary count as no hit."""
    ids = np.asarray(ids, dtype=np.int64)
    hit = (ids > NO_HIT) & (ids < 1 + VELOCITIES * N_Q)
    code = np.where(hit, ids - 1, 0)
    velocity = np.where(hit, code // N_Q, 0)
    shift = np.where(hit, (code % N_Q - MAX_Q) / OFFSET_RES, 0.0)
    return hit, velocity, shift


def quantize(windows: np.ndarray, velocity: int) -> np.ndarray:
    """The same hits, every one on its grid step at one velocity."""
    windows = np.asarray(windows)
    hit = cell_values(windows)[0]
    return cell_ids(hit, np.full(hit.shape, velocity), np.zeros(hit.shape)).astype(windows.dtype)


def humanize_input(windows: np.ndarray) -> np.ndarray:
    """Every hit with velocity 0 and offset 0: the quantized pattern the humanize model reads."""
    return quantize(windows, 0)


def tapify_input(windows: np.ndarray) -> np.ndarray:
    """Per step the loudest hit alone, moved to TAP_CLASS (Magenta's tapify): what a tapped
    rhythm looks like. Windows (n, T * 9) of cell ids."""
    windows = np.asarray(windows)
    cells = windows.reshape(windows.shape[0], -1, NUM_DRUM_CLASSES)
    hit, velocity, _ = cell_values(cells)
    loudest = np.argmax(np.where(hit, velocity + 1, 0), axis=-1)
    out = np.zeros_like(cells)
    out[..., TAP_CLASS] = np.take_along_axis(cells, loudest[..., None], axis=-1)[..., 0]
    return out.reshape(windows.shape)


def input_transform(name: str):
    """The function of train.input_transform `name` (windows -> what the encoder reads)."""
    return {"none": None, "humanize": humanize_input, "tapify": tapify_input}[name]


class GrooveGrid(GridRepresentation):
    """Hit, velocity and offset per step and drum class; see the module docstring. Reads the
    drum tracks (channel 10) of a file, merged, like `drums`; meters as `drums`."""

    name = "groove"
    drum_track = True
    window_content = "drum hits"
    class_names = tuple(name for name, _ in DRUM_CLASSES)
    cells_per_step = NUM_DRUM_CLASSES
    head = "groove"
    used_notes = DrumGrid.used_notes
    line_steps = DrumGrid.line_steps
    _keep = DrumGrid._keep

    def __init__(self, steps_per_quarter: int = 4, bars: int = 4, hop_bars: int = 1):
        vocab = ["NO_HIT"] + [f"HIT_V{v}_T{q:+03d}" for v in range(VELOCITIES) for q in range(-MAX_Q, MAX_Q + 1)]
        super().__init__(vocab, steps_per_quarter, bars, hop_bars)

    def encode(self, piece: GridPiece) -> np.ndarray:
        """The piece's drum hits as cell ids from step 0 to its last bar line: (steps * 9,)."""
        drums = self.used_notes(piece)
        if drums.shape[0] == 0:
            raise MidiError(piece.path, "no drum track")
        self._check_meter(piece)
        onset, _ = self._steps(piece, drums)
        cls = _PITCH_TO_CLASS[drums["pitch"].astype(np.int64)]
        known = cls >= 0
        grid = np.zeros(self._grid_length(int(onset.max())) * NUM_DRUM_CLASSES, dtype=np.uint16)
        cell = onset[known] * NUM_DRUM_CLASSES + cls[known]
        velocity, shift = drums["velocity"][known].astype(np.int64), drums["shift"][known]
        # the loudest hit of a cell wins: sorted by cell then velocity, the last of each cell
        order = np.lexsort((velocity, cell))
        cell, velocity, shift = cell[order], velocity[order], shift[order]
        last = np.append(cell[1:] != cell[:-1], True) if cell.size else np.zeros(0, dtype=bool)
        grid[cell[last]] = cell_ids(np.ones(int(last.sum()), dtype=bool), velocity[last], shift[last])
        return grid

    def tap_piece(self, piece: GridPiece) -> GridPiece:
        """The piece with every note of every track (pitched ones too) as a hit of TAP_CLASS: a
        tapped rhythm to read with windows() and feed through tapify_input."""
        notes = piece.notes.copy()
        notes["is_drum"] = True
        notes["pitch"] = _CLASS_PITCH[TAP_CLASS]
        return dataclasses.replace(piece, notes=notes)

    def cells(self, windows: np.ndarray) -> np.ndarray:
        """(n, T, 9) cell ids of windows (n, T * 9); a trailing partial step is dropped."""
        windows = np.asarray(windows, dtype=np.int64)
        windows = windows.reshape(-1, windows.shape[-1]) if windows.ndim > 1 else windows[None]
        steps = windows.shape[1] // NUM_DRUM_CLASSES
        return windows[:, : steps * NUM_DRUM_CLASSES].reshape(windows.shape[0], steps, NUM_DRUM_CLASSES)

    def class_hits(self, windows: np.ndarray) -> np.ndarray:
        return cell_values(self.cells(windows))[0]

    def onsets(self, windows: np.ndarray) -> np.ndarray:
        return self.class_hits(windows).any(axis=-1)

    def hit_counts(self, windows: np.ndarray) -> np.ndarray:
        return self.class_hits(windows).sum(axis=-1)

    def step_ids(self, windows: np.ndarray) -> np.ndarray:
        """The `drums` id of every step (its classes hit as bits, kick = bit 0)."""
        return (self.class_hits(windows).astype(np.int64) << np.arange(NUM_DRUM_CLASSES)).sum(axis=-1)

    def features(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hit, MIDI velocity, offset in steps), each (n, T, 9)."""
        return cell_values(self.cells(windows))

    def decode_notes(self, ids: np.ndarray, tempo_bpm: float = DEFAULT_TEMPO_BPM, program: int = 0) -> np.ndarray:
        """Cell ids -> drum hits: each hit becomes its class's first pitch, one step long from its
        shifted onset (never before 0), at its velocity (at least 1), is_drum True, program 0."""
        hit, velocity, shift = cell_values(self.cells(np.asarray(ids).reshape(-1)))
        _, step, cls = np.nonzero(hit)
        if step.size == 0:
            return empty_notes()
        dt = self.step_s(tempo_bpm)
        notes = np.zeros(step.shape[0], dtype=NOTE_DTYPE)
        notes["start_s"] = np.maximum(step + shift[0, step, cls], 0.0) * dt
        notes["end_s"] = notes["start_s"] + dt
        notes["pitch"] = _CLASS_PITCH[cls]
        notes["velocity"] = np.maximum(velocity[0, step, cls], 1)
        notes["program"] = 0
        notes["is_drum"] = True
        return notes[np.lexsort((notes["pitch"], notes["start_s"]))]
