"""The grammar of voices tokens (representations/voices.py), for constrained sampling: in a
frame, FERMATA only first, notes strictly falling in pitch, at most max_voices of them, `p~`
only when p sounded in the frame before and has not yet lasted max_note_beats; <EOS> only
between frames, after min_beats worth of frames. The delimiter `|||` is always legal, so no
row is ever left without a choice; with bar positions the delimiters are `|0` (a new bar: always
legal, and the first) and `|k+1` after `|k` (the last position repeats in a bar longer than
BAR_POSITIONS). With frame runs the delimiters are `||k` (the frame lasts k sixteenths): `||1`
always legal, a longer one only while no note of the frame would pass max_note_beats.

A module of its own because it imports torch, which preprocessing (it imports every
representation) must not pay for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from midigen.generation.grammar import Grammar, GrammarLimits
from midigen.representations.base import EOS
from midigen.representations.score_time import STEPS_PER_QUARTER

if TYPE_CHECKING:
    from midigen.representations.voices import VoicesRepresentation


class VoicesGrammar(Grammar):
    """State per row: `held`, frames each pitch has sounded for up to the frame before (0 =
    silent there); `cur`, the same counting the frame being written; `low`, the column of the
    frame's lowest note so far (n_pitches: none); `count`, its notes; `empty`, nothing written
    in it yet; `frames`, sixteenths completed (frames, or their runs' lengths); `pos`, the bar
    position of the last delimiter (-1 before the first). Ids are applied as
    VoicesRepresentation.decode reads them: a note out of order and a late FERMATA change nothing."""

    def __init__(self, rep: VoicesRepresentation, limits: GrammarLimits):
        self.vocab = len(rep.vocab)
        self.n = rep.n_pitches
        self.new_base, self.tie_base = rep.new_base, rep.tie_base
        self.fermata_id, self.frame_id = rep.fermata_id, rep.frame_id
        self.runs = rep.frame_runs  # delimiters ||1 ... ||MAX_RUN: the frame lasts k sixteenths
        self.lasts = torch.as_tensor(rep.lasts)  # per delimiter, the sixteenths its frame lasts
        # delimiters: 1, or the bar positions (with runs: none named)
        self.positions = 1 if self.runs else self.vocab - self.frame_id
        self.max_voices = int(limits.max_voices)
        # a tie is a note's second frame or later: at most max_frames frames in all
        self.max_frames = max(1, round(limits.max_note_beats * STEPS_PER_QUARTER)) if limits.max_note_beats else 0
        self.min_frames = max(1, round(limits.min_beats * STEPS_PER_QUARTER))

    def start(self, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
        zeros = torch.zeros(batch, self.n, dtype=torch.long, device=device)
        return {
            "held": zeros,
            "cur": zeros.clone(),
            "low": torch.full((batch,), self.n, dtype=torch.long, device=device),
            "count": torch.zeros(batch, dtype=torch.long, device=device),
            "empty": torch.ones(batch, dtype=torch.bool, device=device),
            "frames": torch.zeros(batch, dtype=torch.long, device=device),
            "pos": torch.full((batch,), -1, dtype=torch.long, device=device),
        }

    def allowed(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        held, low = state["held"], state["low"]
        batch = low.shape[0]
        below = torch.arange(self.n, device=low.device)[None, :] < low[:, None]
        if self.max_voices:
            below &= (state["count"] < self.max_voices)[:, None]
        tie = below & (held > 0)
        if self.max_frames:
            tie &= held < self.max_frames
        mask = torch.zeros(batch, self.vocab, dtype=torch.bool, device=low.device)
        mask[:, self.new_base : self.tie_base] = below
        mask[:, self.tie_base : self.fermata_id] = tie
        mask[:, self.fermata_id] = state["empty"]
        mask[:, self.frame_id] = True
        if self.runs:
            # ||k holds the frame's notes k sixteenths: none past max_frames (||1 always fits)
            lasts = self.lasts.to(low.device)[None, :]
            if self.max_frames:
                longest = state["cur"].max(dim=1).values[:, None]
                mask[:, self.frame_id :] = (longest == 0) | (longest + lasts - 1 <= self.max_frames)
                # ||1 stays legal even past the limit: a harmonized melody's forced note may be
                # longer, and no row may be left without a choice
                mask[:, self.frame_id] = True
            else:
                mask[:, self.frame_id :] = True
        elif self.positions > 1:
            rows = torch.arange(batch, device=low.device)
            mask[rows, self.frame_id + (state["pos"] + 1).clamp(max=self.positions - 1)] = True
        mask[:, EOS] = state["empty"] & (state["frames"] >= self.min_frames)
        return mask

    def advance(self, state: dict[str, torch.Tensor], ids: torch.Tensor) -> dict[str, torch.Tensor]:
        ids = ids.to(state["low"].device).long()
        col = (ids - self.new_base).clamp(0, 2 * self.n - 1) % self.n
        note = (ids >= self.new_base) & (ids < self.fermata_id) & (col < state["low"])
        tie = note & (ids >= self.tie_base)
        rows = torch.arange(ids.shape[0], device=ids.device)
        before = state["held"][rows, col]
        length = torch.where(tie & (before > 0), before + 1, torch.ones_like(before))
        cur = state["cur"].clone()
        cur[rows[note], col[note]] = length[note]
        frame = ids >= self.frame_id
        lasts = self.lasts.to(ids.device)[(ids - self.frame_id).clamp(0, self.lasts.shape[0] - 1)]
        fermata = (ids == self.fermata_id) & state["empty"]
        # a frame lasting k sixteenths leaves its notes k - 1 frames longer than they were in it
        ended = torch.where(cur > 0, cur + (lasts - 1)[:, None], cur)
        return {
            "held": torch.where(frame[:, None], ended, state["held"]),
            "cur": torch.where(frame[:, None], torch.zeros_like(cur), cur),
            "low": torch.where(frame, self.n, torch.where(note, col, state["low"])),
            "count": torch.where(frame, 0, state["count"] + note.long()),
            "empty": frame | (state["empty"] & ~note & ~fermata),
            "frames": state["frames"] + torch.where(frame, lasts, 0),
            "pos": torch.where(frame, ids - self.frame_id, state["pos"]),
        }
