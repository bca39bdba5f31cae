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

from midigen.representations.base import EOS


@dataclass(frozen=True)
class GrammarLimits:
    """What the constrained sampler enforces (the generate params max_note_beats, max_voices).

    max_note_beats: longest note in quarter notes (0 = no limit); representations timed in
    seconds convert it at tempo_bpm. max_voices: notes sounding at once at most (0 = no limit).
    min_beats: <EOS> only once this many quarter notes have passed (0 = as soon as a note has
    sounded and nothing sounds), so a piece is not a lone chord."""

    max_note_beats: float = 8.0
    max_voices: int = 4
    tempo_bpm: float = 120.0
    min_beats: float = 0.0


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


class EventGrammar(Grammar):
    """The grammar of event tokens (midigen.representations.events): NOTE_ON only for a silent
    pitch and while fewer than max_voices sound, NOTE_OFF only for a pitch sounding for at least
    one step (encode never writes a zero-length note), TIME_SHIFT only as far as keeps every
    sounding note within max_note_steps, <EOS> only after some note, with nothing sounding and
    once min_steps time steps have passed.
    VELOCITY tokens may come anywhere; <PAD> and <BOS> never.

    A row is never stuck: with nothing sounding a TIME_SHIFT or NOTE_ON is legal; otherwise a
    note that has sounded for a step can be closed, or a note struck at this very step can wait
    one step (max_note_steps >= 1)."""

    def __init__(self, rep, max_note_steps: int = 0, max_voices: int = 0, min_steps: int = 0):
        self.n_pitch = rep.pitch_max - rep.pitch_min + 1
        self.max_shift = rep.max_shift_steps
        self.n_vel = rep.velocity_bins
        self.on_base, self.off_base, self.shift_base = rep.on_base, rep.off_base, rep.shift_base
        self.vocab_size = len(rep.vocab)
        self.max_note_steps = max(1, int(max_note_steps)) if max_note_steps else 0
        self.max_voices = int(max_voices)
        self.min_steps = int(min_steps)
        self._shift_k = torch.arange(1, self.max_shift + 1)

    def start(self, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
        return {
            "sounding": torch.zeros(batch, self.n_pitch, dtype=torch.bool, device=device),
            "age": torch.zeros(batch, self.n_pitch, dtype=torch.long, device=device),
            "started": torch.zeros(batch, dtype=torch.bool, device=device),
            "elapsed": torch.zeros(batch, dtype=torch.long, device=device),
        }

    def allowed(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        sounding, age = state["sounding"], state["age"]
        batch, device = sounding.shape[0], sounding.device
        count = sounding.sum(1)
        specials = torch.zeros(batch, self.on_base, dtype=torch.bool, device=device)
        specials[:, EOS] = (count == 0) & state["started"] & (state["elapsed"] >= self.min_steps)
        may_strike = count < self.max_voices if self.max_voices else torch.ones_like(state["started"])
        on = ~sounding & may_strike[:, None]
        off = sounding & (age >= 1)
        k = self._shift_k.to(device)
        if self.max_note_steps:
            oldest = torch.where(sounding, age, torch.zeros_like(age)).max(1).values
            room = self.max_note_steps - oldest
            shift = k[None, :] <= room[:, None]
        else:
            shift = torch.ones(batch, self.max_shift, dtype=torch.bool, device=device)
        vel = torch.ones(batch, self.n_vel, dtype=torch.bool, device=device)
        return torch.cat([specials, on, off, shift, vel], dim=1)

    def advance(self, state: dict[str, torch.Tensor], ids: torch.Tensor) -> dict[str, torch.Tensor]:
        sounding, age = state["sounding"].clone(), state["age"].clone()
        rows = torch.arange(ids.shape[0], device=ids.device)
        is_on = (ids >= self.on_base) & (ids < self.off_base)
        is_off = (ids >= self.off_base) & (ids < self.shift_base)
        is_shift = (ids >= self.shift_base) & (ids < self.shift_base + self.max_shift)
        pitch = torch.where(is_on, ids - self.on_base, ids - self.off_base).clamp(0, self.n_pitch - 1)
        steps = torch.where(is_shift, ids - self.shift_base + 1, torch.zeros_like(ids))
        age = age + steps[:, None] * sounding  # time passes for the notes sounding before it
        sounding[rows[is_on], pitch[is_on]] = True  # struck again while sounding: a new note
        age[rows[is_on], pitch[is_on]] = 0
        sounding[rows[is_off], pitch[is_off]] = False
        return {
            "sounding": sounding,
            "age": age,
            "started": state["started"] | is_on,
            "elapsed": state["elapsed"] + steps,
        }


# -- event tokens with PROGRAM tokens (preprocess.programs) ------------------------------------


class ProgramEventGrammar(EventGrammar):
    """EventGrammar for event tokens with PROGRAM tokens: a note sounds per (program, pitch),
    NOTE_ON and NOTE_OFF refer to the program the last PROGRAM token named (program 0 before
    any), max_voices and the note length limit count the notes of every program, and a PROGRAM
    token may come anywhere except to name the program already current (the first may name any,
    program 0 too, as encode writes it).

    The rules are EventGrammar's, applied to a virtual vocabulary with one NOTE_ON/NOTE_OFF pair
    per (program, pitch): the parent's masks come out per program and pitch, and the current
    program's block is the row's NOTE_ON/NOTE_OFF mask. A row is never stuck: whatever the
    parent allows in the virtual vocabulary is reachable, at worst after a PROGRAM token.
    """

    def __init__(self, rep, max_note_steps: int = 0, max_voices: int = 0, min_steps: int = 0):
        from types import SimpleNamespace

        self.n_slots, self.prog_base = rep.n_slots, rep.prog_base
        self.n_rep_pitch = rep.pitch_max - rep.pitch_min + 1
        self.rep_on, self.rep_off, self.rep_shift = rep.on_base, rep.off_base, rep.shift_base
        n_virtual = self.n_slots * self.n_rep_pitch
        virtual = SimpleNamespace(
            pitch_min=0,
            pitch_max=n_virtual - 1,
            max_shift_steps=rep.max_shift_steps,
            velocity_bins=rep.velocity_bins,
            on_base=rep.on_base,
            off_base=rep.on_base + n_virtual,
            shift_base=rep.on_base + 2 * n_virtual,
            vocab=range(rep.on_base + 2 * n_virtual + rep.max_shift_steps + rep.velocity_bins),
        )
        super().__init__(virtual, max_note_steps, max_voices, min_steps)

    def start(self, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
        state = super().start(batch, device)
        state["program"] = torch.full((batch,), -1, dtype=torch.long, device=device)  # -1: none named yet
        return state

    def allowed(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        virtual = super().allowed({k: v for k, v in state.items() if k != "program"})
        batch, n_slots, n_pitch = virtual.shape[0], self.n_slots, self.n_rep_pitch
        rows = torch.arange(batch, device=virtual.device)
        named = state["program"]
        cur = named.clamp(min=0)
        on = virtual[:, self.on_base : self.off_base].view(batch, n_slots, n_pitch)[rows, cur]
        off = virtual[:, self.off_base : self.shift_base].view(batch, n_slots, n_pitch)[rows, cur]
        prog = torch.ones(batch, n_slots, dtype=torch.bool, device=virtual.device)
        prog[rows, cur] = named < 0
        return torch.cat([virtual[:, : self.on_base], on, off, virtual[:, self.shift_base :], prog], dim=1)

    def advance(self, state: dict[str, torch.Tensor], ids: torch.Tensor) -> dict[str, torch.Tensor]:
        cur = state["program"]
        offset = cur.clamp(min=0) * self.n_rep_pitch
        is_on = (ids >= self.rep_on) & (ids < self.rep_off)
        is_off = (ids >= self.rep_off) & (ids < self.rep_shift)
        is_prog = ids >= self.prog_base
        virtual = torch.where(is_on, self.on_base + offset + ids - self.rep_on, ids)
        virtual = torch.where(is_off, self.off_base + offset + ids - self.rep_off, virtual)
        rest = (ids >= self.rep_shift) & ~is_prog  # time shifts and velocities keep their order
        virtual = torch.where(rest, self.shift_base + ids - self.rep_shift, virtual)
        virtual = torch.where(is_prog, torch.zeros_like(ids), virtual)  # <PAD>: no note, no time
        out = super().advance({k: v for k, v in state.items() if k != "program"}, virtual)
        out["program"] = torch.where(is_prog, (ids - self.prog_base).clamp(0, self.n_slots - 1), cur)
        return out
