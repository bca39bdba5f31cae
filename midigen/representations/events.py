"""Performance-style event tokens: NOTE_ON_p, NOTE_OFF_p, TIME_SHIFT_k, optional VELOCITY_b
and, with programs, PROGRAM_n.

A TIME_SHIFT step is `time_step` seconds (time_unit "seconds": performances, whose timing is
the music) or 1/steps_per_quarter of a quarter note (time_unit "beats": scores, read in quarter
notes from the file's own beats whatever its tempo map, so a chorale's onsets fall exactly on
the grid, and written at generate.tempo), as MidiTok's MIDILike at a beat resolution.

Times are quantised as absolute positions on a grid of `time_step_s` first, and the shifts are
the differences of those integer positions. Rounding every gap separately (as the reference
design does) lets the error pile up over a piece; here every onset stays within half a step of
the original however long the piece is.

Instruments (`programs`, MidiTok's use_programs with program_changes): PROGRAM_0 ...
PROGRAM_127 and PROGRAM_DRUMS say which General MIDI program (or the drum kit) the NOTE_ON and
NOTE_OFF tokens after them belong to, until the next PROGRAM token. One is written before the
first note event and wherever the next event's program differs from the one before; the events
of one time step are ordered by program, and per program offs before ons, so a step costs one
PROGRAM token per instrument at most. Notes pair per (program, pitch): a unison of two
instruments is two notes, and decoding gives each note its program back, so the written MIDI
file has one track per program (and a drum track for PROGRAM_DRUMS, with preprocess.drums keep).
Without programs every note is one instrument's (the file's programs are dropped, unisons
across tracks merge) and drum notes kept are ordinary pitches.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from midigen.data.midi_io import NOTE_DTYPE, empty_notes
from midigen.representations.base import BOS, EOS, SPECIALS, OutputContext, Representation

DEFAULT_VELOCITY = 100
#: quarter notes per minute of the musical time a "beats" representation works in
BEATS_TEMPO_BPM = 120.0
TIME_UNITS = ("seconds", "beats")

# token kinds, used by the decoder's lookup table
_SPECIAL, _ON, _OFF, _SHIFT, _VEL, _PROG = range(6)
#: the instrument slots of PROGRAM tokens: General MIDI programs 0..127, then the drum kit
N_PROGRAMS = 128
DRUM_SLOT = N_PROGRAMS


class EventRepresentation(Representation):
    name = "events"

    def __init__(
        self,
        time_step: float = 0.05,
        max_shift_steps: int = 100,
        velocity_bins: int = 0,
        pitch_min: int = 0,
        pitch_max: int = 127,
        time_unit: str = "seconds",
        steps_per_quarter: int = 4,
        programs: bool = False,
    ):
        if time_unit not in TIME_UNITS:
            raise ValueError(f"time_unit {time_unit!r} is not one of {TIME_UNITS}")
        self.time_unit = time_unit
        self.steps_per_quarter = int(steps_per_quarter)
        if time_unit == "beats":
            # notes in musical time, as if played at BEATS_TEMPO_BPM (see Representation.decode)
            self.score_tempo_bpm = BEATS_TEMPO_BPM
            time_step = 60.0 / BEATS_TEMPO_BPM / self.steps_per_quarter
        self.time_step = float(time_step)
        self.max_shift_steps = int(max_shift_steps)
        self.velocity_bins = int(velocity_bins)
        self.pitch_min = int(pitch_min)
        self.pitch_max = int(pitch_max)
        self.programs = bool(programs)
        pitches = range(self.pitch_min, self.pitch_max + 1)
        n_pitch = len(pitches)
        vocab = list(SPECIALS)
        self.on_base = len(vocab)
        vocab += [f"NOTE_ON_{p}" for p in pitches]
        self.off_base = len(vocab)
        vocab += [f"NOTE_OFF_{p}" for p in pitches]
        self.shift_base = len(vocab)
        vocab += [f"TIME_SHIFT_{k}" for k in range(1, self.max_shift_steps + 1)]
        self.vel_base = len(vocab)
        vocab += [f"VELOCITY_{b}" for b in range(self.velocity_bins)]
        self.prog_base = len(vocab)
        #: instrument slots (programs, then drums) the vocabulary has PROGRAM tokens for
        self.n_slots = N_PROGRAMS + 1 if self.programs else 0
        vocab += [f"PROGRAM_{n}" for n in range(N_PROGRAMS)] + ["PROGRAM_DRUMS"] if self.programs else []
        super().__init__(vocab)
        # id -> (kind, value) lookup for decoding
        self._kind = np.full(len(vocab), _SPECIAL, dtype=np.int8)
        self._value = np.zeros(len(vocab), dtype=np.int64)
        self._kind[self.on_base : self.off_base] = _ON
        self._value[self.on_base : self.off_base] = np.arange(n_pitch) + self.pitch_min
        self._kind[self.off_base : self.shift_base] = _OFF
        self._value[self.off_base : self.shift_base] = np.arange(n_pitch) + self.pitch_min
        self._kind[self.shift_base : self.vel_base] = _SHIFT
        self._value[self.shift_base : self.vel_base] = np.arange(1, self.max_shift_steps + 1)
        self._kind[self.vel_base : self.prog_base] = _VEL
        self._value[self.vel_base : self.prog_base] = np.arange(self.velocity_bins)
        self._kind[self.prog_base :] = _PROG
        self._value[self.prog_base :] = np.arange(self.n_slots)

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> EventRepresentation:
        unit = p.get("time_unit", "seconds")
        if unit not in TIME_UNITS:  # "auto" depends on data.source
            raise ValueError(f"preprocess.time_unit {unit!r}: resolve it first (midigen.params.resolve_time_unit)")
        return cls(
            p["time_step"], p["max_shift_steps"], p["velocity_bins"], p["pitch_min"], p["pitch_max"],
            unit, p.get("steps_per_quarter", 4), p.get("programs", False),
        )  # fmt: skip

    def config(self) -> dict[str, Any]:
        config = {
            "name": self.name,
            "time_step": self.time_step,
            "max_shift_steps": self.max_shift_steps,
            "velocity_bins": self.velocity_bins,
            "pitch_min": self.pitch_min,
            "pitch_max": self.pitch_max,
        }
        if self.time_unit == "beats":  # stores and checkpoints in seconds keep their old config
            config.update(time_unit=self.time_unit, steps_per_quarter=self.steps_per_quarter)
        if self.programs:  # likewise for those without program tokens
            config["programs"] = True
        return config

    def decode(self, ids: np.ndarray, context: OutputContext | None = None) -> np.ndarray:
        """As Representation.decode; with programs, every note keeps the program its tokens
        give it (context.program, generate.program, is for tokens without programs)."""
        if self.programs and context is not None:
            context = dataclasses.replace(context, program=None)
        return super().decode(ids, context)

    def beat_grid(self) -> int | None:
        return self.steps_per_quarter if self.time_unit == "beats" else None

    def write_midi(self, ids: np.ndarray, path: str | Path, context: OutputContext | None = None) -> np.ndarray:
        """As Representation.write_midi, without a key signature: event tokens do not know the
        key (generate.key is for the score-time representations)."""
        return super().write_midi(ids, path, dataclasses.replace(context or OutputContext(), key=None))

    def grammar(self, limits):
        from midigen.generation.grammar import EventGrammar

        def steps(beats: float) -> int:
            if self.time_unit == "beats":
                return round(beats * self.steps_per_quarter)
            return round(beats * 60.0 / limits.tempo_bpm / self.time_step)

        beats = limits.max_note_beats
        if self.programs:
            from midigen.generation.grammar import ProgramEventGrammar as EventGrammar
        return EventGrammar(
            self,
            max_note_steps=steps(beats) if beats > 0 else 0,
            max_voices=limits.max_voices,
            min_steps=steps(limits.min_beats),
        )

    def pitch_table(self) -> tuple[np.ndarray, int, int]:
        """NOTE_ON_p and NOTE_OFF_p stand for pitch p; the ids of neighbouring pitches are neighbours."""
        pitch = np.full(len(self.vocab), -1, dtype=np.int64)
        pitch[self.on_base : self.shift_base] = np.tile(np.arange(self.pitch_min, self.pitch_max + 1), 2)
        return pitch, self.pitch_min, self.pitch_max

    # -- notes -> ids -------------------------------------------------------------------------

    def slots(self, notes: np.ndarray) -> np.ndarray:
        """The instrument slot of each note: its program, DRUM_SLOT for a drum note (all 0
        without programs)."""
        if not self.programs:
            return np.zeros(notes.shape[0], dtype=np.int64)
        return np.where(notes["is_drum"], DRUM_SLOT, notes["program"].astype(np.int64) % N_PROGRAMS)

    def quantize(self, notes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Grid positions (on, off), pitch, velocity and instrument slot of the notes the tokens
        will carry.

        Notes outside the pitch range are dropped; a note of one instrument (slot) struck again
        at the same step is kept once (the longer); a pitch struck again while sounding on the
        same instrument is closed at the new onset; notes shorter than one step last one step.
        """
        notes = notes[(notes["pitch"] >= self.pitch_min) & (notes["pitch"] <= self.pitch_max)]
        on = np.rint(notes["start_s"] / self.time_step).astype(np.int64)
        off = np.rint(notes["end_s"] / self.time_step).astype(np.int64)
        on = np.maximum(on, 0)
        off = np.maximum(off, on + 1)
        pitch = notes["pitch"].astype(np.int64)
        slot = self.slots(notes)
        order = np.lexsort((-off, on, pitch, slot))
        on, off, pitch, vel, slot = on[order], off[order], pitch[order], notes["velocity"][order], slot[order]
        same = (pitch[1:] == pitch[:-1]) & (slot[1:] == slot[:-1])
        keep = np.ones(on.shape[0], dtype=bool)
        keep[1:] = ~(same & (on[1:] == on[:-1]))
        on, off, pitch, vel, slot = on[keep], off[keep], pitch[keep], vel[keep], slot[keep]
        same_next = (pitch[:-1] == pitch[1:]) & (slot[:-1] == slot[1:])
        off[:-1] = np.where(same_next, np.minimum(off[:-1], on[1:]), off[:-1])
        return on, off, pitch, vel, slot

    def velocity_bin(self, velocity: np.ndarray) -> np.ndarray:
        return np.minimum(np.asarray(velocity, dtype=np.int64) * self.velocity_bins // 128, self.velocity_bins - 1)

    def bin_velocity(self, b: int) -> int:
        """A velocity inside bin b (the middle of the integers that velocity_bin maps to b)."""
        lo = max(1, -(-b * 128 // self.velocity_bins))
        hi = -(-(b + 1) * 128 // self.velocity_bins) - 1
        return (lo + max(lo, hi)) // 2

    def encode(self, notes: np.ndarray) -> np.ndarray:
        on, off, pitch, vel, slot = self.quantize(notes)
        n = on.shape[0]
        times = np.concatenate([on, off])
        is_on = np.concatenate([np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)])
        pitches = np.concatenate([pitch, pitch])
        slots = np.concatenate([slot, slot])
        # at equal times by instrument, and per instrument NOTE_OFF (is_on=0) before NOTE_ON
        order = np.lexsort((pitches, is_on, slots, times))
        times, is_on, pitches, slots = times[order], is_on[order], pitches[order], slots[order]
        event_tok = np.where(is_on == 1, self.on_base, self.off_base) + pitches - self.pitch_min
        # a PROGRAM token before the first event and before each that changes the instrument
        has_prog = np.zeros(times.shape[0], dtype=np.int64)
        if self.programs and times.shape[0]:
            has_prog[0] = 1
            has_prog[1:] = slots[1:] != slots[:-1]

        has_vel = np.zeros(times.shape[0], dtype=np.int64)
        vel_tok = np.zeros(times.shape[0], dtype=np.int64)
        if self.velocity_bins > 0 and n:
            ev_vel = np.concatenate([vel, vel])[order]
            on_idx = np.flatnonzero(is_on == 1)
            bins = self.velocity_bin(ev_vel[on_idx])
            changed = np.ones(on_idx.shape[0], dtype=bool)
            changed[1:] = bins[1:] != bins[:-1]
            has_vel[on_idx[changed]] = 1
            vel_tok[on_idx] = self.vel_base + bins

        m = self.max_shift_steps
        delta = np.diff(times, prepend=0)
        n_shift = -(-delta // m)  # ceil division; 0 when delta == 0
        # per event: its time shifts, its PROGRAM token, its VELOCITY token, the event itself
        lengths = n_shift + has_prog + has_vel + 1
        starts = 1 + np.cumsum(lengths) - lengths  # position 0 holds <BOS>
        out = np.empty(int(lengths.sum()) + 2, dtype=np.uint16)
        out[0], out[-1] = BOS, EOS
        out[starts + n_shift + has_prog + has_vel] = event_tok
        pi = np.flatnonzero(has_prog)
        out[starts[pi] + n_shift[pi]] = self.prog_base + slots[pi]
        vi = np.flatnonzero(has_vel)
        out[starts[vi] + n_shift[vi] + has_prog[vi]] = vel_tok[vi]
        ev = np.repeat(np.arange(times.shape[0]), n_shift)
        j = np.arange(ev.shape[0]) - np.repeat(np.cumsum(n_shift) - n_shift, n_shift)
        last = j == n_shift[ev] - 1
        steps = np.where(last, delta[ev] - (n_shift[ev] - 1) * m, m)
        out[starts[ev] + j] = self.shift_base + steps - 1
        return out

    # -- ids -> notes -------------------------------------------------------------------------

    def decode_notes(self, ids: np.ndarray) -> np.ndarray:
        """Tolerant decoding: unmatched NOTE_OFFs are ignored, hanging notes are closed after at
        most max_shift_steps, the sequence ends at the first <EOS> after some content. Notes
        before any PROGRAM token are program 0's."""
        kinds = self._kind
        values = self._value
        vocab_size = len(self.vocab)
        t = 0
        velocity = DEFAULT_VELOCITY
        slot = 0
        # keyed by slot * 128 + pitch: a note is one instrument's
        active: dict[int, tuple[int, int]] = {}
        last_onset: dict[int, int] = {}
        rows: list[tuple[int, int, int, int]] = []
        started = False
        for raw in np.asarray(ids, dtype=np.int64).tolist():
            if raw < 0 or raw >= vocab_size:
                continue
            kind = kinds[raw]
            if kind == _SPECIAL:
                if raw == EOS and started:
                    break
                continue
            started = True
            value = int(values[raw])
            if kind == _SHIFT:
                t += value
            elif kind == _ON:
                key = slot * 128 + value
                if key in active:
                    start, vel = active[key]
                    if start == t:
                        continue  # struck twice at once: keep the first
                    rows.append((start, t, key, vel))
                elif last_onset.get(key) == t:
                    continue  # struck, released and struck again within one step: keep the first
                active[key] = (t, velocity)
                last_onset[key] = t
            elif kind == _OFF:
                key = slot * 128 + value
                if key in active:
                    start, vel = active.pop(key)
                    rows.append((start, max(t, start + 1), key, vel))
            elif kind == _VEL:
                velocity = self.bin_velocity(value)
            elif kind == _PROG:
                slot = value
        for key, (start, vel) in active.items():
            rows.append((start, max(start + 1, min(t, start + self.max_shift_steps)), key, vel))
        if not rows:
            return empty_notes()
        arr = np.asarray(rows, dtype=np.int64)
        notes = np.zeros(arr.shape[0], dtype=NOTE_DTYPE)
        notes["start_s"] = arr[:, 0] * self.time_step
        notes["end_s"] = arr[:, 1] * self.time_step
        notes["pitch"] = arr[:, 2] % 128
        notes["velocity"] = np.clip(arr[:, 3], 1, 127)
        slots = arr[:, 2] // 128
        notes["is_drum"] = slots == DRUM_SLOT
        notes["program"] = np.where(slots == DRUM_SLOT, 0, slots)
        return notes[np.lexsort((notes["pitch"], notes["program"], notes["is_drum"], notes["start_s"]))]
