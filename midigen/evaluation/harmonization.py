"""Harmonizing Bach's sopranos (evaluate, for models of voices tokens): the soprano of every
held-out test chorale goes through midigen.generation.harmonize, and what the model writes
below it is compared with what Bach wrote, with the same numbers computed on both:

- voice_count_tv: total-variation distance between the shares of frames with 0, 1, ... voices;
- parallel_fifths / parallel_octaves per 100 frame changes: a pair of voices (by rank in the
  frame, 0 = top) a fifth (or an octave / unison) apart, modulo octaves, in two consecutive
  sixteenth frames, both voices moving in the same direction;
- pitch_in_key: share of sounding voice-frames in the diatonic scale that holds most of them (per
  piece, as midigen.evaluation.hearing counts it);
- range_violations: in frames of four voices, the share of voice entries outside the textbook
  SATB ranges (soprano C4-G5, alto G3-C5, tenor C3-G4, bass E2-C4);
- voice_accuracy: per lower voice, the share of Bach's frames where the model chose his pitch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from midigen.evaluation.hearing import in_key_notes, total_variation

#: (lowest, highest) MIDI pitch of soprano, alto, tenor and bass
SATB_RANGES = ((60, 79), (55, 72), (48, 67), (40, 60))


def voice_grid(rep, ids: np.ndarray) -> np.ndarray:
    """(frames, max_voices) pitches of a voices id sequence, per frame from the top (-1: none)."""
    sound = rep.frames(rep.decode_notes(ids)).sound
    grid = np.full((sound.shape[0], rep.max_voices), -1, dtype=np.int64)
    for f, row in enumerate(sound):
        pitches = (np.flatnonzero(row)[::-1] + rep.pitch_min)[: rep.max_voices]
        grid[f, : pitches.shape[0]] = pitches
    return grid


def parallels(grid: np.ndarray) -> tuple[int, int, int]:
    """(parallel fifths, parallel octaves, frame changes) of a voice grid."""
    a, b = grid[:-1], grid[1:]
    fifths = octaves = 0
    voices = grid.shape[1]
    for i in range(voices):
        for j in range(i + 1, voices):
            present = (a[:, i] >= 0) & (a[:, j] >= 0) & (b[:, i] >= 0) & (b[:, j] >= 0)
            move_i, move_j = b[:, i] - a[:, i], b[:, j] - a[:, j]
            same_way = present & (np.sign(move_i) == np.sign(move_j)) & (move_i != 0)
            before, after = (a[:, i] - a[:, j]) % 12, (b[:, i] - b[:, j]) % 12
            fifths += int((same_way & (before == 7) & (after == 7)).sum())
            octaves += int((same_way & (before == 0) & (after == 0)).sum())
    return fifths, octaves, max(0, grid.shape[0] - 1)


def grid_numbers(grids: list[np.ndarray], voices: int) -> dict[str, Any]:
    """The numbers of the module docstring (but accuracy) for a set of voice grids."""
    counts = np.zeros(voices + 1, dtype=np.int64)
    fifths = octaves = changes = in_key = notes = out_of_range = entries = 0
    for g in grids:
        counts += np.bincount((g >= 0).sum(axis=1), minlength=voices + 1)[: voices + 1]
        f, o, c = parallels(g)
        fifths, octaves, changes = fifths + f, octaves + o, changes + c
        pitches = g[g >= 0]
        in_key, notes = in_key + in_key_notes(pitches), notes + pitches.shape[0]
        if g.shape[1] == 4:
            full = g[(g >= 0).sum(axis=1) == 4]
            for k, (lo, hi) in enumerate(SATB_RANGES):
                out_of_range += int(((full[:, k] < lo) | (full[:, k] > hi)).sum())
            entries += full.size
    per100 = 100.0 / max(1, changes)
    return {
        "voice_counts": (counts / max(1, counts.sum())).round(4).tolist(),
        "parallel_fifths": round(fifths * per100, 4),
        "parallel_octaves": round(octaves * per100, 4),
        "pitch_in_key": round(in_key / max(1, notes), 4),
        "range_violations": round(out_of_range / entries, 4) if entries else None,
        "frames": int(counts.sum()),
    }


def evaluate_harmonization(
    model: nn.Module, rep, test_ids: list[np.ndarray], generate_params: dict[str, Any], device: torch.device
) -> dict[str, Any]:
    """Harmonize the soprano of each test chorale in one batch (the generate params' sampling
    controls and max_note_beats, the representation's voices) and compare with Bach's voices."""
    from midigen.generation.grammar import GrammarLimits
    from midigen.generation.harmonize import harmonize_many, melody_frames
    from midigen.models.base import request_from

    pieces = [ids for ids in test_ids if rep.decode_notes(ids).shape[0]]
    if not pieces:
        return {"pieces": 0}
    bach = [voice_grid(rep, ids) for ids in pieces]
    # the top line with its own onsets: a repeated soprano note stays two notes
    melodies = [melody_frames(rep, rep.decode_notes(ids), positions=rep.decode_voiced(ids).positions) for ids in pieces]
    limits = GrammarLimits(generate_params["max_note_beats"], rep.max_voices, generate_params["tempo"])
    request = request_from(generate_params, num=len(melodies), limits=limits)
    ours = [voice_grid(rep, ids) for ids in harmonize_many(model, rep, melodies, request, device)]
    ours_numbers = grid_numbers(ours, rep.max_voices)
    bach_numbers = grid_numbers(bach, rep.max_voices)
    accuracy = []
    for k in range(1, rep.max_voices):
        right = total = 0
        for b, o in zip(bach, ours, strict=True):
            n = min(b.shape[0], o.shape[0])
            has = b[:n, k] >= 0
            right += int((o[:n, k][has] == b[:n, k][has]).sum())
            total += int(has.sum())
        accuracy.append(round(right / total, 4) if total else None)
    soprano_kept = all(
        np.array_equal(o[: b.shape[0], 0], b[:, 0]) and o.shape[0] == b.shape[0]
        for b, o in zip(bach, ours, strict=True)
    )
    return {
        "pieces": len(bach),
        "voice_count_tv": round(
            total_variation(np.asarray(ours_numbers["voice_counts"]), np.asarray(bach_numbers["voice_counts"])), 4
        ),
        "voice_accuracy": accuracy,
        "soprano_kept": soprano_kept,
        "ours": ours_numbers,
        "bach": bach_numbers,
    }


def summary_line(h: dict[str, Any]) -> str:
    """What the evaluate stage prints about the harmonizations."""
    if not h.get("pieces"):
        return "  harmonization: no test piece with a soprano"
    o, b = h["ours"], h["bach"]
    acc = ", ".join("—" if a is None else f"{a:.3f}" for a in h["voice_accuracy"])
    return (
        f"  harmonizing {h['pieces']} test sopranos: voice-count TV {h['voice_count_tv']:.3f}; per 100 frames "
        f"parallel fifths {o['parallel_fifths']:.2f} (Bach {b['parallel_fifths']:.2f}), octaves "
        f"{o['parallel_octaves']:.2f} (Bach {b['parallel_octaves']:.2f}); pitch in key {o['pitch_in_key']:.3f} "
        f"(Bach {b['pitch_in_key']:.3f}); range violations {o['range_violations']} (Bach {b['range_violations']}); "
        f"lower voices as Bach's: {acc}"
    )
