"""Tiny built-in datasets (`data.source = builtin:NAME`), written as MIDI by the ingest stage,
for smoke runs and tests that need no corpus.

- ``nabiya``: the Korean children's song 나비야 ("Butterfly"), the 54-note melody seed 003
  trains on, in its notation: a pitch letter and a note value (`g8` = G eighth, `e4` = E quarter),
  in octave 5 as that seed writes it, in C major at its 130 quarter notes per minute, piano.
"""

from __future__ import annotations

import numpy as np

from midigen.data.midi_io import make_notes

NABIYA: tuple[str, ...] = (
    *("g8", "e8", "e4", "f8", "d8", "d4", "c8", "d8", "e8", "f8", "g8", "g8", "g4"),
    *("g8", "e8", "e8", "e8", "f8", "d8", "d4", "c8", "e8", "g8", "g8", "e8", "e8", "e4"),
    *("d8", "d8", "d8", "d8", "d8", "e8", "f4", "e8", "e8", "e8", "e8", "e8", "f8", "g4"),
    *("g8", "e8", "e4", "f8", "d8", "d4", "c8", "e8", "g8", "g8", "e8", "e8", "e4"),
)
NABIYA_TEMPO_BPM = 130.0
NABIYA_KEY = "C"
NABIYA_OCTAVE = 5

_LETTER_PC = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}


def seed_melody_notes(tokens: tuple[str, ...], tempo_bpm: float, octave: int) -> np.ndarray:
    """Seed-003 tokens (letter + note value) -> notes played one after another, in seconds."""
    pitches, quarters = [], []
    for tok in tokens:
        pitches.append(12 * (octave + 1) + _LETTER_PC[tok[0]])
        quarters.append(4.0 / int(tok[1:]))  # 8 = an eighth = half a quarter
    ends_q = np.cumsum(quarters)
    sec_per_quarter = 60.0 / tempo_bpm
    return make_notes((ends_q - quarters) * sec_per_quarter, ends_q * sec_per_quarter, pitches, velocity=100)


#: name -> (notes, tempo in quarter notes per minute, key)
BUILTIN = {"nabiya": (lambda: seed_melody_notes(NABIYA, NABIYA_TEMPO_BPM, NABIYA_OCTAVE), NABIYA_TEMPO_BPM, NABIYA_KEY)}
