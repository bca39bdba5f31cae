"""Metrics of fixed-grid windows (MusicVAE drums and melodies), straight from the step ids.

A window is (T,) ids, T = bars * steps_per_bar. An onset is a step with a drum hit (drums: id > 0)
or a NOTE_ON (melody: id >= 2). Rates are shares in 0..1.
"""

from __future__ import annotations

import numpy as np

from midigen.evaluation.metrics import summarize
from midigen.representations.grid import GridRepresentation


def onsets(windows: np.ndarray, rep: GridRepresentation) -> np.ndarray:
    """(n, T) bool: where something starts."""
    return rep.onsets(windows)


def hits_per_bar(windows: np.ndarray, rep: GridRepresentation) -> np.ndarray:
    """Per window: drum hits (class x step) or note onsets per bar."""
    counts = rep.hit_counts(windows)
    return counts.sum(axis=1) / (counts.shape[1] / rep.steps_per_bar)


def empty_beat_rate(windows: np.ndarray, rep: GridRepresentation) -> np.ndarray:
    """Per window: share of beats (quarter notes) with no onset at all."""
    on = onsets(windows, rep)
    beats = on.reshape(on.shape[0], -1, rep.steps_per_quarter).any(axis=2)
    return 1.0 - beats.mean(axis=1)


def groove_consistency(windows: np.ndarray, rep: GridRepresentation) -> np.ndarray:
    """Per window: 1 - mean Hamming distance (share of steps) between consecutive bars' onset
    vectors (Wu & Yang's grooving-pattern similarity). 1 = every bar has the same rhythm."""
    on = onsets(windows, rep)
    bars = on.reshape(on.shape[0], -1, rep.steps_per_bar)
    if bars.shape[1] < 2:
        return np.ones(on.shape[0])
    return 1.0 - (bars[:, 1:] != bars[:, :-1]).mean(axis=(1, 2))


def class_hit_rates(windows: np.ndarray, rep: GridRepresentation) -> dict[str, float]:
    """Share of steps on which each class (drums: Magenta's nine) is hit, over all windows;
    empty when the representation's ids have no classes (melodies)."""
    rates = rep.class_hits(windows).mean(axis=(0, 1))
    return {name: round(float(r), 5) for name, r in zip(rep.class_names, rates, strict=True)}


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of steps at which two windows (or rows of two (n, T) arrays) differ."""
    return (np.asarray(a) != np.asarray(b)).mean(axis=-1)


def interpolation_smoothness(sequence: np.ndarray) -> dict[str, float]:
    """For one interpolation (steps, T): the mean and the largest Hamming distance between
    consecutive points, the distance between the two ends, and mean / ends (smaller = smoother).

    A walk that changes a little at every point has ratio about 1 / (steps - 1) and its largest
    step near the mean; an abrupt switch has the same mean but its largest step equals `ends`."""
    sequence = np.asarray(sequence)
    steps = hamming(sequence[1:], sequence[:-1])
    ends = float(hamming(sequence[0], sequence[-1]))
    consecutive = float(steps.mean())
    return {
        "consecutive": consecutive,
        "largest_step": float(steps.max()),
        "ends": ends,
        # equal ends (a collapsed model decodes everything alike) say nothing about smoothness
        "ratio": consecutive / ends if ends > 0 else float("nan"),
    }


def window_metrics(windows: np.ndarray, rep: GridRepresentation) -> dict[str, dict[str, float]]:
    """Mean and std over windows of the per-window rhythm metrics."""
    windows = np.asarray(windows, dtype=np.int64)
    return {
        "hits_per_bar": summarize(hits_per_bar(windows, rep).tolist()),
        "empty_beat_rate": summarize(empty_beat_rate(windows, rep).tolist()),
        "groove_consistency": summarize(groove_consistency(windows, rep).tolist()),
    }


#: velocity histogram: 8 bins of 16 MIDI velocities (0-15, ..., 112-127)
VELOCITY_BINS = np.arange(0, 129, 16)
#: offset histogram: 10 bins over [-0.5, 0.5) steps
OFFSET_BINS = np.linspace(-0.5, 0.5, 11)


def swing_ratio(shift: np.ndarray, hit: np.ndarray) -> float | None:
    """For offsets and hits (n, T, classes): (1 + d) / (1 - d), d = mean offset (steps) of the
    off-beat sixteenths' hits minus that of the on-beat ones: how much longer the first
    sixteenth of each pair lasts than the second (1 = straight, 2 = triplet swing). None without
    hits on both."""
    off = np.arange(hit.shape[1]) % 2 == 1
    late, early = hit[:, off], hit[:, ~off]
    if not late.any() or not early.any():
        return None
    d = float(shift[:, off][late].mean() - shift[:, ~off][early].mean())
    return round((1 + d) / (1 - d), 4) if d < 1 else None


def expressive_metrics(windows: np.ndarray, rep: GridRepresentation) -> dict:
    """How drums are played (groove windows): velocity histogram (shares of hits per VELOCITY_BINS
    bin), mean and spread, mean velocity per class; offset histogram (OFFSET_BINS), mean and
    spread in steps and the share of hits off the grid (|offset| >= 1/64 step); swing ratio."""
    hit, velocity, shift = rep.features(np.asarray(windows, dtype=np.int64))
    v, o = velocity[hit].astype(np.float64), shift[hit].astype(np.float64)
    if v.size == 0:
        return {"hits": 0}
    per_class = {
        name: round(float(velocity[..., c][hit[..., c]].mean()), 2) if hit[..., c].any() else None
        for c, name in enumerate(rep.class_names)
    }
    return {
        "hits": int(v.size),
        "velocity_histogram": [round(float(x), 4) for x in np.histogram(v, VELOCITY_BINS)[0] / v.size],
        "velocity_mean": round(float(v.mean()), 3),
        "velocity_std": round(float(v.std()), 3),
        "distinct_velocities": int(np.unique(v).size),
        "class_velocity": per_class,
        "offset_histogram": [round(float(x), 4) for x in np.histogram(o, OFFSET_BINS)[0] / o.size],
        "offset_mean": round(float(o.mean()), 5),
        "offset_std": round(float(o.std()), 5),
        "off_grid_share": round(float((np.abs(o) >= 1 / 64).mean()), 4),
        "swing_ratio": swing_ratio(shift, hit),
    }


def majority_accuracy(windows: np.ndarray) -> float:
    """Share of steps equal to the most common id: what 'always predict one token' scores."""
    counts = np.bincount(np.asarray(windows, dtype=np.int64).reshape(-1))
    return float(counts.max() / counts.sum()) if counts.size else 0.0
