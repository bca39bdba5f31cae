"""midigen.evaluation.metrics: per-piece numbers on pieces with known answers, and the MGEval-style set
distance, which must tell a sample of the same music from noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from midigen.data.midi_io import make_notes, read_notes
from midigen.evaluation import metrics


def line(pitches, step=0.5, dur=0.5):
    """A monophonic line: one note every `step` seconds."""
    start = np.arange(len(pitches)) * step
    return make_notes(start, start + dur, list(pitches))


def test_pitch_class_entropy_is_zero_for_one_pitch_class_in_any_octave():
    assert metrics.pitch_class_entropy(line([48, 60, 72, 84, 60])) == pytest.approx(0.0, abs=1e-12)


def test_pitch_class_entropy_is_log2_12_for_all_twelve_equally():
    assert metrics.pitch_class_entropy(line(range(60, 84))) == pytest.approx(math.log2(12))


def test_pitch_class_entropy_of_two_equally_used_classes_is_one_bit_and_of_nothing_is_zero():
    assert metrics.pitch_class_entropy(line([60, 67, 72, 55])) == pytest.approx(1.0)
    assert metrics.pitch_class_entropy(line([])) == 0.0


def test_note_density_is_notes_per_second():
    assert metrics.note_density(line(range(60, 70), step=0.5, dur=0.5)) == pytest.approx(10 / 5.0)
    chord = make_notes([0.0] * 3, 2.0, [60, 64, 67])
    assert metrics.note_density(chord) == pytest.approx(1.5)
    assert metrics.note_density(line([])) == 0.0


def test_ngram_repetition_is_zero_for_distinct_tokens_and_near_one_for_one_repeated_token():
    assert metrics.ngram_repetition(np.arange(100), n=4) == 0.0
    repeated = metrics.ngram_repetition(np.full(100, 7), n=4)
    assert repeated == pytest.approx(1 - 1 / 97)
    assert repeated > 0.98


def test_ngram_repetition_counts_a_repeated_phrase():
    phrase = [5, 9, 13, 17, 21, 25, 29, 33]
    once_more = metrics.ngram_repetition(np.array(phrase * 2), n=4)
    # 13 four-grams, the 5 that start inside the second copy repeat one from the first
    assert once_more == pytest.approx(1 - 8 / 13)
    assert metrics.ngram_repetition(np.array([1, 2]), n=4) == 0.0


def test_polyphony_of_a_chord_is_its_number_of_notes():
    assert metrics.polyphony(make_notes([1.0] * 4, 3.0, [48, 60, 64, 67])) == pytest.approx(4.0)
    assert metrics.polyphony(line([60, 62, 64, 65])) == pytest.approx(1.0), "a legato line is one voice"


def test_polyphony_counts_held_notes_at_each_onset():
    # a 3-note chord held 0..2 s, a melody note at 1 s (4 sounding), another at 2 s (chord gone: 1)
    notes = make_notes([0, 0, 0, 1.0, 2.0], [2, 2, 2, 2.0, 3.0], [48, 52, 55, 72, 74])
    assert metrics.polyphony(notes) == pytest.approx((3 + 4 + 1) / 3)


def test_pitch_range_and_time_histograms_are_well_formed():
    notes = make_notes([0, 0.25, 0.5, 1.5], [0.25, 0.5, 1.5, 3.5], [50, 62, 71, 55])
    assert metrics.pitch_range(notes) == 21
    for h in (metrics.ioi_histogram(notes), metrics.note_length_histogram(notes), metrics.pitch_class_histogram(notes)):
        assert h.sum() == pytest.approx(1.0) and (h >= 0).all()


# -- set distance -----------------------------------------------------------------------------


def segments(notes: np.ndarray, length: float = 8.0) -> list[np.ndarray]:
    """Cut a piece into consecutive excerpts of `length` seconds, each starting at 0."""
    out = []
    t, end = 0.0, float(notes["end_s"].max())
    while t + length <= end:
        seg = notes[(notes["start_s"] >= t) & (notes["start_s"] < t + length)].copy()
        seg["start_s"] -= t
        seg["end_s"] -= t
        out.append(seg)
        t += length
    return out


def noise_piece(seed: int, n: int = 60, length: float = 8.0) -> np.ndarray:
    """Random pitches over the whole piano at random times with short random lengths."""
    rng = np.random.default_rng(seed)
    start = np.sort(rng.uniform(0, length, n))
    return make_notes(start, start + rng.uniform(0.02, 0.2, n), rng.integers(21, 109, n))


@pytest.fixture(scope="module")
def chorale_sets(chorale_paths):
    """Two disjoint random halves of 8-second chorale excerpts, and as many noise pieces."""
    excerpts = [s for p in chorale_paths for s in segments(read_notes(p))]
    assert len(excerpts) >= 16
    order = np.random.default_rng(0).permutation(len(excerpts))
    half = len(excerpts) // 2
    reference = [excerpts[i] for i in order[:half]]
    same = [excerpts[i] for i in order[half:]]
    noise = [noise_piece(seed) for seed in range(len(same))]
    return reference, same, noise


def test_set_distance_scores_the_same_music_far_above_noise(chorale_sets):
    reference, same, noise = chorale_sets
    to_self = metrics.set_distance(reference, reference)
    to_same = metrics.set_distance(same, reference)
    to_noise = metrics.set_distance(noise, reference)
    assert set(to_same) == set(metrics.SET_FEATURES)
    s_self, s_same, s_noise = (metrics.distribution_score(d) for d in (to_self, to_same, to_noise))
    assert s_self > 0.8
    assert s_same > 0.7
    assert s_noise < 0.6
    assert s_same > s_noise + 0.25
    # feature by feature the other half of the chorales overlaps more than noise does
    for name in ("pitch_range", "polyphony", "note_length_histogram", "ioi_histogram"):
        assert to_same[name]["overlap"] > to_noise[name]["overlap"], name
        assert to_same[name]["kl"] < to_noise[name]["kl"], name


def test_set_distance_values_and_the_score_are_in_range(chorale_sets):
    reference, same, noise = chorale_sets
    for generated in (reference, same, noise, noise[:1], [line([60]), line([61, 62])]):
        distance = metrics.set_distance(generated, reference)
        for name, v in distance.items():
            assert 0.0 <= v["overlap"] <= 1.0, name
            assert v["kl"] >= 0.0 and math.isfinite(v["kl"]), name
        score = metrics.distribution_score(distance)
        assert 0.0 <= score <= 1.0


def test_set_distance_needs_two_reference_pieces_and_an_empty_distance_scores_zero(chorale_sets):
    reference, same, _ = chorale_sets
    assert metrics.set_distance(same, reference[:1]) == {}
    assert metrics.set_distance([], reference) == {}
    assert metrics.distribution_score({}) == 0.0


def test_overlap_of_a_distribution_with_itself_is_one_and_with_a_far_one_zero():
    x = np.random.default_rng(1).normal(0, 1, 300)
    overlap, kl = metrics.overlap_and_kl(x, x)
    assert overlap == pytest.approx(1.0, abs=1e-3) and kl == pytest.approx(0.0, abs=1e-6)
    overlap, kl = metrics.overlap_and_kl(x, x + 20)
    assert overlap < 0.01 and kl > 1


def test_piece_metrics_summarise_each_metric_as_mean_and_std():
    pieces = [line([60, 62, 64, 65]), line([60] * 8)]
    ids = [np.arange(10), np.full(10, 3)]
    out = metrics.piece_metrics(pieces, ids, ngram=4)
    assert set(out) == {"pitch_class_entropy", "note_density", "ngram_repetition", "notes_per_piece"}
    assert out["notes_per_piece"] == {"mean": 6.0, "std": 2.0}
    assert out["pitch_class_entropy"]["mean"] == pytest.approx(1.0, abs=1e-4)  # (2 + 0) / 2
    assert out["ngram_repetition"]["mean"] == pytest.approx((0 + (1 - 1 / 7)) / 2, abs=1e-4)
