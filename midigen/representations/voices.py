"""BachBot's encoding of chorales (Liang & Gotham, ISMIR 2017): the score is cut into
sixteenth-note frames (musical time, see score_time.py); each frame lists the notes sounding
in it from high to low, each either struck in this frame (`C4`) or held from the frame before
(`C4~`), then the frame delimiter `|||`. A frame under a fermata starts with `FERMATA`; a frame
with no notes is the delimiter alone. Listeners could barely tell BachBot's chorales from Bach's.

With frame runs (preprocess.frame_runs) a frame is written only where the notes change: a frame
in which nothing is struck and the same notes sound as in the frame before (under the same
fermata state) is folded into that frame, whose delimiter `||k` then says how many sixteenths it
lasts (k = 1 … MAX_RUN; a longer run writes its frame again, all ties). A chorale costs about a
third of the ids (37% over the 365 chorales: BachBot's ||| after every sixteenth and a held
chord written again in each are most of its ids), so a model hears nearly three times the music
for the same work and its window reaches that much further back.

With bar positions (preprocess.bar_positions) the delimiter also names the sixteenth of its
frame within the bar, from the file's time signatures: `|0` … `|15` in 4/4, `|0` … `|11` in 3/4
(a bar longer than BAR_POSITIONS sixteenths keeps the last for the rest), so the model always
knows where in the bar it is, as DeepBach's beat metadata tells its networks. The sampler allows
after `|k` only `|k+1` or `|0` (a new bar), the first delimiter being `|0`; a decoded piece is
written in the meter its bar lines give (16 sixteenths: 4/4, 12: 3/4, 24: 3/2 ...).

Reading: a file needs a time signature (a file without meter is a performance, not a score);
the fermatas are ingest's "fermata" markers (music21 exports none, see data/ingest.py), and a
fermata covers its frame up to the end of the longest note struck there. Unisons (two voices on
one pitch) are one note; a pitch struck while it sounds is struck anew. At most max_voices notes
per frame: a file with more in over MAX_OVER_SHARE of its sounding frames is rejected; in the
other files a frame over the limit keeps its highest max_voices - 1 notes and its lowest (the
outer voices stay), and max_voices = 1 keeps the highest.

Decoding reads any id sequence: `p~` continues the note of pitch p of the frame before (or
starts one when there is none), notes out of order in a frame (not strictly descending) and a
FERMATA after a frame's first token are skipped. A note's voice is its rank, 0 = highest, in
its first frame; write_midi writes one track per voice (Soprano, Alto, Tenor, Bass for four).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from midigen.data.midi_io import FERMATA, read_marks, write_midi
from midigen.errors import MidiError, ParamsError
from midigen.representations.base import BOS, EOS, SPECIALS, Checked, OutputContext, key_info
from midigen.representations.score_time import (
    SCORE_TEMPO_BPM,
    STEP_S,
    STEPS_PER_QUARTER,
    ScoreTimeRepresentation,
    pitch_name,
)

FERMATA_TOKEN = "FERMATA"
FRAME_TOKEN = "|||"
#: frame positions a bar may name (a 4/2 bar has 32 sixteenths)
BAR_POSITIONS = 32
#: frame runs: the longest a written frame lasts, in sixteenths (a whole note in 4/4)
MAX_RUN = 16
TIE_SUFFIX = "~"
#: a file with more than max_voices notes at once in more than this share of its sounding
#: frames is rejected (a piano piece, not a chorale)
MAX_OVER_SHARE = 0.10
SATB = ("Soprano", "Alto", "Tenor", "Bass")


class Chorale(NamedTuple):
    """What encode takes: the notes (score time, see score_time.py), the sixteenth-note steps
    of the fermata marks, and the meters as (step, bar length in steps) rows (none: 4/4)."""

    notes: np.ndarray
    fermatas: np.ndarray
    meters: np.ndarray = np.zeros((0, 2), dtype=np.int64)


class Frames(NamedTuple):
    """A chorale on the frame grid: (frames, pitches of the range) sounding and struck, and
    (frames,) under a fermata and the frames' sixteenths within their bars."""

    sound: np.ndarray
    onset: np.ndarray
    fermata: np.ndarray
    position: np.ndarray


class Voiced(NamedTuple):
    """Decoded notes as (onset step, offset step, pitch) rows in (onset, pitch) order, the
    voice of each, the frames that start with FERMATA, and each delimiter's bar position (all
    0 without bar positions)."""

    rows: list[tuple[int, int, int]]
    voice: np.ndarray
    fermata_frames: list[int]
    positions: list[int]


def meter_rows(meters: list[tuple[float, int, int]]) -> np.ndarray:
    """(step, bar length in sixteenth steps) rows of read_marks' (quarter, numerator,
    denominator) time signatures, in time order, a later one at the same step winning."""
    rows: dict[int, int] = {}
    for quarter, num, den in sorted(meters, key=lambda m: m[0]):
        rows[int(np.floor(quarter * STEPS_PER_QUARTER + 0.5))] = max(1, round(num * 4 * STEPS_PER_QUARTER / den))
    return np.asarray(sorted(rows.items()), dtype=np.int64).reshape(-1, 2)


def bar_positions(n: int, meters: np.ndarray) -> np.ndarray:
    """The sixteenth within its bar of each of n frames: bars start at each meter's step (and
    before the first meter, count back from it); 4/4 from step 0 without meters."""
    if meters.shape[0] == 0:
        meters = np.asarray([[0, 4 * STEPS_PER_QUARTER]], dtype=np.int64)
    frame = np.arange(n, dtype=np.int64)
    k = np.maximum(np.searchsorted(meters[:, 0], frame, side="right") - 1, 0)
    return np.minimum((frame - meters[k, 0]) % meters[k, 1], BAR_POSITIONS - 1)


def signature(steps: int) -> tuple[int, int]:
    """The time signature of a bar of `steps` sixteenths: quarter notes over 4 (6 quarters:
    3/2), else eighths or sixteenths."""
    if steps % STEPS_PER_QUARTER == 0:
        quarters = steps // STEPS_PER_QUARTER
        return (3, 2) if quarters == 6 else (quarters, 4)
    return (steps // 2, 8) if steps % 2 == 0 else (steps, 16)


def meter_changes(positions: list[int]) -> list[tuple[int, tuple[int, int]]]:
    """(frame, time signature) where the delimiters' bar positions say the meter changes: at
    frame 0 the first whole bar's, then at each whole bar (one a later |0 ends) as long as no
    bar before it since the last change; [(0, (4, 4))] when no bar is whole. What reads back
    to the same positions (a bar cut short by a meter starting again is a bar of its own)."""
    starts = [f for f, k in enumerate(positions) if k == 0]
    changes: list[tuple[int, tuple[int, int]]] = []
    length = 0
    for start, end in zip(starts[:-1], starts[1:], strict=True):
        if end - start != length:
            length = end - start
            changes.append((start if changes else 0, signature(length)))
    return changes or [(0, (4, 4))]


class VoicesRepresentation(ScoreTimeRepresentation):
    name = "voices"
    layout = "sequence"
    info_keys = ("n_notes", "duration_s", "frames", "fermata_frames", "over_voices")

    def __init__(
        self,
        pitch_min: int = 21,
        pitch_max: int = 108,
        max_voices: int = 4,
        bar_positions: bool = False,
        frame_runs: bool = False,
    ):
        if max_voices < 1:
            raise ValueError(f"max_voices must be >= 1, got {max_voices}")
        if bar_positions and frame_runs:
            raise ParamsError(
                "preprocess.bar_positions and preprocess.frame_runs cannot both be true: bar positions name "
                "every sixteenth's frame, frame runs write a frame only where the notes change"
            )
        self.max_voices = int(max_voices)
        self.bar_positions = bool(bar_positions)
        self.frame_runs = bool(frame_runs)
        names = [pitch_name(p) for p in range(pitch_min, pitch_max + 1)]
        vocab = list(SPECIALS)
        self.new_base = len(vocab)
        self.tie_base = self.new_base + len(names)
        vocab += names + [n + TIE_SUFFIX for n in names]
        self.fermata_id = len(vocab)
        # the delimiters come last: every id from frame_id on is one
        self.frame_id = self.fermata_id + 1
        if self.frame_runs:
            delimiters = [f"||{k}" for k in range(1, MAX_RUN + 1)]
        else:
            delimiters = [f"|{k}" for k in range(BAR_POSITIONS)] if self.bar_positions else [FRAME_TOKEN]
        #: per delimiter (id - frame_id), the sixteenths its frame lasts: k for ||k, else 1
        self.lasts = np.arange(1, MAX_RUN + 1) if self.frame_runs else np.ones(len(delimiters), dtype=np.int64)
        vocab += [FERMATA_TOKEN, *delimiters]
        super().__init__(vocab, pitch_min, pitch_max)
        self.n_pitches = len(names)

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> VoicesRepresentation:
        positions, runs = p.get("bar_positions", False), p.get("frame_runs", False)
        return cls(p["pitch_min"], p["pitch_max"], p["max_voices"], positions, runs)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pitch_min": self.pitch_min,
            "pitch_max": self.pitch_max,
            "max_voices": self.max_voices,
            "bar_positions": self.bar_positions,
            "frame_runs": self.frame_runs,
        }

    # -- files -> frames -> ids -----------------------------------------------------------------

    def read_checked(self, path: str, limits: dict[str, Any]) -> Checked:
        """The file's notes and fermatas; MidiError also for a file without a time signature."""
        notes, duration, shift = super().read_checked(path, limits)
        marks = read_marks(path)
        if not marks.meters:
            raise MidiError(path, "no time signature (no meter): voices reads scores, e.g. chorales")
        steps = [int(np.floor(q * STEPS_PER_QUARTER + 0.5)) for q, text in marks.markers if text == FERMATA]
        fermatas = np.asarray(sorted(set(steps)), dtype=np.int64)
        return Checked(Chorale(notes, fermatas, meter_rows(marks.meters)), duration, shift)

    def frames(self, piece: Chorale | np.ndarray) -> Frames:
        """The frame grid of a chorale (or of bare notes, without fermatas)."""
        if not isinstance(piece, Chorale):
            piece = Chorale(piece, np.zeros(0, dtype=np.int64))
        on, off, pitch = self.grid_notes(piece.notes)
        n = int(off.max()) if off.shape[0] else 0
        col = pitch - self.pitch_min
        edges = np.zeros((n + 1, self.n_pitches), dtype=np.int32)
        np.add.at(edges, (on, col), 1)
        np.add.at(edges, (off, col), -1)
        onset = np.zeros((n, self.n_pitches), dtype=bool)
        onset[on, col] = True
        fermata = np.zeros(n, dtype=bool)
        for step in piece.fermatas[(piece.fermatas >= 0) & (piece.fermatas < n)].tolist():
            struck = off[on == step]
            fermata[step : int(struck.max()) if struck.shape[0] else step + 1] = True
        return Frames(np.cumsum(edges, axis=0)[:n] > 0, onset, fermata, bar_positions(n, piece.meters))

    def kept(self, sound: np.ndarray) -> np.ndarray:
        """The sounding notes a frame keeps: all of them up to max_voices, else its highest
        max_voices - 1 and its lowest (max_voices = 1: its highest)."""
        count = sound.sum(axis=1, keepdims=True)
        above = np.cumsum(sound[:, ::-1], axis=1)[:, ::-1] - sound  # sounding notes higher up
        if self.max_voices == 1:
            keep = above == 0
        else:
            keep = (above < self.max_voices - 1) | (above == count - 1)
        return sound & ((count <= self.max_voices) | keep)

    def encode(self, piece: Chorale | np.ndarray) -> np.ndarray:
        return self.encode_frames(self.frames(piece))

    def runs(self, kept: np.ndarray, tied: np.ndarray, fermata: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the frames written, how many sixteenths each lasts): with frame runs, a frame that
        strikes nothing and sounds what the frame before sounds, under the same fermata state,
        is folded into the frame written before it (at most MAX_RUN frames in one); without,
        every frame, each lasting one."""
        n = kept.shape[0]
        if not self.frame_runs or n == 0:
            return np.arange(n), np.ones(n, dtype=np.int64)
        same = np.zeros(n, dtype=bool)
        same[1:] = (kept[1:] == kept[:-1]).all(axis=1) & (tied[1:] == kept[1:]).all(axis=1)
        same[1:] &= fermata[1:] == fermata[:-1]
        start = np.flatnonzero(~same)
        group = np.cumsum(~same) - 1
        written = np.flatnonzero(~same | ((np.arange(n) - start[group]) % MAX_RUN == 0))
        return written, np.diff(np.r_[written, n])

    def encode_frames(self, frames: Frames) -> np.ndarray:
        """<BOS>, per frame [FERMATA] + its kept notes from high to low + ||| (or |k, its bar
        position; or ||k, the sixteenths it lasts, with frame runs), <EOS>."""
        kept = self.kept(frames.sound)
        before = np.zeros_like(kept)
        before[1:] = kept[:-1]
        tied = kept & ~frames.onset & before  # a note dropped in the frame before is struck anew
        written, lasts = self.runs(kept, tied, frames.fermata)
        kept, tied = kept[written], tied[written]
        f, col = np.nonzero(kept)
        n = kept.shape[0]
        fermata = np.flatnonzero(frames.fermata[written])
        frame = np.concatenate([f, fermata, np.arange(n)])
        # within a frame: FERMATA, then pitches high to low, then the delimiter
        order = np.concatenate(
            [self.n_pitches - col, np.zeros(fermata.shape[0], np.int64), np.full(n, self.n_pitches + 1)]
        )
        if self.frame_runs:
            delimiter = lasts - 1
        else:
            delimiter = frames.position if self.bar_positions else np.zeros(n, np.int64)
        ids = np.concatenate(
            [
                np.where(tied[f, col], self.tie_base, self.new_base) + col,
                np.full(fermata.shape[0], self.fermata_id),
                self.frame_id + delimiter,
            ]
        )
        body = ids[np.lexsort((order, frame))]
        return np.concatenate([[BOS], body, [EOS]]).astype(np.uint16)

    def tokenize_file(self, path: str, limits: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        """One file -> ids and index fields; MidiError for a file whose frames go over
        max_voices too often (see MAX_OVER_SHARE) or that has no note in the pitch range."""
        chorale, duration, shift = self.read_checked(path, limits)
        frames = self.frames(chorale)
        count = frames.sound.sum(axis=1)
        if not count.any():
            raise MidiError(path, "no notes inside preprocess.pitch_min..pitch_max")
        over = int((count > self.max_voices).sum())
        sounding = int((count > 0).sum())
        if over > MAX_OVER_SHARE * sounding:
            raise MidiError(
                path,
                f"more than preprocess.max_voices = {self.max_voices} notes at once in {over / sounding:.0%} of its "
                f"frames (at most {MAX_OVER_SHARE:.0%})",
            )
        info = {
            "n_notes": int(chorale.notes.shape[0]),
            "duration_s": round(duration, 3),
            "frames": int(count.shape[0]),
            "fermata_frames": int(frames.fermata.sum()),
            "over_voices": over,
            **key_info(shift),
        }
        return self.encode_frames(frames), info

    # -- ids -> notes -> files ------------------------------------------------------------------

    def decode_voiced(self, ids: np.ndarray) -> Voiced:
        """Any id sequence -> notes with their voices (see the module docstring); the sequence
        ends at the first <EOS> after some content."""
        on: list[int] = []
        off: list[int] = []
        pitch: list[int] = []
        voice: list[int] = []
        fermatas: list[int] = []
        positions: list[int] = []
        f, prev, cur, low, empty, started, under = 0, {}, {}, None, True, False, False
        for i in np.asarray(ids, dtype=np.int64).tolist():
            if i < 0 or i >= len(self.vocab):
                continue
            if i < len(SPECIALS):
                if i == EOS and started:
                    break
                continue
            started = True
            if i >= self.frame_id:
                lasts = int(self.lasts[i - self.frame_id])
                positions.append(0 if self.frame_runs else i - self.frame_id)
                for k in cur.values():
                    off[k] = f + lasts
                if under:
                    fermatas.extend(range(f, f + lasts))
                f, prev, cur, low, empty, under = f + lasts, cur, {}, None, True, False
                continue
            if i == self.fermata_id:
                if empty:
                    under = True
                    empty = False
                continue
            p = self.pitch_min + (i - self.new_base) % self.n_pitches
            if low is not None and p >= low:
                continue  # not below the notes of the frame so far
            low, empty = p, False
            k = prev.get(p) if i >= self.tie_base else None
            if k is None:
                k = len(on)
                on.append(f)
                pitch.append(p)
                voice.append(len(cur))
                off.append(f + 1)
            else:
                off[k] = f + 1
            cur[p] = k
        if under:  # a FERMATA frame the ids end in, without its delimiter
            fermatas.append(f)
        order = np.lexsort((pitch, on)) if on else np.zeros(0, dtype=np.int64)
        rows = [(on[k], off[k], pitch[k]) for k in order.tolist()]
        return Voiced(rows, np.asarray(voice, dtype=np.int64)[order], fermatas, positions)

    def decode_notes(self, ids: np.ndarray) -> np.ndarray:
        return self.notes_from_steps(self.decode_voiced(ids).rows)

    def voice_names(self) -> tuple[str, ...]:
        """The track names of the voices: SATB for four, else Voice 1, Voice 2 ..."""
        return SATB if self.max_voices == 4 else tuple(f"Voice {k + 1}" for k in range(self.max_voices))

    def write_midi(self, ids: np.ndarray, path: str | Path, context: OutputContext | None = None) -> np.ndarray:
        """decode(ids, context) written as one track per voice, in the meters the bar positions
        say (4/4 without them: most chorales are in 4/4, and a file with a meter can be read
        back, e.g. as a primer), with a "fermata" marker where each run of FERMATA frames starts; returns the notes."""
        context = context or OutputContext()
        notes = self.decode(ids, context)
        voiced = self.decode_voiced(ids)
        tempo = context.tempo_bpm or SCORE_TEMPO_BPM
        frame_s = STEP_S * SCORE_TEMPO_BPM / tempo
        runs = set(voiced.fermata_frames)
        changes = meter_changes(voiced.positions) if self.bar_positions else [(0, (4, 4))]
        markers = [(f * frame_s, FERMATA) for f in voiced.fermata_frames if f - 1 not in runs]
        write_midi(
            notes,
            path,
            tempo_bpm=tempo,
            empty_track=(context.program or 0, False),
            time_signature=[(f * frame_s, *sig) for f, sig in changes],
            key=None if context.key in (None, "none") else context.key,
            track=voiced.voice,
            track_names=self.voice_names(),
            markers=markers,
        )
        return notes

    # -- what evaluation, training and sampling ask -------------------------------------------

    def repetition_units(self, ids: np.ndarray) -> np.ndarray:
        """One unit per frame, the same number for the same frame (its ids hashed: Python's hash
        of a tuple of ints is the same in every run): a chord held forever is one unit repeated."""
        ids = np.asarray(ids, dtype=np.int64)
        ids = ids[ids >= len(SPECIALS)]
        ids = np.minimum(ids, self.frame_id)  # a held chord is one unit whatever its bar position
        frames = np.split(ids, np.flatnonzero(ids == self.frame_id) + 1)
        return np.asarray([hash(tuple(fr.tolist())) for fr in frames if fr.shape[0]], dtype=np.int64)

    def pitch_table(self) -> tuple[np.ndarray, int, int]:
        """`p` and `p~` stand for pitch p; the ids of neighbouring pitches are neighbours."""
        table = np.full(len(self.vocab), -1, dtype=np.int64)
        table[self.new_base : self.fermata_id] = np.tile(np.arange(self.pitch_min, self.pitch_max + 1), 2)
        return table, self.pitch_min, self.pitch_max

    def grammar(self, limits) -> Any:
        """Frames as the encoding writes them (see voices_grammar.VoicesGrammar)."""
        from midigen.representations.voices_grammar import VoicesGrammar

        return VoicesGrammar(self, limits)
