"""One token per onset, a note or a chord (seed 002's design), plus what that seed lacked:
durations, rests, <BOS>/<EOS> per piece and <UNK> for rare chords.

At each onset of the sixteenth-note grid (musical time, see score_time.py) the pitches starting
there become one token: a single pitch is a note token with its octave (`E4`); two or more are a
chord, named by its pitch classes in normal order as music21 (Forte) computes it (`11.2.5.7` is
G7), so the octave and voicing of chords are not kept. Each onset token is followed by duration
tokens `DUR_k` (k sixteenths, 1..16, chained for longer values): the onset's notes sound until
their longest note ends or the next onset comes, whichever is first. Silence before the next
onset is `REST` plus its duration. With `fixed_step_quarters` > 0 there are no duration tokens:
every onset or rest token advances that many quarter notes, as in the seed (0.5).

The chord tokens come from the data: a chord seen fewer than `chord_min_count` times in the
corpus is folded into `<UNK>`. The chosen chords are part of config(), so vocab.json and every
checkpoint rebuild the identical vocabulary; their order is sorted, never the order of arrival.
Decoding voices a chord upwards from its first pitch class in the octave above middle C.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from midigen.data.midi_io import NOTE_DTYPE, empty_notes
from midigen.representations.base import BOS, EOS, SPECIALS
from midigen.representations.score_time import (
    DEFAULT_VELOCITY,
    SCORE_TEMPO_BPM,
    ScoreTimeRepresentation,
    pitch_name,
)

MAX_DURATION_STEPS = 16  # DUR_1 .. DUR_16 (a whole note); longer values chain DUR_16s
DEFAULT_ONSET_STEPS = 4  # an onset the model left without a duration token lasts a quarter
CHORD_BASE_PITCH = 60  # decoded chords start in the octave of middle C


def normal_order(pitches: Iterable[int]) -> tuple[int, ...]:
    """Pitch classes in normal order, Forte's rule (music21's Chord.normalOrder): the rotation of
    the sorted pitch classes with the smallest span, ties broken by the intervals from the first
    pitch class to the second, third, ..., then by the lowest first pitch class."""
    pcs = sorted({int(p) % 12 for p in pitches})
    n = len(pcs)
    if n <= 1:
        return tuple(pcs)
    best_key, best = None, pcs
    for i in range(n):
        rot = pcs[i:] + [p + 12 for p in pcs[:i]]
        key = (rot[-1] - rot[0], *(rot[k] - rot[0] for k in range(1, n - 1)), rot[0])
        if best_key is None or key < best_key:
            best_key, best = key, rot
    return tuple(p % 12 for p in best)


def chord_name(pcs: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in pcs)


def parse_chord(name: str) -> tuple[int, ...]:
    """`0.4.7` -> (0, 4, 7); ValueError unless it is a pitch-class set in normal order."""
    try:
        pcs = tuple(int(p) for p in name.split("."))
    except ValueError:
        raise ValueError(f"chord {name!r}: expected pitch classes joined by dots, e.g. 0.4.7") from None
    if not pcs or normal_order(pcs) != pcs:
        raise ValueError(f"chord {name!r} is not a pitch-class set in normal order")
    return pcs


def chord_sort_key(name: str) -> tuple:
    pcs = parse_chord(name)
    return (len(pcs), pcs)


def voicing(pcs: tuple[int, ...]) -> list[int]:
    """Close position upwards from the first pitch class in the octave of CHORD_BASE_PITCH."""
    out = [CHORD_BASE_PITCH + pcs[0]]
    for pc in pcs[1:]:
        out.append(out[-1] + ((pc - out[-1]) % 12 or 12))
    return out


class NotesChordsRepresentation(ScoreTimeRepresentation):
    name = "notes_chords"
    #: preprocess counts chords over the corpus first and passes the counts to from_params
    vocab_from_data = True

    def __init__(
        self,
        pitch_min: int = 21,
        pitch_max: int = 108,
        chords: Iterable[str] = (),
        fixed_step_quarters: float = 0.0,
        chord_min_count: int = 1,
    ):
        self.fixed_step_quarters = float(fixed_step_quarters)
        if self.fixed_step_quarters < 0:
            raise ValueError(f"fixed_step_quarters must be >= 0, got {fixed_step_quarters}")
        self.chord_min_count = int(chord_min_count)
        self.chords = sorted(set(chords), key=chord_sort_key)
        vocab = list(SPECIALS)
        self.unk_id = len(vocab)
        self.rest_id = self.unk_id + 1
        vocab += ["<UNK>", "REST"]
        self.note_base = len(vocab)
        vocab += [pitch_name(p) for p in range(pitch_min, pitch_max + 1)]
        self.chord_base = len(vocab)
        vocab += self.chords
        self.dur_base = len(vocab)
        if not self.fixed_step_quarters:
            vocab += [f"DUR_{k}" for k in range(1, MAX_DURATION_STEPS + 1)]
        super().__init__(vocab, pitch_min, pitch_max)
        self._chord_id = {c: self.chord_base + i for i, c in enumerate(self.chords)}
        self._chord_pcs = [parse_chord(c) for c in self.chords]

    @classmethod
    def from_params(cls, p: dict[str, Any], chord_counts: Mapping[str, int] | None = None) -> NotesChordsRepresentation:
        """The representation for the preprocess params; without chord_counts it has no chord
        tokens yet (every chord is <UNK>): the form preprocess counts chords with."""
        min_count = p["chord_min_count"]
        chords = [c for c, n in (chord_counts or {}).items() if n >= min_count]
        return cls(p["pitch_min"], p["pitch_max"], chords, p["fixed_step_quarters"], min_count)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pitch_min": self.pitch_min,
            "pitch_max": self.pitch_max,
            "fixed_step_quarters": self.fixed_step_quarters,
            "chord_min_count": self.chord_min_count,
            "chords": list(self.chords),
        }

    # -- notes -> ids -------------------------------------------------------------------------

    def onsets(self, notes: np.ndarray) -> list[tuple[int, int, tuple[int, ...]]]:
        """(onset_step, sound_end_step, distinct pitches) per onset of the grid, in time order.

        The notes of an onset sound until the longest of them ends or the next onset starts.
        """
        on, off, pitch = self.grid_notes(notes)
        if on.shape[0] == 0:
            return []
        order = np.lexsort((pitch, on))
        on, off, pitch = on[order], off[order], pitch[order]
        starts = np.flatnonzero(np.r_[True, on[1:] != on[:-1]])
        group_on = on[starts]
        group_end = np.maximum.reduceat(off, starts)
        nxt = np.r_[group_on[1:], group_end[-1]]
        sound_end = np.minimum(group_end, nxt)
        groups = np.split(pitch, starts[1:])
        return [
            (int(o), int(e), tuple(np.unique(g).tolist())) for o, e, g in zip(group_on, sound_end, groups, strict=True)
        ]

    def chord_names(self, notes: np.ndarray) -> list[str]:
        """The chord name of every onset with two or more pitches (what the vocabulary counts)."""
        return [chord_name(normal_order(p)) for _, _, p in self.onsets(notes) if len(p) > 1]

    def onset_id(self, pitches: tuple[int, ...]) -> int:
        if len(pitches) == 1:
            return self.note_base + pitches[0] - self.pitch_min
        return self._chord_id.get(chord_name(normal_order(pitches)), self.unk_id)

    def _durations(self, steps: int) -> list[int]:
        if self.fixed_step_quarters:
            return []
        whole, part = divmod(steps, MAX_DURATION_STEPS)
        out = [self.dur_base + MAX_DURATION_STEPS - 1] * whole
        return out + ([self.dur_base + part - 1] if part else [])

    def encode(self, notes: np.ndarray) -> np.ndarray:
        out = [BOS]
        t = 0
        for on, end, pitches in self.onsets(notes):
            if on > t:
                out += [self.rest_id, *self._durations(on - t)]
            out += [self.onset_id(pitches), *self._durations(end - on)]
            t = end
        out.append(EOS)
        return np.asarray(out, dtype=np.uint16)

    # -- ids -> notes -------------------------------------------------------------------------

    def onset_pitches(self, i: int) -> list[int]:
        """The pitches an onset id decodes to ([] for REST and <UNK>)."""
        if self.note_base <= i < self.chord_base:
            return [self.pitch_min + i - self.note_base]
        if self.chord_base <= i < self.dur_base:
            return [p for p in voicing(self._chord_pcs[i - self.chord_base]) if p <= 127]
        return []

    def decode_notes(self, ids: np.ndarray) -> np.ndarray:
        """Tolerant decoding: duration tokens add to the onset before them (or are silence when
        there is none); an onset without one lasts a quarter; <UNK> sounds as a rest; the
        sequence ends at the first <EOS> after some content."""
        seq = []
        n = len(self.vocab)
        for i in np.asarray(ids, dtype=np.int64).tolist():
            if i < 0 or i >= n:
                continue
            if i < len(SPECIALS):
                if i == EOS and seq:
                    break
                continue
            seq.append(i)
        if self.fixed_step_quarters:
            return self._decode_fixed(seq)
        rows: list[tuple[int, int, int]] = []
        t = 0
        pitches: list[int] | None = None  # the onset waiting for its duration (None: nothing)
        held = 0

        def flush() -> int:
            steps = held if held or pitches is None else DEFAULT_ONSET_STEPS
            rows.extend((t, t + steps, p) for p in pitches or ())
            return steps

        for i in seq:
            if i >= self.dur_base:
                held += i - self.dur_base + 1
                continue
            t += flush()
            pitches, held = self.onset_pitches(i), 0
        t += flush()
        return self.notes_from_steps(rows)

    def _decode_fixed(self, seq: list[int]) -> np.ndarray:
        step_s = self.fixed_step_quarters * 60.0 / SCORE_TEMPO_BPM
        rows = [(k * step_s, p) for k, i in enumerate(seq) for p in self.onset_pitches(i)]
        if not rows:
            return empty_notes()
        notes = np.zeros(len(rows), dtype=NOTE_DTYPE)
        notes["start_s"] = [r[0] for r in rows]
        notes["end_s"] = notes["start_s"] + step_s
        notes["pitch"] = [r[1] for r in rows]
        notes["velocity"] = DEFAULT_VELOCITY
        return notes

    def repetition_units(self, ids: np.ndarray) -> np.ndarray:
        """The onset tokens (notes, chords, REST, <UNK>) without their durations: a chord played
        forever is one token repeated, whatever durations come between. Ids without any onset
        token (a model stuck on durations) are counted token by token, so that shows too."""
        ids = np.asarray(ids, dtype=np.int64)
        onsets = ids[(ids >= self.unk_id) & (ids < self.dur_base)]
        return onsets if onsets.shape[0] else ids[ids >= len(SPECIALS)]

    def count_rows(self, chord_counts: Mapping[str, int]) -> list[dict[str, Any]]:
        """The chord frequency table saved with the store: most frequent first."""
        kept = set(self.chords)
        names = sorted(chord_counts, key=lambda c: (-chord_counts[c], chord_sort_key(c)))
        return [{"chord": c, "count": int(chord_counts[c]), "in_vocab": c in kept} for c in names]
