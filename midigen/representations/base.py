"""The interface every representation (tokenizer) shares, grids included.

A representation turns a MIDI file into token ids and any id sequence back into notes:

- `read_piece(path)` reads what `encode` takes (notes in seconds, or a piece on a step grid);
- `encode(piece) -> ids` and `decode(ids, context) -> notes`, where the `OutputContext` says how
  the notes are played and written (tempo, key signature, program): the same call for every
  representation, so no caller needs to know which one it holds;
- `write_midi(ids, path, context)` writes what `decode` gives, with the meta events the
  representation needs (a grid's time signature and full length, a score's tempo and key);
- `tokenize_file(path, limits)` is what preprocess does with one file.

`layout` says how a token store of this representation is cut for models: "sequence" (pieces
of any length framed by <BOS> ... <EOS>) or "windows" (every piece as fixed-length windows of
`seq_len` ids). Model families declare which layout they read (midigen.models).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from midigen.data import keys
from midigen.data.midi_io import read_notes, select_notes, write_midi
from midigen.errors import MidiError

SPECIALS = ("<PAD>", "<BOS>", "<EOS>")
PAD, BOS, EOS = 0, 1, 2

#: the layouts a token store can have (see the module docstring)
LAYOUTS = ("sequence", "windows")


@dataclass(frozen=True)
class OutputContext:
    """How decoded notes are played and written.

    tempo_bpm: quarter notes per minute for representations that count musical time (grids,
    score-time tokens); None = their default (120), and event tokens keep their own seconds.
    key: a key signature written at time 0 by score-time representations (None or "none": none).
    program: the General MIDI program of pitched notes (None: as decoded).
    transpose: semitones pitched notes are moved by, kept inside the representation's pitch
    range (midigen.data.keys.transpose_notes): a piece of a model trained in C (preprocess.key
    c) moved to a key of the corpus. The key signature is the caller's to move (write_pieces).
    """

    tempo_bpm: float | None = None
    key: str | None = None
    program: int | None = None
    transpose: int = 0


def _limits(limits: dict[str, Any] | None) -> dict[str, Any]:
    """The reading limits: the given ones over preprocess's defaults."""
    from midigen.params import DEFAULTS

    # a piece read without limits keeps its key (preprocess.key applies when they name it)
    return {**DEFAULTS["preprocess"], "key": "keep", **(limits or {})}


def check_duration(path: str, duration_s: float, limits: dict[str, Any]) -> None:
    """MidiError when a piece lasts longer than preprocess.max_duration_s."""
    if duration_s > limits["max_duration_s"]:
        raise MidiError(
            path, f"lasts {duration_s:.0f} s, over preprocess.max_duration_s = {limits['max_duration_s']:g}"
        )


class Checked(NamedTuple):
    """What read_checked gives: the piece encode() takes, its length in seconds, and the
    semitones it was moved by to C (preprocess.key c), None when its key was kept."""

    piece: Any
    duration: float
    key_shift: int | None


def key_info(shift: int | None) -> dict[str, int]:
    """The index.csv field of a piece moved to C (key_shift), none when its key was kept."""
    return {} if shift is None else {keys.SHIFT_COLUMN: shift}


class Representation:
    """Notes <-> token ids. The vocabulary depends on the params alone, never on data (except a
    representation with vocab_from_data, whose params include corpus counts)."""

    name: str = ""
    layout: str = "sequence"
    #: True: preprocess counts the corpus first and passes the counts to from_params
    vocab_from_data: bool = False
    #: the columns tokenize_file adds to a piece's row of the store's index
    info_keys: tuple[str, ...] = ("n_notes", "duration_s")
    #: None: encode() takes notes in real seconds (the file's tempo map) and decode() returns them.
    #: A tempo (quarter notes per minute): notes are in musical time, as if played at this constant
    #: tempo, for representations that count quarter notes rather than seconds.
    score_tempo_bpm: float | None = None
    #: seconds of the shortest piece worth keeping (one step of the time grid)
    time_step: float = 0.0
    #: whether preprocess.key c can move this representation's pieces to C (pitched notes in
    #: a pitch range: pitch_min, pitch_max)
    keyed: bool = True

    def __init__(self, vocab: list[str]):
        self.vocab = vocab
        self.token_to_id = {t: i for i, t in enumerate(vocab)}
        if len(vocab) > np.iinfo(np.uint16).max:
            raise ValueError(f"vocabulary of {len(vocab)} tokens does not fit uint16")

    def __len__(self) -> int:
        return len(self.vocab)

    def beat_grid(self) -> int | None:
        """Steps per quarter note of the beat grid the notes write_midi writes lie on, so a score
        can be written of them (midigen.export.musicxml); None when they are timed in seconds."""
        return None

    def config(self) -> dict[str, Any]:
        """The params that rebuild this representation (stored with data and checkpoints)."""
        raise NotImplementedError

    # -- files -> ids ---------------------------------------------------------------------------

    def read(self, path: str | Path, max_notes: int | None = None) -> np.ndarray:
        """The notes of a MIDI file, timed the way encode() expects (see score_tempo_bpm)."""
        return read_notes(path, max_notes, tempo_bpm=self.score_tempo_bpm)

    def read_piece(self, path: str | Path, limits: dict[str, Any] | None = None) -> Any:
        """What encode() takes, read from a MIDI file within `limits` (preprocess's max_notes,
        max_duration_s, max_memory_mb and drums; default: their defaults): MidiError saying why a
        file cannot be used, before anything large is built."""
        return self.read_checked(str(path), _limits(limits)).piece

    def encode(self, piece: Any) -> np.ndarray:
        """A piece -> uint16 ids, framed by <BOS> ... <EOS>."""
        raise NotImplementedError

    def tokenize_file(self, path: str, limits: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        """One file -> (ids as the token store holds them, its index fields `info_keys`).

        limits: preprocess's max_notes, max_duration_s, drums and key. Raises MidiError saying
        why a file cannot be used."""
        notes, duration, shift = self.read_checked(path, limits)
        ids = self.encode(notes)
        if ids.shape[0] <= 2:
            raise MidiError(path, "no notes inside preprocess.pitch_min..pitch_max")
        return ids, {"n_notes": int(notes.shape[0]), "duration_s": round(duration, 3), **key_info(shift)}

    def read_checked(self, path: str, limits: dict[str, Any]) -> Checked:
        """A file's notes as encode() takes them (drum policy applied; moved to C when
        limits["key"] is c, or auto for voices: midigen.data.keys), its length in seconds and the shift
        applied (None: key keep); MidiError when it has none or is too short or too long."""
        notes = self.read(path, limits["max_notes"])
        if notes.shape[0] == 0:
            raise MidiError(path, "no notes")
        notes = select_notes(notes, limits["drums"])
        if notes.shape[0] == 0:
            raise MidiError(path, "only drum notes (preprocess.drums = drop)")
        duration = float(notes["end_s"].max())
        if duration < self.time_step:
            raise MidiError(path, f"lasts {duration:.3g} s, less than one time step (absurd tempo?)")
        check_duration(path, duration, limits)
        shift = None
        if keys.resolve(limits.get("key", "keep"), self.name) == "c":
            notes, shift = keys.to_c(notes, self.pitch_min, self.pitch_max)
        return Checked(notes, duration, shift)

    # -- ids -> notes -> files ------------------------------------------------------------------

    def decode_notes(self, ids: np.ndarray) -> np.ndarray:
        """Any id sequence a model can produce -> notes in the representation's own timing."""
        raise NotImplementedError

    def decode(self, ids: np.ndarray, context: OutputContext | None = None) -> np.ndarray:
        """Any id sequence a model can produce -> notes, timed and voiced as `context` says."""
        notes = self.decode_notes(ids)
        context = context or OutputContext()
        if context.transpose:
            notes = keys.transpose_notes(notes, context.transpose, self.pitch_min, self.pitch_max)
        if self.score_tempo_bpm and context.tempo_bpm:
            # decoded at score_tempo_bpm: stretch to the asked tempo
            scale = self.score_tempo_bpm / context.tempo_bpm
            notes["start_s"] *= scale
            notes["end_s"] *= scale
        if context.program is not None:
            notes["program"] = np.where(notes["is_drum"], notes["program"], context.program)
        return notes

    def write_midi(self, ids: np.ndarray, path: str | Path, context: OutputContext | None = None) -> np.ndarray:
        """decode(ids, context) written to a MIDI file; returns the notes."""
        context = context or OutputContext()
        notes = self.decode(ids, context)
        if self.score_tempo_bpm and context.tempo_bpm:
            key = None if context.key in (None, "none") else context.key
            write_midi(notes, path, tempo_bpm=context.tempo_bpm, key=key)
        else:
            write_midi(notes, path)
        return notes

    # -- what evaluation and training ask of every representation -------------------------------

    def repetition_units(self, ids: np.ndarray) -> np.ndarray:
        """The ids the repetition metrics count, one per musical step: here every id but
        <PAD>/<BOS>/<EOS>; a representation that spends several ids on one onset keeps one."""
        ids = np.asarray(ids, dtype=np.int64)
        return ids[ids >= len(SPECIALS)]

    def grammar(self, limits) -> Any:
        """The constraints of sampling (a midigen.generation.grammar.Grammar for
        GrammarLimits `limits`), or None when any id may follow any other."""
        return None

    def pitch_table(self) -> tuple[np.ndarray, int, int] | None:
        """For transposition: (the MIDI pitch each id stands for, -1 for ids that are not a note;
        the lowest and highest pitch the vocabulary has), or None when ids cannot be transposed
        by adding to them."""
        return None

    # -- tokens as text -------------------------------------------------------------------------

    def ids_to_tokens(self, ids) -> list[str]:
        return [self.vocab[int(i)] if 0 <= int(i) < len(self.vocab) else f"<BAD:{int(i)}>" for i in ids]

    def tokens_to_ids(self, tokens: list[str]) -> np.ndarray:
        from midigen.errors import DataError

        out = []
        for n, tok in enumerate(tokens, 1):
            if tok not in self.token_to_id:
                raise DataError(f"token {n}: {tok!r} is not in the {self.name} vocabulary")
            out.append(self.token_to_id[tok])
        return np.asarray(out, dtype=np.uint16)

    def save_vocab(self, path: str | Path) -> None:
        Path(path).write_text(
            json.dumps({"representation": self.config(), "tokens": self.vocab}, indent=1) + "\n",
            encoding="utf-8",
        )


def transpose_ids(win: np.ndarray, table: tuple[np.ndarray, int, int], max_shift: int, u: np.ndarray) -> np.ndarray:
    """Windows of ids (n, T), each moved by a random number of semitones in [-max_shift, max_shift]
    (u: one uniform number in [0, 1) per window), limited to what keeps every note of the window
    inside the table's pitch range (the ids of neighbouring pitches are neighbours)."""
    pitch_of, lo_pitch, hi_pitch = table
    pitch = pitch_of[win]
    note = pitch >= 0
    lo = np.where(note, pitch, 10**6).min(axis=1)
    hi = np.where(note, pitch, -(10**6)).max(axis=1)
    down = np.minimum(max_shift, np.maximum(lo - lo_pitch, 0))
    up = np.minimum(max_shift, np.maximum(hi_pitch - hi, 0))
    shift = np.floor(u * (up + down + 1)).astype(np.int64) - down
    shift = np.where(note.any(axis=1), shift, 0)
    return np.where(note, win + shift[:, None], win)
