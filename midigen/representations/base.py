"""The interface every representation (tokenizer) shares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

SPECIALS = ("<PAD>", "<BOS>", "<EOS>")
PAD, BOS, EOS = 0, 1, 2


class Representation:
    """Notes <-> token ids. The vocabulary depends on the params alone, never on data."""

    name: str = ""
    #: None: encode() takes notes in real seconds (the file's tempo map) and decode() returns them.
    #: A tempo (quarter notes per minute): notes are in musical time, as if played at this constant
    #: tempo, for representations that count quarter notes rather than seconds.
    score_tempo_bpm: float | None = None

    def __init__(self, vocab: list[str]):
        self.vocab = vocab
        self.token_to_id = {t: i for i, t in enumerate(vocab)}
        if len(vocab) > np.iinfo(np.uint16).max:
            raise ValueError(f"vocabulary of {len(vocab)} tokens does not fit uint16")

    def __len__(self) -> int:
        return len(self.vocab)

    def config(self) -> dict[str, Any]:
        """The params that rebuild this representation (stored with data and checkpoints)."""
        raise NotImplementedError

    def encode(self, notes: np.ndarray) -> np.ndarray:
        """Notes -> uint16 ids, framed by <BOS> ... <EOS>."""
        raise NotImplementedError

    def decode(self, ids: np.ndarray) -> np.ndarray:
        """Any id sequence a model can produce -> notes."""
        raise NotImplementedError

    def read(self, path: str | Path, max_notes: int | None = None) -> np.ndarray:
        """The notes of a MIDI file, timed the way encode() expects (see score_tempo_bpm)."""
        from midigen.data.midi_io import read_notes

        return read_notes(path, max_notes, tempo_bpm=self.score_tempo_bpm)

    def repetition_units(self, ids: np.ndarray) -> np.ndarray:
        """The ids the repetition metrics count, one per musical step: here every id but
        <PAD>/<BOS>/<EOS>; a representation that spends several ids on one onset keeps one."""
        ids = np.asarray(ids, dtype=np.int64)
        return ids[ids >= len(SPECIALS)]

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
