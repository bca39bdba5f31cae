"""Harmonizing a melody someone brings, with a model of `voices` tokens (BachBot's frames, see
midigen/representations/voices.py): the melody is the soprano, the model writes the voices below.

Constrained decoding, inside the one batched sampler (generate_tokens): a Grammar that wraps the
voices grammar forces, at the start of every sixteenth-note frame, the soprano's token from the
melody (`p` where a melody note starts, `p~` where it is held), and lets the model sample the
rest of the frame under the voices grammar (notes strictly below the soprano, at most
max_voices in all, ties only for pitches that sounded in the frame before, then `|||`; with
bar positions, the delimiter of the melody's bar position there, from its file's meters; with
frame runs, a delimiter `||k` that does not outlast the soprano's note or rest). After
the melody's last frame it forces <EOS>. So:

- the top voice of every piece is the melody, note for note, on the sixteenth grid (notes are
  rounded to it as the voices representation rounds every score);
- a frame where the melody rests is forced empty (the lower voices rest with it): a lower voice
  alone would become the top voice there;
- FERMATA is never written (a melody read from a file carries no fermatas), and a lower voice may
  not tie into the pitch the soprano just left (the decoder would extend the soprano's note);
- the model may write fewer voices in a frame than max_voices, as the grammar allows and as
  Bach does where voices rest: the output has at most that many.

The melody is the top line of the notes given: in every frame the highest sounding pitch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from midigen.errors import MidiError, MidigenError
from midigen.generation.grammar import Grammar, GrammarLimits
from midigen.models.base import SampleRequest
from midigen.representations import BOS, EOS
from midigen.representations.score_time import SCORE_TEMPO_BPM, STEP_S


@dataclass(frozen=True)
class Melody:
    """A melody on the frame grid: per frame the soprano's pitch column (-1: a rest), whether
    its note is struck there (False: held from the frame before) and its sixteenth in the bar."""

    column: np.ndarray
    struck: np.ndarray
    position: np.ndarray


def melody_frames(
    rep, notes: np.ndarray, source: str = "melody", meters: np.ndarray | None = None, positions=None
) -> Melody:
    """The top line of `notes` (timed as rep.read gives them) on rep's frame grid, its frames'
    bar positions from `positions` or else from `meters` (voices.meter_rows; None: 4/4 from the
    start); MidiError for a melody without notes or with notes outside the pitch range the
    model knows."""
    from midigen.representations.voices import bar_positions

    if notes.shape[0] == 0:
        raise MidiError(source, "no notes: nothing to harmonize")
    pitches = notes["pitch"].astype(np.int64)
    outside = pitches[(pitches < rep.pitch_min) | (pitches > rep.pitch_max)]
    if outside.shape[0]:
        raise MidiError(
            source,
            f"pitch {int(outside[0])} is outside the model's range {rep.pitch_min}..{rep.pitch_max} "
            "(transpose the melody)",
        )
    frames = rep.frames(notes)
    sound, onset = frames.sound, frames.onset
    count = sound.sum(axis=1)
    top = np.where(count > 0, sound.shape[1] - 1 - np.argmax(sound[:, ::-1], axis=1), -1)
    rows = np.arange(top.shape[0])
    struck = (top >= 0) & onset[rows, np.maximum(top, 0)]
    before = np.concatenate([[-1], top[:-1]])
    struck |= (top >= 0) & (before != top)  # a held top pitch that was not the top before
    n = top.shape[0]
    if positions is None:
        position = bar_positions(n, np.zeros((0, 2), np.int64) if meters is None else meters)
    else:
        position = np.zeros(n, np.int64)
        given = np.asarray(positions, dtype=np.int64)[:n]
        position[: given.shape[0]] = given
    return Melody(top.astype(np.int64), struck, position)


def until_change(melody: Melody, longest: int) -> np.ndarray:
    """Per frame of a melody, the frames from it to the next where its soprano changes (a note
    struck, a rest starting or ending) or to its end, at most `longest`."""
    column, struck = melody.column, melody.struck
    n = column.shape[0]
    change = np.ones(n + 1, dtype=bool)
    change[1:n] = struck[1:] | (column[1:] != column[:-1])
    nxt = np.flatnonzero(change)
    following = nxt[np.searchsorted(nxt, np.arange(n), side="right")]
    return np.minimum(following - np.arange(n), longest)


class HarmonizeGrammar(Grammar):
    """The voices grammar with each row's soprano forced from its melody (module docstring).
    Extra state per row: `melody`, its melody's index in the tables."""

    def __init__(self, rep, limits: GrammarLimits, melodies: list[Melody]):
        self.base = rep.grammar(limits)
        longest = max(m.column.shape[0] for m in melodies)
        # per melody and frame the id to force first: a soprano note, or the delimiter for a rest; <EOS> after the end
        plan = np.full((len(melodies), longest + 1), EOS, dtype=np.int64)
        prev_col = np.full((len(melodies), longest + 1), -1, dtype=np.int64)
        # the delimiter closing each frame: ||| or the melody's bar position there
        delimiter = np.full((len(melodies), longest + 1), rep.frame_id, dtype=np.int64)
        runs = rep.frame_runs
        positioned = not runs and len(rep.vocab) - rep.frame_id > 1
        # frame runs: from each frame, the frames until the melody next changes (a run may not
        # pass a change of the soprano, which the next written frame must show)
        until = np.ones((len(melodies), longest + 1), dtype=np.int64)
        for i, m in enumerate(melodies):
            n = m.column.shape[0]
            if positioned:
                delimiter[i, :n] += m.position
            if runs:
                until[i, :n] = until_change(m, int(rep.lasts.max()))
                delimiter[i, :n] += until[i, :n] - 1  # a rest is one frame, as long as it lasts
            forced = np.where(m.struck, rep.new_base, rep.tie_base) + m.column
            plan[i, :n] = np.where(m.column >= 0, forced, delimiter[i, :n])
            prev_col[i, 1 : n + 1] = m.column
        # per melody and frame: the one id allowed first, and what the voices below may take
        # (not a tie into the pitch the soprano held in the frame before); looked up each step
        vocab = len(rep.vocab)
        self.forced = torch.zeros(plan.shape + (vocab,), dtype=torch.bool)
        self.forced.scatter_(2, torch.from_numpy(plan)[..., None], True)
        self.below = torch.ones(plan.shape + (vocab,), dtype=torch.bool)
        row, f = np.nonzero(prev_col >= 0)
        self.below[row, f, rep.tie_base + prev_col[row, f]] = False
        if positioned:  # the frame ends at the melody's bar position
            self.below[:, :, rep.frame_id :] = False
            rows, frames = np.indices(delimiter.shape)
            self.below[rows, frames, delimiter] = True
        if runs:  # the frame lasts no longer than the soprano's note (or rest) does from there
            lasts = torch.as_tensor(rep.lasts)[None, None, :]
            self.below[:, :, rep.frame_id :] = lasts <= torch.from_numpy(until)[..., None]
        self.frames = plan.shape[1]

    def start(self, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
        self.forced, self.below = self.forced.to(device), self.below.to(device)
        state = self.base.start(batch, device)
        state["melody"] = torch.arange(batch, device=device) % self.forced.shape[0]
        return state

    def allowed(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = self.base.allowed(state)
        melody, frame = state["melody"], state["frames"].clamp(max=self.frames - 1)
        first = state["count"] == 0  # nothing written in this frame yet: the forced id
        return torch.where(first[:, None], self.forced[melody, frame], mask & self.below[melody, frame])

    def advance(self, state: dict[str, torch.Tensor], ids: torch.Tensor) -> dict[str, torch.Tensor]:
        melody = state["melody"]
        out = self.base.advance({k: v for k, v in state.items() if k != "melody"}, ids)
        out["melody"] = melody
        # a forced ||| (a rest frame) leaves count at 0 for the next frame, as it should
        return out


def harmonize_many(
    model: nn.Module, rep, melodies: list[Melody], request: SampleRequest, device: torch.device
) -> list[np.ndarray]:
    """One piece per melody, all in one batch (see the module docstring); request gives the
    sampling controls (temperature, top_k, top_p, greedy, seed) and limits.max_voices the
    number of voices (default: the representation's)."""
    from midigen.generation.sampling import sample_request

    if rep.name != "voices":
        raise MidigenError(
            f"harmonize needs a model of voices tokens (preprocess.representation = voices); this one reads {rep.name}"
        )
    limits = request.limits or GrammarLimits(8.0, rep.max_voices)
    voices = limits.max_voices or rep.max_voices
    if not 1 <= voices <= rep.max_voices:
        raise MidigenError(f"--voices {voices}: the model writes 1 to {rep.max_voices} voices")
    limits = replace(limits, max_voices=voices)
    grammar = HarmonizeGrammar(rep, limits, melodies)
    longest = max(m.column.shape[0] for m in melodies)
    out = sample_request(model, [[BOS]] * len(melodies), longest * (voices + 1) + 1, EOS, request, grammar)
    return [np.asarray(o, dtype=np.int64) for o in out]


def harmonize(
    model: nn.Module, rep, melody_notes: np.ndarray, request: SampleRequest, device, meters: np.ndarray | None = None
) -> list[np.ndarray]:
    """request.num harmonizations of one melody (notes timed as rep.read gives them: musical
    time at SCORE_TEMPO_BPM; its meters as voices.meter_rows gives them, None: 4/4), as voices
    token id sequences, in one batch."""
    melody = melody_frames(rep, melody_notes, meters=meters)
    return harmonize_many(model, rep, [melody] * request.num, request, device)


def read_melody(path: str | Path, rep, track: str | None = None) -> tuple[np.ndarray, float]:
    """(the notes of a MIDI file, or of its track named `track`, in rep's musical time; the
    file's first tempo in quarter notes per minute). MidiError when the track is not there or
    is polyphonic (a named track must be one line: the top line is taken only from a whole file)."""
    from midigen.data.midi_io import read_tick_notes

    t = read_tick_notes(path)
    tempos = t.score.tempos
    tempo = float(tempos[0].qpm) if len(tempos) else 120.0
    keep = ~t.is_drum.astype(bool)
    if track is not None:
        names = [tr.name for tr in t.score.tracks if len(tr.notes)]
        if track not in names:
            raise MidiError(path, f"no track named {track!r} (tracks with notes: {', '.join(map(repr, names))})")
        keep &= t.track == names.index(track)
    from midigen.data.midi_io import make_notes

    scale = 60.0 / SCORE_TEMPO_BPM / t.tpq
    notes = make_notes(t.start_tick[keep] * scale, t.end_tick[keep] * scale, t.pitch[keep])
    notes = notes[np.lexsort((notes["pitch"], notes["start_s"]))]
    if track is not None and notes.shape[0] > 1:
        overlap = np.floor(notes["start_s"][1:] / STEP_S + 0.5) < np.floor(notes["end_s"][:-1] / STEP_S + 0.5)
        if overlap.any():
            raise MidiError(path, f"track {track!r} has notes sounding at once: a melody must be one line")
    return notes, tempo
