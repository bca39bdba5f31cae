"""Keys: every piece moved to C major / A minor before training (preprocess.key c, as BachBot
did: Liang & Gotham 2017; auto, the default: c for voices only), and generated pieces moved
back to keys drawn from the corpus.

The key of a piece is the root of its best-fitting major scale: of the 12 diatonic scales the
one that holds the most of its notes (the fit midigen.evaluation.hearing.in_key_notes counts;
ties go to the lowest root, C = 0). A relative minor shares its major's scale, so an E minor
chorale (G major's notes) lands on A minor. The shift that moves the root to C is taken in
-5..+6 semitones (G: +5, to the C above; F: -5, to the C below), the smaller move.

Pitch range: a piece must stay inside the representation's pitch_min..pitch_max. The shift is
applied as it is when every note stays inside; otherwise an octave away (shift - 12 or + 12)
when that keeps more notes inside (ties: the shift of the smaller size). At preprocess the
notes still outside are dropped by the representation as any out-of-range note is; the shift
applied, octave included, is what index.csv records (column key_shift). A generated piece is
moved by minus a training piece's shift, the octave chosen the same way, and its notes still
outside (a piece wider than the range allows) are folded into it by octaves, note by note.

The train stage stores the training pieces' shifts in the checkpoint (KEY_SHIFTS: [[shift,
count], ...]); write_pieces draws one per generated piece from them (back_shifts), seeded from
generate.seed, so the generated keys follow the corpus's distribution.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

#: preprocess.key: keep = as the file has it; c = moved to C major / A minor; auto = c for the
#: representations in C_BY_DEFAULT, else keep
KEY_MODES = ("auto", "keep", "c")
#: what preprocess.key auto moves to C: voices (measured: README, Keys)
C_BY_DEFAULT = ("voices",)
#: the index.csv column with each piece's shift (semitones added to its pitches)
SHIFT_COLUMN = "key_shift"
#: the checkpoint entry with the training pieces' shifts: [[shift, count], ...]
KEY_SHIFTS = "key_shifts"
#: the pitch classes of a major scale on C; its 12 transpositions are the diatonic scales
MAJOR_SCALE = np.array([0, 2, 4, 5, 7, 9, 11])
#: mixed into generate.seed so the keys drawn do not follow the sampler's random numbers
_KEY_STREAM = 0x6B6579


def resolve(key: str, representation: str) -> str:
    """preprocess.key with auto resolved for a representation: "keep" or "c"."""
    if key == "auto":
        return "c" if representation in C_BY_DEFAULT else "keep"
    return key


def scale_fit(pitches: np.ndarray) -> np.ndarray:
    """(12,) the number of notes of each diatonic scale, by the root of its major (C = 0)."""
    classes = np.bincount(np.asarray(pitches, dtype=np.int64) % 12, minlength=12)
    return np.array([classes[(MAJOR_SCALE + root) % 12].sum() for root in range(12)])


def major_root(pitches: np.ndarray) -> int:
    """The root (pitch class, C = 0) of the best-fitting major scale; 0 for no notes."""
    return int(np.argmax(scale_fit(pitches)))


def shift_to_c(root: int) -> int:
    """The shift in -5..+6 semitones that moves pitch class `root` to C."""
    return (5 - root) % 12 - 5


def fit_shift(pitches: np.ndarray, shift: int, lo: int, hi: int) -> int:
    """`shift`, or an octave away from it when that keeps more of `pitches` inside lo..hi (see
    the module docstring)."""
    pitches = np.asarray(pitches, dtype=np.int64)
    candidates = sorted((shift, shift - 12, shift + 12), key=abs)
    inside = [int(((pitches + s >= lo) & (pitches + s <= hi)).sum()) for s in candidates]
    if inside[candidates.index(shift)] == pitches.shape[0]:
        return shift
    return candidates[int(np.argmax(inside))]


def to_c(notes: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, int]:
    """Notes (midigen.data.midi_io.NOTE_DTYPE) moved to C major / A minor: (notes, the shift
    applied). Drum notes are neither counted nor moved."""
    pitched = ~notes["is_drum"]
    pitches = notes["pitch"][pitched]
    if not pitches.shape[0]:
        return notes, 0
    shift = fit_shift(pitches, shift_to_c(major_root(pitches)), lo, hi)
    return _moved(notes, pitched, shift), shift


def _moved(notes: np.ndarray, which: np.ndarray, shift: int) -> np.ndarray:
    out = notes.copy()
    out["pitch"][which] += shift
    return out


def transpose_notes(notes: np.ndarray, shift: int, lo: int, hi: int) -> np.ndarray:
    """Decoded notes moved by `shift` semitones (an octave away when that fits lo..hi better),
    every pitched note kept inside lo..hi (folded by octaves). The order of the notes is kept:
    a representation's per-note data (the voices' tracks) still lines up."""
    pitched = ~notes["is_drum"]
    if not shift or not pitched.any():
        return notes
    out = _moved(notes, pitched, fit_shift(notes["pitch"][pitched], shift, lo, hi))
    pitch = out["pitch"].astype(np.int64)
    pitch = np.where(pitched & (pitch < lo), pitch + 12 * -(-(lo - pitch) // 12), pitch)
    pitch = np.where(pitched & (pitch > hi), pitch - 12 * -(-(pitch - hi) // 12), pitch)
    out["pitch"] = pitch
    return out


def distribution(shifts: Iterable[Any]) -> list[list[int]]:
    """The checkpoint's KEY_SHIFTS entry: [[shift, count], ...] by shift, of the given shifts
    (index.csv's key_shift column of the training pieces)."""
    counts = Counter(int(s) for s in shifts)
    return [[s, counts[s]] for s in sorted(counts)]


def checkpoint_entry(pieces: Any) -> dict[str, list[list[int]]]:
    """What the train stage adds to a checkpoint for the training pieces (rows of index.csv, a
    DataFrame): their KEY_SHIFTS when the store was moved to C, else nothing."""
    if SHIFT_COLUMN not in pieces.columns or not len(pieces):
        return {}
    return {KEY_SHIFTS: distribution(pieces[SHIFT_COLUMN])}


def of_checkpoint(ckpt: Mapping[str, Any]) -> list[list[int]] | None:
    """The training pieces' shifts a checkpoint carries, or None (trained in the files' keys)."""
    entry = ckpt.get(KEY_SHIFTS)
    return [[int(s), int(n)] for s, n in entry] if entry else None


def back_shifts(keys: list[list[int]] | None, n: int, seed: int) -> list[int]:
    """The shift each of n generated pieces is moved by: minus a training piece's shift, drawn
    with the corpus's frequencies, reproducibly from `seed`; all 0 without `keys`."""
    if not keys:
        return [0] * n
    shifts = np.array([s for s, _ in keys], dtype=np.int64)
    weight = np.array([c for _, c in keys], dtype=np.float64)
    rng = np.random.default_rng([_KEY_STREAM, int(seed)])
    return [-int(s) for s in rng.choice(shifts, size=n, p=weight / weight.sum())]


#: pitch class -> the key name write_midi spells it with (one of midi_io.KEY_NAMES)
_MAJOR_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_NAMES = ("Cm", "C#m", "Dm", "Ebm", "Em", "Fm", "F#m", "Gm", "G#m", "Am", "Bbm", "Bm")
_ROOTS = {"C": 0, "C#": 1, "Db": 1, "D": 2, "Eb": 3, "E": 4, "F": 5, "F#": 6, "Gb": 6, "G": 7, "Ab": 8, "A": 9}
_ROOTS.update({"Bb": 10, "B": 11})


def transpose_key(key: str | None, shift: int) -> str | None:
    """A key signature name (generate.key: C, F#m, ...; None or "none" stays) moved by `shift`."""
    if key in (None, "none") or not shift:
        return key
    minor = key.endswith("m")
    root = (_ROOTS[key[:-1] if minor else key] + shift) % 12
    return (_MINOR_NAMES if minor else _MAJOR_NAMES)[root]
