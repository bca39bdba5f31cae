"""Rhythm metrics of grid windows, on windows whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from midigen.evaluation.grid_metrics import (
    class_hit_rates,
    empty_beat_rate,
    groove_consistency,
    hits_per_bar,
    interpolation_smoothness,
)
from midigen.representations.grid import NOTE_ON_BASE, DrumGrid, MelodyGrid

KICK, SNARE, HAT = 1, 2, 4
ROCK_BAR = np.array([KICK | HAT, 0, HAT, 0, SNARE | HAT, 0, HAT, 0] * 2)


def test_a_repeated_bar_is_perfectly_consistent_and_a_changed_bar_is_not():
    rep = DrumGrid()
    same = np.tile(ROCK_BAR, 4)[None]
    assert groove_consistency(same, rep)[0] == 1.0
    changed = same.copy()
    changed[0, 16:32] = 0  # bar 2 silent: its 8 onset steps differ from bars 1 and 3
    assert groove_consistency(changed, rep)[0] == pytest.approx(1 - (8 / 16 + 8 / 16 + 0) / 3)


def test_hits_per_bar_counts_every_class_hit():
    # per bar: kick x2, snare x2, hat x8 = 12 hits on 8 onset steps
    assert hits_per_bar(np.tile(ROCK_BAR, 4)[None], DrumGrid())[0] == 12


def test_empty_beat_rate_counts_quarters_without_any_onset():
    rep = DrumGrid()
    window = np.zeros(64, dtype=np.int64)
    window[[0, 17, 40]] = KICK  # beats 0, 4 and 10 of 16
    assert empty_beat_rate(window[None], rep)[0] == pytest.approx(13 / 16)


def test_melody_onsets_are_note_ons_only():
    rep = MelodyGrid(bars=1)
    window = np.zeros(16, dtype=np.int64)
    window[[0, 4]] = NOTE_ON_BASE + 60
    window[8] = 1  # NOTE_OFF is no onset
    assert hits_per_bar(window[None], rep)[0] == 2
    assert empty_beat_rate(window[None], rep)[0] == pytest.approx(2 / 4)


def test_class_hit_rates_name_magentas_classes():
    rates = class_hit_rates(np.tile(ROCK_BAR, 4)[None], DrumGrid())
    assert rates["kick"] == pytest.approx(2 / 16)
    assert rates["closed_hihat"] == pytest.approx(8 / 16)
    assert rates["ride"] == 0


def test_interpolation_smoothness_tells_a_gradual_walk_from_a_jump():
    a, b = np.zeros(64, dtype=np.int64), np.full(64, KICK)
    gradual = np.stack([np.where(np.arange(64) < k, KICK, 0) for k in (0, 16, 32, 48, 64)])
    jump = np.stack([a, a, a, a, b])
    g, j = interpolation_smoothness(gradual), interpolation_smoothness(jump)
    assert g["ends"] == j["ends"] == 1.0
    assert g["consecutive"] == pytest.approx(0.25) and g["ratio"] == pytest.approx(0.25)
    assert j["consecutive"] == pytest.approx(0.25)  # the same mean, but all of it in one step
    assert g["largest_step"] == pytest.approx(0.25) and j["largest_step"] == 1.0
    assert np.isnan(interpolation_smoothness(np.stack([a, a]))["ratio"])
