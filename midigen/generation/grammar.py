"""Grammar-constrained decoding: which ids may come next, as logit masks inside the batched
sampler (midigen.generation.sampling.generate_tokens), so a model cannot write broken music
(a NOTE_OFF for a silent pitch, a note held for a minute, more voices than a chorale has).

A representation that has a grammar returns one from `Representation.grammar(limits)`; the
sampler keeps one state per batch row, feeds it every id (prompt ids included), and masks the
logits of the rows it samples with `allowed(state)`. A grammar never leaves a row with nothing
allowed: whatever state it is in, some id (a NOTE_OFF, a time step, <EOS>) is legal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class GrammarLimits:
    """What the constrained sampler enforces (the generate params max_note_beats, max_voices).

    max_note_beats: longest note in quarter notes (0 = no limit); representations timed in
    seconds convert it at tempo_bpm. max_voices: notes sounding at once at most (0 = no limit)."""

    max_note_beats: float = 8.0
    max_voices: int = 4
    tempo_bpm: float = 120.0


class Grammar:
    """Constraints for a batch of sequences being sampled; states are dicts of tensors with
    the batch first."""

    def start(self, batch: int, device: torch.device) -> Any:
        """The state of `batch` rows that have seen nothing yet."""
        raise NotImplementedError

    def allowed(self, state: Any) -> torch.Tensor:
        """(batch, vocab) bool: the ids each row may take next (never an all-False row)."""
        raise NotImplementedError

    def advance(self, state: Any, ids: torch.Tensor) -> Any:
        """The state after each row took ids[row] (legal or not: prompts are not checked)."""
        raise NotImplementedError

    def keep_rows(self, state: Any, keep: torch.Tensor) -> Any:
        """The state of the rows where keep is True (rows that finished leave the batch)."""
        return {k: v[keep] for k, v in state.items()}
