"""Music metrics: the reference design's per-piece numbers, and a set-to-set distance after
Yang & Lerch (2018), "On the evaluation of generative models in music" (MGEval).

Every number for generated pieces is reported next to the same number for held-out real pieces,
since neither means much alone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# -- per-piece features -----------------------------------------------------------------------


def pitch_class_histogram(notes: np.ndarray) -> np.ndarray:
    h = np.bincount(notes["pitch"].astype(np.int64) % 12, minlength=12).astype(np.float64)
    return h / h.sum() if h.sum() else h


def pitch_class_entropy(notes: np.ndarray) -> float:
    """Shannon entropy (bits) of the pitch-class distribution: 0 = one pitch class, log2(12) max."""
    p = pitch_class_histogram(notes)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def duration_s(notes: np.ndarray) -> float:
    return float(notes["end_s"].max() - min(0.0, notes["start_s"].min())) if len(notes) else 0.0


def note_density(notes: np.ndarray) -> float:
    """Notes per second over the piece's length."""
    d = duration_s(notes)
    return float(len(notes) / d) if d > 0 else 0.0


def ngram_repetition(ids: np.ndarray, n: int = 4) -> float:
    """Share of n-grams of token ids that repeat an earlier one: 1 - unique/total."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.shape[0] < n:
        return 0.0
    grams = np.lib.stride_tricks.sliding_window_view(ids, n)
    unique = np.unique(grams, axis=0).shape[0]
    return float(1.0 - unique / grams.shape[0])


def longest_run(units: np.ndarray) -> int:
    """Length of the longest run of one token repeated back to back (seed 002's greedy failure:
    the same chord forever); 0 for an empty sequence."""
    units = np.asarray(units, dtype=np.int64)
    if units.shape[0] == 0:
        return 0
    starts = np.flatnonzero(np.r_[True, units[1:] != units[:-1], True])
    return int(np.diff(starts).max())


def distinct_share(units: np.ndarray, window: int = 32) -> float:
    """Distinct tokens / tokens in consecutive windows of `window` tokens, averaged (the last,
    shorter window included): near 0 when a sequence loops on a few tokens, 0 when empty.
    Per window, so that a long generated piece and a short real one are judged alike."""
    units = np.asarray(units, dtype=np.int64)
    if units.shape[0] == 0:
        return 0.0
    shares = [
        np.unique(units[i : i + window]).shape[0] / units[i : i + window].shape[0]
        for i in range(0, units.shape[0], window)
    ]
    return float(np.mean(shares))


def repetition_metrics(units_list: list[np.ndarray]) -> dict[str, dict[str, float]]:
    """longest_run and distinct_share of a set of token sequences, as mean and std (seed 002's
    failure, one chord forever, shows as a long run and a distinct share near 1/32)."""
    return {
        "longest_run": summarize([longest_run(u) for u in units_list]),
        "distinct_share": summarize([distinct_share(u) for u in units_list]),
    }


def pitch_range(notes: np.ndarray) -> float:
    return float(notes["pitch"].max() - notes["pitch"].min()) if len(notes) else 0.0


def polyphony(notes: np.ndarray) -> float:
    """Mean number of notes sounding at each distinct onset time."""
    if not len(notes):
        return 0.0
    onsets = np.unique(notes["start_s"])
    starts = np.sort(notes["start_s"])
    ends = np.sort(notes["end_s"])
    sounding = np.searchsorted(starts, onsets, side="right") - np.searchsorted(ends, onsets, side="right")
    return float(sounding.mean())


_TIME_BINS = np.array([0, 0.0625, 0.125, 0.1875, 0.25, 0.375, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, np.inf])


def _time_histogram(values: np.ndarray) -> np.ndarray:
    h = np.histogram(values, bins=_TIME_BINS)[0].astype(np.float64)
    return h / h.sum() if h.sum() else h


def ioi_histogram(notes: np.ndarray) -> np.ndarray:
    """Histogram of inter-onset intervals (seconds) between distinct onset times."""
    return _time_histogram(np.diff(np.unique(notes["start_s"])) if len(notes) > 1 else np.zeros(0))


def note_length_histogram(notes: np.ndarray) -> np.ndarray:
    return _time_histogram(notes["end_s"] - notes["start_s"])


#: name -> feature function, used for the set distance
SET_FEATURES: dict[str, Callable[[np.ndarray], float | np.ndarray]] = {
    "pitch_class_histogram": pitch_class_histogram,
    "pitch_range": pitch_range,
    "note_density": note_density,
    "polyphony": polyphony,
    "ioi_histogram": ioi_histogram,
    "note_length_histogram": note_length_histogram,
}


def summarize(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": round(float(a.mean()), 4), "std": round(float(a.std()), 4)} if a.size else {"mean": 0.0, "std": 0.0}


def piece_metrics(notes_list: list[np.ndarray], ids_list: list[np.ndarray], ngram: int) -> dict[str, dict[str, float]]:
    """The reference design's metrics for a set of pieces, as mean and std."""
    return {
        "pitch_class_entropy": summarize([pitch_class_entropy(n) for n in notes_list]),
        "note_density": summarize([note_density(n) for n in notes_list]),
        "ngram_repetition": summarize([ngram_repetition(i, ngram) for i in ids_list]),
        "notes_per_piece": summarize([len(n) for n in notes_list]),
    }


# -- set distance (MGEval) ---------------------------------------------------------------------


def _pairwise(a: np.ndarray, b: np.ndarray, same: bool) -> np.ndarray:
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    if same:
        return d[np.triu_indices(a.shape[0], k=1)]
    return d.ravel()


def _kde(samples: np.ndarray, grid: np.ndarray, bandwidth: float) -> np.ndarray:
    z = (grid[:, None] - samples[None, :]) / bandwidth
    dens = np.exp(-0.5 * z**2).sum(1) / (samples.shape[0] * bandwidth * np.sqrt(2 * np.pi))
    return dens


def _bandwidth(samples: np.ndarray, scale: float) -> float:
    h = 1.06 * samples.std() * samples.shape[0] ** (-1 / 5)  # Scott/Silverman rule
    return float(max(h, 1e-3 * scale, 1e-9))


def overlap_and_kl(reference: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """Overlapping area of two distance distributions (KDE) and KL(reference || other)."""
    lo = min(reference.min(), other.min())
    hi = max(reference.max(), other.max())
    scale = max(hi - lo, 1e-9)
    h_ref, h_oth = _bandwidth(reference, scale), _bandwidth(other, scale)
    pad = 3 * max(h_ref, h_oth)
    grid = np.linspace(lo - pad, hi + pad, 512)
    dx = grid[1] - grid[0]
    p, q = _kde(reference, grid, h_ref), _kde(other, grid, h_oth)
    overlap = float(np.minimum(p, q).sum() * dx)
    eps = 1e-12
    kl = float((p * np.log((p + eps) / (q + eps))).sum() * dx)
    return min(1.0, overlap), max(0.0, kl)


def set_distance(generated: list[np.ndarray], reference: list[np.ndarray]) -> dict[str, dict[str, float]]:
    """Per feature: overlap (0..1, higher = closer) and KL between the reference set's intra-set
    distances and the generated-to-reference inter-set distances; plus the mean overlap."""
    out: dict[str, dict[str, float]] = {}
    if len(generated) < 1 or len(reference) < 2:
        return out
    for name, fn in SET_FEATURES.items():
        g = np.array([np.atleast_1d(fn(n)) for n in generated], dtype=np.float64)
        r = np.array([np.atleast_1d(fn(n)) for n in reference], dtype=np.float64)
        intra = _pairwise(r, r, same=True)
        inter = _pairwise(g, r, same=False)
        overlap, kl = overlap_and_kl(intra, inter)
        out[name] = {"overlap": round(overlap, 4), "kl": round(kl, 4)}
    return out


def distribution_score(distance: dict[str, dict[str, float]]) -> float:
    """One summary: the mean overlap over features (1 = indistinguishable from real pieces)."""
    vals = [v["overlap"] for v in distance.values()]
    return round(float(np.mean(vals)), 4) if vals else 0.0
