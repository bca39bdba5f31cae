"""Performance-style event tokens: NOTE_ON_p, NOTE_OFF_p, TIME_SHIFT_k, optional VELOCITY_b.

A TIME_SHIFT step is `time_step` seconds (time_unit "seconds": performances, whose timing is
the music) or 1/steps_per_quarter of a quarter note (time_unit "beats": scores, read in quarter
notes from the file's own beats whatever its tempo map, so a chorale's onsets fall exactly on
the grid, and written at generate.tempo), as MidiTok's MIDILike at a beat resolution.

Times are quantised as absolute positions on a grid of `time_step_s` first, and the shifts are
the differences of those integer positions. Rounding every gap separately (as the reference
design does) lets the error pile up over a piece; here every onset stays within half a step of
the original however long the piece is.
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
_SPECIAL, _ON, _OFF, _SHIFT, _VEL = range(5)


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
        self._kind[self.vel_base :] = _VEL
        self._value[self.vel_base :] = np.arange(self.velocity_bins)

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> EventRepresentation:
        unit = p.get("time_unit", "seconds")
        if unit not in TIME_UNITS:  # "auto" depends on data.source
            raise ValueError(f"preprocess.time_unit {unit!r}: resolve it first (midigen.params.resolve_time_unit)")
        return cls(
            p["time_step"], p["max_shift_steps"], p["velocity_bins"], p["pitch_min"], p["pitch_max"],
            unit, p.get("steps_per_quarter", 4),
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
        return config

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

    def quantize(self, notes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Grid positions (on, off), pitch and velocity of the notes the tokens will carry.

        Notes outside the pitch range are dropped; a note struck again at the same step is kept
        once (the longer); a pitch struck again while sounding is closed at the new onset;
        notes shorter than one step last one step.
        """
        notes = notes[(notes["pitch"] >= self.pitch_min) & (notes["pitch"] <= self.pitch_max)]
        on = np.rint(notes["start_s"] / self.time_step).astype(np.int64)
        off = np.rint(notes["end_s"] / self.time_step).astype(np.int64)
        on = np.maximum(on, 0)
        off = np.maximum(off, on + 1)
        pitch = notes["pitch"].astype(np.int64)
        order = np.lexsort((-off, on, pitch))
        on, off, pitch, vel = on[order], off[order], pitch[order], notes["velocity"][order]
        keep = np.ones(on.shape[0], dtype=bool)
        keep[1:] = ~((pitch[1:] == pitch[:-1]) & (on[1:] == on[:-1]))
        on, off, pitch, vel = on[keep], off[keep], pitch[keep], vel[keep]
        same_next = pitch[:-1] == pitch[1:]
        off[:-1] = np.where(same_next, np.minimum(off[:-1], on[1:]), off[:-1])
        return on, off, pitch, vel

    def velocity_bin(self, velocity: np.ndarray) -> np.ndarray:
        return np.minimum(np.asarray(velocity, dtype=np.int64) * self.velocity_bins // 128, self.velocity_bins - 1)

    def bin_velocity(self, b: int) -> int:
        """A velocity inside bin b (the middle of the integers that velocity_bin maps to b)."""
        lo = max(1, -(-b * 128 // self.velocity_bins))
        hi = -(-(b + 1) * 128 // self.velocity_bins) - 1
        return (lo + max(lo, hi)) // 2

    def encode(self, notes: np.ndarray) -> np.ndarray:
        on, off, pitch, vel = self.quantize(notes)
        n = on.shape[0]
        times = np.concatenate([on, off])
        is_on = np.concatenate([np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)])
        pitches = np.concatenate([pitch, pitch])
        # at equal times NOTE_OFF (is_on=0) sorts before NOTE_ON
        order = np.lexsort((pitches, is_on, times))
        times, is_on, pitches = times[order], is_on[order], pitches[order]
        event_tok = np.where(is_on == 1, self.on_base, self.off_base) + pitches - self.pitch_min

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
        lengths = n_shift + has_vel + 1
        starts = 1 + np.cumsum(lengths) - lengths  # position 0 holds <BOS>
        out = np.empty(int(lengths.sum()) + 2, dtype=np.uint16)
        out[0], out[-1] = BOS, EOS
        out[starts + n_shift + has_vel] = event_tok
        vi = np.flatnonzero(has_vel)
        out[starts[vi] + n_shift[vi]] = vel_tok[vi]
        ev = np.repeat(np.arange(times.shape[0]), n_shift)
        j = np.arange(ev.shape[0]) - np.repeat(np.cumsum(n_shift) - n_shift, n_shift)
        last = j == n_shift[ev] - 1
        steps = np.where(last, delta[ev] - (n_shift[ev] - 1) * m, m)
        out[starts[ev] + j] = self.shift_base + steps - 1
        return out

    # -- ids -> notes -------------------------------------------------------------------------

    def decode_notes(self, ids: np.ndarray) -> np.ndarray:
        """Tolerant decoding: unmatched NOTE_OFFs are ignored, hanging notes are closed after at
        most max_shift_steps, the sequence ends at the first <EOS> after some content."""
        kinds = self._kind
        values = self._value
        vocab_size = len(self.vocab)
        t = 0
        velocity = DEFAULT_VELOCITY
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
                if value in active:
                    start, vel = active[value]
                    if start == t:
                        continue  # struck twice at once: keep the first
                    rows.append((start, t, value, vel))
                elif last_onset.get(value) == t:
                    continue  # struck, released and struck again within one step: keep the first
                active[value] = (t, velocity)
                last_onset[value] = t
            elif kind == _OFF:
                if value in active:
                    start, vel = active.pop(value)
                    rows.append((start, max(t, start + 1), value, vel))
            elif kind == _VEL:
                velocity = self.bin_velocity(value)
        for pitch, (start, vel) in active.items():
            rows.append((start, max(start + 1, min(t, start + self.max_shift_steps)), pitch, vel))
        if not rows:
            return empty_notes()
        arr = np.asarray(rows, dtype=np.int64)
        notes = np.zeros(arr.shape[0], dtype=NOTE_DTYPE)
        notes["start_s"] = arr[:, 0] * self.time_step
        notes["end_s"] = arr[:, 1] * self.time_step
        notes["pitch"] = arr[:, 2]
        notes["velocity"] = np.clip(arr[:, 3], 1, 127)
        return notes[np.lexsort((notes["pitch"], notes["start_s"]))]
