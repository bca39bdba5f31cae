"""Evaluation that hears: what a listener notices first, measured on MIDI files.

Every set (generated pieces, held-out test pieces) is read back from its MIDI files, so every
representation is judged the same way, by what it wrote. Times are read two ways: in seconds
(through the file's tempo map) and in beats (quarter notes: ticks / ticks-per-quarter), which
follow the file's own beats whatever its tempo. Drum-track notes are left out (no pitch, no key).

Per piece: the longest note (seconds and beats); the share of onsets on the sixteenth grid of the
piece's beats; how many notes sound at each onset (the voice count); histograms of note lengths
and inter-onset intervals in beats and of the top line's melodic intervals; and the share of
notes in the piece's best-fitting diatonic scale.

Per pair of sets: hanging notes (generated notes longer than any note of the test set), the
total-variation distance between the sets' pooled histograms, and a classifier two-sample test
(C2ST, Lopez-Paz & Oquab 2017): a logistic regression on per-piece features, cross-validated on
balanced classes. Its accuracy is 0.5 when the sets cannot be told apart and 1.0 when every piece
is told right; unlike a distribution overlap, it cannot call a set "like the test pieces" while a
simple model separates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from midigen.data.keys import scale_fit
from midigen.data.midi_io import read_tick_notes, ticks_to_seconds

#: the grid onsets are checked against: a sixteenth note, in quarter notes
SIXTEENTH = 0.25
#: an onset is on the grid when it is within this share of a sixteenth of a grid point
GRID_TOLERANCE = 0.1
#: voice counts 1..MAX_VOICES, the last bin holding MAX_VOICES or more
MAX_VOICES = 8
#: melodic intervals 0..MAX_INTERVAL semitones, the last bin holding MAX_INTERVAL or more
MAX_INTERVAL = 12
#: bin edges (quarter notes) of note-length and inter-onset-interval histograms: bins around
#: 1/8 and shorter, 1/4, 1/2, 3/4, 1, 1.5, 2, 3, 4, 6, 8 and longer (triplets fall in the next
#: shorter plain value's bin)
BEAT_EDGES = np.array([0, 0.2, 0.375, 0.625, 0.875, 1.25, 1.75, 2.5, 3.5, 5, 7, 10, np.inf])
#: histograms compared between the sets (total-variation distance) and fed to the classifier
HISTOGRAMS = ("voice_count", "note_length", "ioi", "interval")


@dataclass(frozen=True)
class HeardPiece:
    """One file's pitched notes sorted by onset then pitch: times in beats and in seconds."""

    start_beat: np.ndarray
    end_beat: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    pitch: np.ndarray


def read_piece(path: str | Path) -> HeardPiece:
    """A MIDI file's notes in beats (ticks / ticks-per-quarter) and seconds (its tempo map);
    MidiError naming the file when it cannot be read."""
    t = read_tick_notes(path)
    keep = ~t.is_drum
    start, end, pitch = t.start_tick[keep], t.end_tick[keep], t.pitch[keep]
    order = np.lexsort((pitch, start))
    start, end, pitch = start[order], end[order], pitch[order]
    tempos = t.score.tempos.numpy()
    secs = ticks_to_seconds(np.concatenate([start, end]), tempos["time"], tempos["mspq"], t.tpq)
    return HeardPiece(start / t.tpq, end / t.tpq, secs[: len(start)], secs[len(start) :], pitch)


# -- per piece --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listening:
    """What one piece sounds like: counts, so that sets pool them by adding."""

    notes: int
    longest_s: float
    longest_beats: float
    #: every note's length in beats (hanging notes are counted against the test set's longest)
    lengths_beats: np.ndarray
    onsets: int
    on_grid: int
    in_key: int
    span_beats: float
    histograms: dict[str, np.ndarray]
    pitch_classes: np.ndarray
    pitch_mean: float
    pitch_std: float


def onset_beats(piece: HeardPiece) -> np.ndarray:
    """The piece's distinct onset times in beats, ascending."""
    return np.unique(piece.start_beat)


def on_grid(onsets: np.ndarray) -> np.ndarray:
    """Per onset (beats): whether it lies within GRID_TOLERANCE of a sixteenth of a grid point."""
    steps = onsets / SIXTEENTH
    return np.abs(steps - np.round(steps)) <= GRID_TOLERANCE


def merged_unisons(piece: HeardPiece) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) in beats of the piece's notes with the overlapping notes of one pitch
    merged: two voices (or a voice and the instrument doubling it) on one pitch sound as one."""
    starts, ends = [], []
    for p in np.unique(piece.pitch):
        mine = piece.pitch == p
        order = np.argsort(piece.start_beat[mine], kind="stable")
        s, e = piece.start_beat[mine][order], piece.end_beat[mine][order]
        # a note that starts before every earlier note of its pitch has ended continues them
        first = np.r_[True, s[1:] >= np.maximum.accumulate(e)[:-1]]
        at = np.flatnonzero(first)
        starts.append(s[at])
        ends.append(np.maximum.reduceat(e, at))
    if not starts:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(starts), np.concatenate(ends)


def voice_counts(piece: HeardPiece, onsets: np.ndarray) -> np.ndarray:
    """How many onsets have 1, 2, ..., MAX_VOICES (or more) pitches sounding at them: a pitch
    sounds at t when a note of it starts at or before t and ends after it (unisons count once)."""
    starts, ends = merged_unisons(piece)
    starts, ends = np.sort(starts), np.sort(ends)
    sounding = np.searchsorted(starts, onsets, side="right") - np.searchsorted(ends, onsets, side="right")
    return np.bincount(np.clip(sounding, 1, MAX_VOICES) - 1, minlength=MAX_VOICES)


def beat_histogram(values: np.ndarray) -> np.ndarray:
    """Counts of durations (beats) in the BEAT_EDGES bins."""
    return np.histogram(values, bins=BEAT_EDGES)[0]


def top_line(piece: HeardPiece) -> np.ndarray:
    """The highest pitch starting at each distinct onset, in onset order (the melody a
    listener follows in a chorale: the soprano)."""
    if not len(piece.pitch):
        return piece.pitch
    last = np.r_[piece.start_beat[1:] != piece.start_beat[:-1], True]  # sorted by pitch within an onset
    return piece.pitch[last]


def interval_histogram(line: np.ndarray) -> np.ndarray:
    """Counts of |semitones| between consecutive notes of a line, 0..MAX_INTERVAL (or more)."""
    steps = np.minimum(np.abs(np.diff(line.astype(np.int64))), MAX_INTERVAL)
    return np.bincount(steps, minlength=MAX_INTERVAL + 1)


def in_key_notes(pitches: np.ndarray) -> int:
    """How many notes belong to the diatonic scale (of the 12) that holds the most of them (the
    fit preprocess.key c moves pieces to C by: midigen.data.keys)."""
    return int(scale_fit(pitches).max())


def listen(piece: HeardPiece) -> Listening:
    """The per-piece numbers of the module docstring."""
    lengths_beats = piece.end_beat - piece.start_beat
    onsets = onset_beats(piece)
    has_notes = len(piece.pitch) > 0
    return Listening(
        notes=len(piece.pitch),
        longest_s=float((piece.end_s - piece.start_s).max()) if has_notes else 0.0,
        longest_beats=float(lengths_beats.max()) if has_notes else 0.0,
        lengths_beats=lengths_beats,
        onsets=len(onsets),
        on_grid=int(on_grid(onsets).sum()),
        in_key=in_key_notes(piece.pitch),
        span_beats=float(piece.end_beat.max() - onsets[0]) if has_notes else 0.0,
        histograms={
            "voice_count": voice_counts(piece, onsets),
            "note_length": beat_histogram(lengths_beats),
            "ioi": beat_histogram(np.diff(onsets)),
            "interval": interval_histogram(top_line(piece)),
        },
        pitch_classes=np.bincount(piece.pitch.astype(np.int64) % 12, minlength=12),
        pitch_mean=float(piece.pitch.mean()) if has_notes else 0.0,
        pitch_std=float(piece.pitch.std()) if has_notes else 0.0,
    )


# -- per set ----------------------------------------------------------------------------------


def shares(counts: np.ndarray) -> np.ndarray:
    """Counts as shares of their total (all zeros when there are none)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total else counts


def pooled(pieces: list[Listening], name: str) -> np.ndarray:
    """A histogram summed over a set's pieces (each note or onset counts once)."""
    return np.sum([p.histograms[name] for p in pieces], axis=0) if pieces else np.zeros(0)


def total_variation(a: np.ndarray, b: np.ndarray) -> float:
    """Half the L1 distance between two histograms as shares: 0 = the same, 1 = disjoint.
    A set without a single count is as far as can be from one with some."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not a.sum() or not b.sum():
        return 0.0 if a.sum() == b.sum() else 1.0
    return float(0.5 * np.abs(shares(a) - shares(b)).sum())


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def set_summary(pieces: list[Listening]) -> dict[str, Any]:
    """One set's numbers: pooled over its pieces (every note or onset counts once)."""
    notes = sum(p.notes for p in pieces)
    voices = shares(pooled(pieces, "voice_count")) if pieces else np.zeros(MAX_VOICES)
    return {
        "pieces": len(pieces),
        "notes": notes,
        "longest_note_s": round(max((p.longest_s for p in pieces), default=0.0), 4),
        "longest_note_beats": round(max((p.longest_beats for p in pieces), default=0.0), 4),
        "shortest_piece_beats": round(min((p.span_beats for p in pieces), default=0.0), 4),
        "on_grid_share": _ratio(sum(p.on_grid for p in pieces), sum(p.onsets for p in pieces)),
        "pitch_in_key": _ratio(sum(p.in_key for p in pieces), notes),
        "voice_count": {
            (f"{i + 1}+" if i + 1 == MAX_VOICES else str(i + 1)): round(float(v), 4) for i, v in enumerate(voices)
        },
    }


def hanging_share(generated: list[Listening], test: list[Listening]) -> float | None:
    """Share of generated notes longer (in beats) than the longest note of the test set: notes
    no held-out piece holds that long, the sound of a note-off the model never wrote."""
    longest = max((p.longest_beats for p in test), default=0.0)
    lengths = np.concatenate([p.lengths_beats for p in generated]) if generated else np.zeros(0)
    return round(float((lengths > longest).mean()), 4) if lengths.size else None


def compare(generated: list[Listening], test: list[Listening]) -> dict[str, Any]:
    """The generated and the test set side by side, hanging notes, and the total-variation
    distance between their pooled histograms."""
    return {
        "generated": set_summary(generated),
        "test": set_summary(test),
        "hanging_note_share": hanging_share(generated, test),
        "tv": {name: round(total_variation(pooled(generated, name), pooled(test, name)), 4) for name in HISTOGRAMS},
    }


# -- classifier two-sample test ---------------------------------------------------------------


def feature_parts(p: Listening) -> dict[str, np.ndarray]:
    """What the classifier sees of a piece, by feature: its histograms as shares, its pitch-class
    histogram and a few scalars, none of which grows with the piece's length (generated pieces
    stop at generate.max_steps; a length feature would tell them apart for the wrong reason)."""
    parts = {name: shares(p.histograms[name]) for name in HISTOGRAMS} | {"pitch_class": shares(p.pitch_classes)}
    scalars = {
        "on_grid": p.on_grid / p.onsets if p.onsets else 0.0,
        "in_key": p.in_key / p.notes if p.notes else 0.0,
        "longest_note": np.log2(1.0 + p.longest_beats),
        "note_density": p.notes / p.span_beats if p.span_beats else 0.0,
        "pitch_mean": p.pitch_mean,
        "pitch_std": p.pitch_std,
    }
    return parts | {name: np.asarray([v], dtype=np.float64) for name, v in scalars.items()}


def feature_vector(p: Listening) -> np.ndarray:
    """The classifier's row for a piece: feature_parts, one after the other."""
    return np.concatenate(list(feature_parts(p).values()))


def feature_groups(p: Listening) -> dict[str, slice]:
    """Which columns of feature_vector each feature of feature_parts fills (the same for every
    piece; p gives the sizes): for asking which of them tells two sets apart (bench/seeds.py --groups)."""
    widths = {name: part.shape[0] for name, part in feature_parts(p).items()}
    ends = np.cumsum(list(widths.values()))
    return {name: slice(int(end - w), int(end)) for (name, w), end in zip(widths.items(), ends, strict=True)}


def cv_accuracy(a: np.ndarray, b: np.ndarray, n: int, folds: int, rng: np.random.Generator) -> float:
    """One resample of the two-sample test: n random rows of each of a and b (labels 0 and 1),
    the mean accuracy of a standardized logistic regression over stratified folds drawn from rng."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([a[rng.choice(len(a), n, replace=False)], b[rng.choice(len(b), n, replace=False)]])
    labels = np.r_[np.zeros(n), np.ones(n)]
    cv = StratifiedKFold(folds, shuffle=True, random_state=int(rng.integers(2**31)))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return float(cross_val_score(model, x, labels, cv=cv, scoring="accuracy").mean())


def c2st(a: np.ndarray, b: np.ndarray, folds: int, resamples: int, seed: int) -> dict[str, Any]:
    """Classifier two-sample test between feature rows a and b: cross-validated accuracy on
    balanced classes, n = min(len(a), len(b)) rows of each (a random subset of the larger set),
    over min(folds, n) stratified folds, repeated over `resamples` subsets and fold draws, all
    from `seed`. Returns the mean accuracy and a 95% interval (2.5th..97.5th percentile over
    resamples); accuracy None when a set has fewer than 2 rows (nothing to cross-validate).

    The interval is that of the folds and subsets, not of the pieces themselves: halves of one
    set of 41 chorales scored 0.37..0.58 depending on the halving, while each interval was about
    +-0.1 wide. With few pieces per class the accuracy of alike sets tends to fall below 0.5."""
    from threadpoolctl import threadpool_limits

    n = min(len(a), len(b))
    k = min(folds, n)
    out: dict[str, Any] = {"accuracy": None, "ci_low": None, "ci_high": None, "n_per_class": n}
    out |= {"folds": k, "resamples": resamples}
    if n < 2:
        return out
    rng = np.random.default_rng(seed)
    # one BLAS thread: the models are tiny, and threads fighting over busy cores made it 10x slower
    with threadpool_limits(1):
        accuracies = [cv_accuracy(a, b, n, k, rng) for _ in range(resamples)]
    low, high = np.percentile(accuracies, [2.5, 97.5])
    out.update(
        accuracy=round(float(np.mean(accuracies)), 4), ci_low=round(float(low), 4), ci_high=round(float(high), 4)
    )
    return out


def indistinguishability(accuracy: float | None) -> float:
    """1 when the classifier does no better than chance (accuracy 0.5 or less), 0 when it tells
    every piece right: clip(2 * (1 - accuracy), 0, 1). 0 when there was no test to run: a set is
    not called like the test pieces unless a classifier failed to tell it from them."""
    return float(np.clip(2.0 * (1.0 - accuracy), 0.0, 1.0)) if accuracy is not None else 0.0


def hear(
    generated: list[str | Path], test: list[str | Path], folds: int, resamples: int, seed: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the two sets side by side, the classifier two-sample test) for two lists of MIDI files."""
    gen = [listen(read_piece(p)) for p in generated]
    ref = [listen(read_piece(p)) for p in test]
    rows = [np.array([feature_vector(p) for p in s]) for s in (gen, ref)]
    return compare(gen, ref), c2st(rows[0], rows[1], folds, resamples, seed)
