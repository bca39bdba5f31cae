"""What the score-time representations (notes_chords, pitch_duration) share.

They count musical time, not seconds: a file is read in quarter notes from its start (the tempo
map ignored, see midi_io.read_notes(tempo_bpm=...)) and put on a grid of sixteenth notes. Inside
midigen their notes are timed as if played at SCORE_TEMPO_BPM, so one grid step is always
STEP_S seconds; the generate stage re-times them to generate.tempo when it writes MIDI.
"""

from __future__ import annotations

import numpy as np

from midigen.data.midi_io import NOTE_DTYPE, empty_notes
from midigen.representations.base import Representation

STEPS_PER_QUARTER = 4  # sixteenth notes
SCORE_TEMPO_BPM = 120.0
STEP_S = 60.0 / SCORE_TEMPO_BPM / STEPS_PER_QUARTER  # 0.125 s
DEFAULT_VELOCITY = 100

PITCH_CLASS_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def pitch_name(pitch: int) -> str:
    """MIDI pitch -> scientific name with sharps: 60 -> C4, 79 -> G5."""
    return f"{PITCH_CLASS_NAMES[pitch % 12]}{pitch // 12 - 1}"


class ScoreTimeRepresentation(Representation):
    """A Representation whose tokens count sixteenth-note steps of musical time."""

    score_tempo_bpm = SCORE_TEMPO_BPM
    #: one grid step in seconds at SCORE_TEMPO_BPM (preprocess rejects pieces shorter than this)
    time_step = STEP_S

    def __init__(self, vocab: list[str], pitch_min: int, pitch_max: int):
        if not 0 <= pitch_min <= pitch_max <= 127:
            raise ValueError(f"pitch range {pitch_min}..{pitch_max} is not inside 0..127")
        self.pitch_min = int(pitch_min)
        self.pitch_max = int(pitch_max)
        super().__init__(vocab)

    def beat_grid(self) -> int:
        return STEPS_PER_QUARTER

    def grid_notes(self, notes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(onset_step, offset_step, pitch) of the notes inside the pitch range, rounded to the
        nearest step (halves up); a note shorter than half a step still lasts one step."""
        notes = notes[(notes["pitch"] >= self.pitch_min) & (notes["pitch"] <= self.pitch_max)]
        on = np.maximum(np.floor(notes["start_s"] / STEP_S + 0.5).astype(np.int64), 0)
        off = np.maximum(np.floor(notes["end_s"] / STEP_S + 0.5).astype(np.int64), on + 1)
        return on, off, notes["pitch"].astype(np.int64)

    @staticmethod
    def notes_from_steps(rows: list[tuple[int, int, int]]) -> np.ndarray:
        """(onset_step, offset_step, pitch) rows -> notes (NOTE_DTYPE, seconds at SCORE_TEMPO_BPM)."""
        if not rows:
            return empty_notes()
        arr = np.asarray(rows, dtype=np.int64)
        notes = np.zeros(arr.shape[0], dtype=NOTE_DTYPE)
        notes["start_s"] = arr[:, 0] * STEP_S
        notes["end_s"] = arr[:, 1] * STEP_S
        notes["pitch"] = arr[:, 2]
        notes["velocity"] = DEFAULT_VELOCITY
        return notes[np.lexsort((notes["pitch"], notes["start_s"]))]
