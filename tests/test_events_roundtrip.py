"""Event tokenizer round trip on real Bach chorales: decode(encode(notes)) against the input."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from midigen.data.midi_io import read_notes
from midigen.representations import EventRepresentation

EPS = 1e-9

# (time_step, pitch_min, pitch_max, velocity_bins): the default grid, a coarse odd grid that
# collapses many notes onto one step, and a narrow pitch range that drops the outer voices.
CONFIGS = [
    pytest.param(0.05, 21, 108, 0, id="ts0.05-piano"),
    pytest.param(0.13, 0, 127, 32, id="ts0.13-vel32"),
    pytest.param(0.02, 55, 70, 0, id="ts0.02-narrow"),
]


def _in_range(notes, rep):
    return notes[(notes["pitch"] >= rep.pitch_min) & (notes["pitch"] <= rep.pitch_max)]


@pytest.fixture(scope="module")
def chorale_notes(chorale_paths):
    return {p.name: read_notes(p) for p in chorale_paths}


def test_chorales_contain_unisons_and_out_of_range_notes_for_these_checks(chorale_notes):
    """Guards the fixture: the round-trip tests below exercise de-duplication and pitch dropping."""
    all_notes = np.concatenate(list(chorale_notes.values()))
    keys = list(zip(all_notes["pitch"].tolist(), np.rint(all_notes["start_s"] / 0.05).tolist(), strict=True))
    assert len(set(keys)) < len(keys), "expected unison voices striking the same pitch at once"
    assert ((all_notes["pitch"] < 55) | (all_notes["pitch"] > 70)).any()


@pytest.mark.parametrize("time_step,pitch_min,pitch_max,velocity_bins", CONFIGS)
def test_round_trip_keeps_the_set_of_quantized_pitch_onsets(
    chorale_notes, time_step, pitch_min, pitch_max, velocity_bins
):
    rep = EventRepresentation(time_step, 100, velocity_bins, pitch_min, pitch_max)
    for name, notes in chorale_notes.items():
        kept = _in_range(notes, rep)
        expected = set(
            zip(kept["pitch"].tolist(), np.rint(kept["start_s"] / time_step).astype(int).tolist(), strict=True)
        )
        decoded = rep.decode(rep.encode(notes))
        got = list(
            zip(decoded["pitch"].tolist(), np.rint(decoded["start_s"] / time_step).astype(int).tolist(), strict=True)
        )
        assert len(got) == len(set(got)), f"{name}: a pitch decoded twice at the same step"
        assert set(got) == expected, f"{name}: decoded (pitch, step) set differs from the quantized input"
        assert decoded["pitch"].min() >= pitch_min and decoded["pitch"].max() <= pitch_max


@pytest.mark.parametrize("time_step,pitch_min,pitch_max,velocity_bins", CONFIGS)
def test_round_trip_keeps_onsets_within_half_a_step(chorale_notes, time_step, pitch_min, pitch_max, velocity_bins):
    rep = EventRepresentation(time_step, 100, velocity_bins, pitch_min, pitch_max)
    for name, notes in chorale_notes.items():
        kept = _in_range(notes, rep)
        decoded = rep.decode(rep.encode(notes))
        assert len(decoded) > 0
        for pitch in np.unique(decoded["pitch"]):
            orig = np.sort(kept["start_s"][kept["pitch"] == pitch])
            dec = decoded["start_s"][decoded["pitch"] == pitch]
            # every decoded onset is near an original onset of that pitch ...
            nearest = np.min(np.abs(dec[:, None] - orig[None, :]), axis=1)
            assert nearest.max() <= time_step / 2 + EPS, f"{name}: pitch {pitch} onset off by {nearest.max()}"
            # ... and every original onset is near a decoded one (nothing lost)
            back = np.min(np.abs(orig[:, None] - dec[None, :]), axis=1)
            assert back.max() <= time_step / 2 + EPS, f"{name}: pitch {pitch} original onset lost"


@pytest.mark.parametrize("time_step,pitch_min,pitch_max,velocity_bins", CONFIGS)
def test_round_trip_keeps_durations_within_one_step_unless_the_pitch_restarts(
    chorale_notes, time_step, pitch_min, pitch_max, velocity_bins
):
    rep = EventRepresentation(time_step, 100, velocity_bins, pitch_min, pitch_max)
    checked = truncated = 0
    for name, notes in chorale_notes.items():
        kept = _in_range(notes, rep)
        # longest original duration per (pitch, step): de-duplication keeps the longer note
        longest: dict[tuple[int, int], float] = defaultdict(float)
        for n in kept:
            key = (int(n["pitch"]), int(np.rint(n["start_s"] / time_step)))
            longest[key] = max(longest[key], float(n["end_s"] - n["start_s"]))
        decoded = rep.decode(rep.encode(notes))
        for pitch in np.unique(decoded["pitch"]):
            dec = decoded[decoded["pitch"] == pitch]
            dec = dec[np.argsort(dec["start_s"])]
            for i, n in enumerate(dec):
                step = int(np.rint(n["start_s"] / time_step))
                want = longest[(int(pitch), step)]
                got = float(n["end_s"] - n["start_s"])
                assert got > 0
                restarts = i + 1 < len(dec) and abs(dec["start_s"][i + 1] - n["end_s"]) < EPS
                if restarts and got < want - time_step - EPS:
                    truncated += 1  # closed where the same pitch is struck again
                    continue
                checked += 1
                assert abs(got - want) <= time_step + EPS, (
                    f"{name}: pitch {pitch} at {n['start_s']:.3f}s lasts {got:.3f}s, original {want:.3f}s"
                )
    assert checked > 100


def test_round_trip_keeps_velocity_bins_on_chorales(chorale_notes):
    rep = EventRepresentation(0.05, 100, 16, 0, 127)
    for notes in chorale_notes.values():
        decoded = rep.decode(rep.encode(notes))
        orig_bin = {}
        for n in notes:
            orig_bin.setdefault((int(n["pitch"]), int(np.rint(n["start_s"] / 0.05))), set()).add(
                int(rep.velocity_bin(n["velocity"]))
            )
        for n in decoded:
            key = (int(n["pitch"]), int(np.rint(n["start_s"] / 0.05)))
            assert int(rep.velocity_bin(n["velocity"])) in orig_bin[key]


def test_encoding_is_framed_by_bos_and_eos_and_fits_the_vocabulary(chorale_notes):
    rep = EventRepresentation(0.05, 100, 0, 21, 108)
    for notes in chorale_notes.values():
        ids = rep.encode(notes)
        assert ids.dtype == np.uint16
        assert ids[0] == 1 and ids[-1] == 2
        assert not np.isin(ids[1:-1], [0, 1, 2]).any()
        assert ids.max() < len(rep)
