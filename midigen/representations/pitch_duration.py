"""Pitch + duration tokens for one melodic line (seed 003's `g8`, `e4`): `G5_8` is a G5 eighth
note, `E5_4.` a dotted-quarter E5, `R_2` a half rest.

Durations are classes on a sixteenth-note grid in musical time (see score_time.py): whole,
half, quarter, eighth, sixteenth and the dotted forms of all but the sixteenth (a dotted
sixteenth is not on a sixteenth grid). The input is reduced to its top line: at each onset the
highest note starting there, unless a higher note is still sounding; a new onset ends the note
before it. A note whose length is not a class keeps the longest class that fits and the rest of
its time becomes rests, so every onset stays exactly on the grid; silences are sums of rests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from midigen.representations.base import BOS, EOS, SPECIALS
from midigen.representations.score_time import ScoreTimeRepresentation, pitch_name

#: (sixteenth steps, name as in sheet-music denominators), longest first
DURATIONS: tuple[tuple[int, str], ...] = (
    (24, "1."),
    (16, "1"),
    (12, "2."),
    (8, "2"),
    (6, "4."),
    (4, "4"),
    (3, "8."),
    (2, "8"),
    (1, "16"),
)
_STEPS = np.array([s for s, _ in DURATIONS], dtype=np.int64)

_SPECIAL, _NOTE, _REST = range(3)


def split_steps(n: int) -> list[int]:
    """Indices into DURATIONS whose lengths add up to n steps, longest first (greedy)."""
    out = []
    for i, (steps, _) in enumerate(DURATIONS):
        while n >= steps:
            out.append(i)
            n -= steps
    return out


def top_line(on: np.ndarray, off: np.ndarray, pitch: np.ndarray) -> list[tuple[int, int, int]]:
    """The highest voice as non-overlapping (onset, offset, pitch) rows, in time order.

    A note starting under a higher note that still sounds is hidden; a higher note ends the note
    before it; a unison re-strike is a new note that lasts as long as either (another voice
    striking the held soprano pitch must not cut the soprano short).
    """
    order = np.lexsort((-pitch, on))
    rows: list[tuple[int, int, int]] = []
    cur: list[int] | None = None
    last_on = -1
    for o, f, p in zip(on[order].tolist(), off[order].tolist(), pitch[order].tolist(), strict=True):
        if o == last_on:
            continue  # only the highest note of an onset
        last_on = o
        if cur is not None and o < cur[1] and p < cur[2]:
            continue
        if cur is not None:
            if p == cur[2] and o < cur[1]:
                f = max(f, cur[1])
            rows.append((cur[0], min(cur[1], o), cur[2]))
        cur = [o, f, p]
    if cur is not None:
        rows.append((cur[0], cur[1], cur[2]))
    return rows


class PitchDurationRepresentation(ScoreTimeRepresentation):
    name = "pitch_duration"

    def __init__(self, pitch_min: int = 21, pitch_max: int = 108):
        n_dur = len(DURATIONS)
        vocab = list(SPECIALS)
        self.note_base = len(vocab)
        vocab += [f"{pitch_name(p)}_{d}" for p in range(pitch_min, pitch_max + 1) for _, d in DURATIONS]
        self.rest_base = len(vocab)
        vocab += [f"R_{d}" for _, d in DURATIONS]
        super().__init__(vocab, pitch_min, pitch_max)
        # id -> kind, pitch, steps, for decoding
        n_pitch = pitch_max - pitch_min + 1
        self._kind = np.full(len(vocab), _SPECIAL, dtype=np.int8)
        self._kind[self.note_base : self.rest_base] = _NOTE
        self._kind[self.rest_base :] = _REST
        self._pitch = np.zeros(len(vocab), dtype=np.int64)
        self._pitch[self.note_base : self.rest_base] = np.repeat(np.arange(pitch_min, pitch_max + 1), n_dur)
        self._steps = np.zeros(len(vocab), dtype=np.int64)
        self._steps[self.note_base : self.rest_base] = np.tile(_STEPS, n_pitch)
        self._steps[self.rest_base :] = _STEPS

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> PitchDurationRepresentation:
        return cls(p["pitch_min"], p["pitch_max"])

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "pitch_min": self.pitch_min, "pitch_max": self.pitch_max}

    def note_id(self, pitch: int, duration_index: int) -> int:
        return self.note_base + (pitch - self.pitch_min) * len(DURATIONS) + duration_index

    def encode(self, notes: np.ndarray) -> np.ndarray:
        out = [BOS]
        t = 0
        for on, off, pitch in top_line(*self.grid_notes(notes)):
            out += [self.rest_base + i for i in split_steps(on - t)]
            parts = split_steps(off - on)
            out.append(self.note_id(pitch, parts[0]))  # the longest class that fits
            out += [self.rest_base + i for i in split_steps(off - on - DURATIONS[parts[0]][0])]
            t = off
        out.append(EOS)
        return np.asarray(out, dtype=np.uint16)

    def decode_notes(self, ids: np.ndarray) -> np.ndarray:
        """Notes one after another; rests advance time; specials and unknown ids are skipped and
        the sequence ends at the first <EOS> after some content."""
        rows: list[tuple[int, int, int]] = []
        t = 0
        started = False
        n = len(self.vocab)
        for i in np.asarray(ids, dtype=np.int64).tolist():
            if i < 0 or i >= n:
                continue
            kind = self._kind[i]
            if kind == _SPECIAL:
                if i == EOS and started:
                    break
                continue
            started = True
            steps = int(self._steps[i])
            if kind == _NOTE:
                rows.append((t, t + steps, int(self._pitch[i])))
            t += steps
        return self.notes_from_steps(rows)
