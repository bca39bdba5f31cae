"""A small corpus laid out like the Groove MIDI Dataset, built inside the tests.

Real GMD files cannot be downloaded here, so each file is a drummer-like performance: one of a
few grooves (rock, funk, hip-hop, jazz ride) with random variations per bar, a fill on the last
bar of every 4-bar phrase and a crash after it, at the file's own tempo, on MIDI channel 10 with
GMD's pitches (including ones Magenta folds into a class, such as 22 and 26 for hi-hats).
`info.csv` has GMD's columns, its split column among them.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pretty_midi

KICK, SNARE, CLOSED_HH, OPEN_HH, LOW_TOM, MID_TOM, HIGH_TOM, CRASH, RIDE = 36, 38, 42, 46, 45, 48, 50, 49, 51

#: groove name -> {pitch: steps of a 16-step bar}
GROOVES: dict[str, dict[int, tuple[int, ...]]] = {
    "rock": {KICK: (0, 8, 10), SNARE: (4, 12), CLOSED_HH: tuple(range(0, 16, 2))},
    "funk": {KICK: (0, 3, 10), SNARE: (4, 12), CLOSED_HH: tuple(range(16))},
    "hiphop": {KICK: (0, 7, 10), SNARE: (4, 12), CLOSED_HH: (0, 2, 4, 6, 8, 10, 12), OPEN_HH: (14,)},
    "jazz": {KICK: (0,), RIDE: (0, 4, 6, 8, 12, 14), 44: (4, 12)},
}
FILL = {HIGH_TOM: (8, 9), MID_TOM: (10, 11), LOW_TOM: (12, 13), SNARE: (14, 15)}
INFO_COLUMNS = [
    "drummer",
    "session",
    "id",
    "style",
    "bpm",
    "beat_type",
    "time_signature",
    "midi_filename",
    "audio_filename",
    "duration",
    "split",
]


def drum_bars(groove: str, n_bars: int, rng: np.random.Generator) -> list[list[tuple[int, int, int]]]:
    """Per bar, (step, pitch, velocity) hits: the groove, small random changes, phrase fills."""
    bars = []
    for b in range(n_bars):
        hits = []
        fill = b % 4 == 3
        for pitch, steps in GROOVES[groove].items():
            for s in steps:
                if fill and s >= 8 and pitch != KICK:
                    continue
                if rng.random() < 0.05:  # a dropped hit now and then
                    continue
                hits.append((s, pitch, int(rng.integers(70, 120))))
        if rng.random() < 0.3:  # an extra kick on an off-beat
            hits.append((int(rng.choice([6, 11, 14])), KICK, int(rng.integers(60, 100))))
        if fill:
            hits += [(s, p, int(rng.integers(80, 127))) for p, steps in FILL.items() for s in steps]
        if b > 0 and b % 4 == 0:
            hits.append((0, CRASH, 110))
        bars.append(hits)
    return bars


def write_drum_midi(
    path: Path,
    bars: list[list[tuple[int, int, int]]],
    bpm: float,
    time_signature: tuple[int, int] = (4, 4),
    extra_piano: bool = False,
) -> Path:
    """Hits on a 16th grid at `bpm` as a drum track (channel 10); optionally a piano track too."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(*time_signature, 0.0))
    step_s = 60.0 / bpm / 4
    steps_per_bar = 16 * time_signature[0] // time_signature[1]  # sixteenths per bar
    drums = pretty_midi.Instrument(program=0, is_drum=True, name="drums")
    for b, hits in enumerate(bars):
        for s, pitch, vel in hits:
            t = (b * steps_per_bar + s) * step_s
            drums.notes.append(pretty_midi.Note(velocity=vel, pitch=pitch, start=t, end=t + step_s / 2))
    if extra_piano:
        piano = pretty_midi.Instrument(program=0, name="piano")
        for b in range(len(bars)):
            for q, pitch in enumerate((60, 64, 67, 72)):
                t = (b * steps_per_bar + 4 * q) * step_s
                piano.notes.append(pretty_midi.Note(velocity=80, pitch=pitch, start=t, end=t + 4 * step_s))
        pm.instruments.append(piano)
    pm.instruments.append(drums)
    path.parent.mkdir(parents=True, exist_ok=True)
    pm.write(str(path))
    return path


def write_gmd_like(root: Path, n_files: int = 12, seed: int = 0, bars: int = 12) -> list[dict]:
    """n_files drum performances under root/drummerN/sessionM/ plus root/info.csv; returns its rows.

    Splits: every 5th file validation, every 6th test (GMD has its own split column)."""
    rng = np.random.default_rng(seed)
    rows = []
    styles = list(GROOVES)
    for i in range(n_files):
        style = styles[i % len(styles)]
        bpm = int(rng.integers(85, 135))
        rel = f"drummer{i % 3 + 1}/session{i // 3 + 1}/{i + 1}_{style}_{bpm}_beat_4-4.mid"
        write_drum_midi(root / rel, drum_bars(style, bars, rng), bpm)
        split = "validation" if i % 5 == 4 else "test" if i % 6 == 5 else "train"
        rows.append(
            {
                "drummer": f"drummer{i % 3 + 1}",
                "session": f"drummer{i % 3 + 1}/session{i // 3 + 1}",
                "id": f"drummer{i % 3 + 1}/session{i // 3 + 1}/{i + 1}",
                "style": style,
                "bpm": bpm,
                "beat_type": "beat",
                "time_signature": "4-4",
                "midi_filename": rel,
                "audio_filename": rel.replace(".mid", ".wav"),
                "duration": round(bars * 4 * 60 / bpm, 3),
                "split": split,
            }
        )
    with open(root / "info.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=INFO_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return rows
