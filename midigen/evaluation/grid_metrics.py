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
    return rep.hit_counts(windows).sum(axis=1) / (windows.shape[1] / rep.steps_per_bar)


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


def majority_accuracy(windows: np.ndarray) -> float:
    """Share of steps equal to the most common id: what 'always predict one token' scores."""
    counts = np.bincount(np.asarray(windows, dtype=np.int64).reshape(-1))
    return float(counts.max() / counts.sum()) if counts.size else 0.0
