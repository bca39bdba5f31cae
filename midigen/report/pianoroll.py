"""Piano-roll and drum-grid pictures of note arrays (PNG, ~100 dpi, matplotlib's Agg canvas).

Figures are built with `matplotlib.figure.Figure` directly, never through pyplot, so no global
state or GUI backend is involved and the functions are safe in worker processes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from midigen.representations.grid import DRUM_CLASSES

DPI = 100
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
#: one colour per instrument (program), cycled; drums in a pitched piece are grey
COLOURS = ("#3b6fb6", "#d1603d", "#4a9c5d", "#8e5fb0", "#c9a227", "#2aa3a3", "#b5487a", "#6b6b6b")
DRUM_LABELS = tuple(name.replace("_", " ") for name, _ in DRUM_CLASSES)
_PITCH_TO_ROW = np.full(128, len(DRUM_CLASSES), dtype=np.int64)  # unknown pitches: an "other" row
for _row, (_, _pitches) in enumerate(DRUM_CLASSES):
    _PITCH_TO_ROW[list(_pitches)] = _row


def pitch_name(pitch: int) -> str:
    """MIDI pitch -> scientific name (60 -> C4)."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def is_drum_piece(notes: np.ndarray) -> bool:
    """True when every note is a drum hit (MIDI channel 10)."""
    return notes.shape[0] > 0 and bool(notes["is_drum"].all())


def _boxes(x0: np.ndarray, x1: np.ndarray, y: np.ndarray, height: float) -> np.ndarray:
    """(n, 4, 2) rectangle corners, for one PolyCollection instead of n patches (fast)."""
    h = height / 2
    return np.stack(
        [np.stack([x0, y - h], 1), np.stack([x1, y - h], 1), np.stack([x1, y + h], 1), np.stack([x0, y + h], 1)], 1
    )


def _pitch_range(notes: np.ndarray) -> tuple[int, int]:
    """Lowest and highest key to show, with two keys of margin (C2..C6 for no notes)."""
    if notes.shape[0] == 0:
        return 36, 84
    return int(notes["pitch"].min()) - 2, int(notes["pitch"].max()) + 2


def _draw_roll(ax, notes: np.ndarray, keys: tuple[int, int] | None = None) -> None:
    pitched = notes[~notes["is_drum"]]
    drums = notes[notes["is_drum"]]
    if pitched.shape[0]:
        programs = np.unique(pitched["program"])
        for i, program in enumerate(programs):
            sel = pitched[pitched["program"] == program]
            alpha = 0.45 + 0.55 * np.clip(sel["velocity"] / 127.0, 0, 1)
            colour = np.array([int(COLOURS[i % len(COLOURS)][k : k + 2], 16) / 255 for k in (1, 3, 5)])
            faces = np.column_stack([np.tile(colour, (sel.shape[0], 1)), alpha])
            boxes = _boxes(sel["start_s"], np.maximum(sel["end_s"], sel["start_s"] + 0.02), sel["pitch"] * 1.0, 0.85)
            # a thin white edge keeps repeated notes of one pitch apart
            ax.add_collection(PolyCollection(boxes, facecolors=faces, edgecolors="white", linewidths=0.4))
    if drums.shape[0]:
        # drum hits in a pitched piece: grey crosses at their key number
        ax.scatter(drums["start_s"], drums["pitch"], s=12, c="#888888", marker="x", linewidths=0.9, clip_on=False)
    lo, hi = keys or _pitch_range(notes)
    ax.set_ylim(lo - 0.5, hi + 0.5)
    octaves = [p for p in range(lo, hi + 1) if p % 12 == 0]
    ax.set_yticks(octaves, [pitch_name(p) for p in octaves])
    for p in octaves:
        ax.axhline(p - 0.5, color="#e4e4e4", linewidth=0.6, zorder=0)


def _drum_rows(notes: np.ndarray) -> int:
    """9 drum classes, plus an "other" row when a hit uses a key no class knows."""
    return len(DRUM_CLASSES) + int(bool((_PITCH_TO_ROW[np.clip(notes["pitch"], 0, 127)] == len(DRUM_CLASSES)).any()))


#: hits at least this far (in steps) from the grid get an offset mark
OFF_GRID = 1 / 64
EARLY, LATE = "#2f6fd0", "#d0452f"


def grid_step_s(path: str | Path) -> float | None:
    """Seconds per 16th-note step at a MIDI file's first tempo (120 bpm without one), the grid
    offsets are drawn against; None when the file cannot be read."""
    from midigen.data.midi_io import read_tick_notes
    from midigen.errors import MidiError

    try:
        tempos = read_tick_notes(path).score.tempos.numpy()
    except MidiError:
        return None
    mspq = float(tempos["mspq"][0]) if tempos["mspq"].shape[0] and tempos["mspq"][0] > 0 else 500000.0
    return mspq / 1e6 / 4


def _draw_drums(ax, notes: np.ndarray, n_rows: int, labels: bool = True, step_s: float | None = None) -> None:
    """The drum grid: a row per class, each hit a bar whose height and colour grow with its
    velocity; with step_s (seconds per 16th) a hit off the grid also gets a thin line from its
    grid step to its onset (blue: early, red: late)."""
    rows = _PITCH_TO_ROW[np.clip(notes["pitch"], 0, 127)]
    for r in range(n_rows):
        if r % 2 == 0:
            ax.axhspan(r - 0.5, r + 0.5, color="#f3f3f3", zorder=0, linewidth=0)
    if notes.shape[0]:
        loud = np.clip(notes["velocity"] / 127.0, 0, 1)
        # a hit is drawn at least one 16th at 120 bpm wide, whatever its MIDI duration
        end = np.maximum(notes["end_s"], notes["start_s"] + 0.125)
        heights = 0.2 + 0.7 * loud
        y = rows * 1.0
        boxes = np.concatenate(
            [_boxes(notes["start_s"][i : i + 1], end[i : i + 1], y[i : i + 1], heights[i]) for i in range(len(notes))]
        )
        # light yellow (soft) to dark red (loud), as in a velocity lane
        faces = np.column_stack([0.98 - 0.45 * loud, 0.85 - 0.8 * loud, 0.45 - 0.35 * loud, np.full(len(notes), 0.95)])
        ax.add_collection(PolyCollection(boxes, facecolors=faces, edgecolors="white", linewidths=0.3))
        if step_s:
            grid = np.round(notes["start_s"] / step_s) * step_s
            off = np.abs(notes["start_s"] - grid) >= OFF_GRID * step_s
            for t0, t1, row in zip(grid[off], notes["start_s"][off], y[off], strict=True):
                ax.plot([t0, t1], [row - 0.45, row - 0.45], color=LATE if t1 > t0 else EARLY, linewidth=1.2)
                ax.plot([t0, t0], [row - 0.5, row - 0.3], color="#555555", linewidth=0.6)
    ax.set_ylim(-0.5, n_rows - 0.5)
    names = DRUM_LABELS + (("other",) if n_rows > len(DRUM_CLASSES) else ())
    ax.set_yticks(range(n_rows), names)
    ax.tick_params(axis="y", labelleft=labels)


def _finish(ax, notes: np.ndarray, seconds: float | None) -> None:
    end = float(notes["end_s"].max()) if notes.shape[0] else 1.0
    ax.set_xlim(0, seconds if seconds is not None else max(end, 1.0))
    ax.tick_params(labelsize=7, length=2)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def draw_piece(
    notes: np.ndarray,
    path: str | Path,
    title: str = "",
    width_in: float = 9.0,
    seconds: float | None = None,
    step_s: float | None = None,
) -> None:
    """A piano roll (pitch over seconds), or a drum grid when every note is a drum hit (velocity
    as bar height and colour; with step_s, offsets from the 16th grid marked); the time axis
    spans `seconds` (default: the piece), so pieces drawn with one value share a scale."""
    drum = is_drum_piece(notes)
    fig = Figure(figsize=(width_in, 2.1 if drum else 2.6))
    ax = fig.add_subplot()
    if drum:
        _draw_drums(ax, notes, _drum_rows(notes), step_s=step_s)
    else:
        _draw_roll(ax, notes)
    _finish(ax, notes, seconds)
    ax.set_xlabel("seconds", fontsize=7)
    if title:
        ax.set_title(title, fontsize=8, loc="left")
    fig.tight_layout(pad=0.4)
    fig.savefig(path, dpi=DPI)


def draw_strip(pieces: list[np.ndarray], labels: list[str], path: str | Path, title: str = "") -> None:
    """Several short pieces side by side on one time scale (an interpolation, step by step)."""
    n = len(pieces)
    seconds = max([float(p["end_s"].max()) for p in pieces if p.shape[0]] + [1.0])
    fig = Figure(figsize=(min(1.2 + 1.6 * n, 16.0), 2.0))
    axes = fig.subplots(1, n, squeeze=False)[0]
    drum = all(is_drum_piece(p) or p.shape[0] == 0 for p in pieces)
    everything = np.concatenate(pieces)
    keys, rows = _pitch_range(everything), _drum_rows(everything)  # the same scale in every panel
    for i, (ax, notes, label) in enumerate(zip(axes, pieces, labels, strict=True)):
        if drum:
            _draw_drums(ax, notes, rows, labels=i == 0)
        else:
            _draw_roll(ax, notes, keys)
            ax.tick_params(axis="y", labelleft=i == 0)
        _finish(ax, notes, seconds)
        ax.set_title(label, fontsize=7)
        ax.set_xticks([])
    if title:
        fig.suptitle(title, fontsize=8, x=0.01, ha="left")
    fig.tight_layout(pad=0.4, w_pad=0.2)
    fig.savefig(path, dpi=DPI)
