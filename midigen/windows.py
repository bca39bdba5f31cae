"""Training and evaluation windows cut from a split of the token store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from midigen.errors import DataError
from midigen.representations import PAD
from midigen.store import TokenStore


def split_tokens(store: TokenStore, split: pd.DataFrame, name: str) -> np.ndarray:
    """All ids of one split's pieces back to back (each piece keeps its <BOS> ... <EOS>)."""
    names = split.set_index("rel_path")["split"]
    chosen = store.index[store.index["rel_path"].map(names).eq(name)]
    if chosen.empty:
        raise DataError(f"the {name} split is empty (data/split.csv); add pieces or change split ratios")
    parts = [store.tokens[o : o + n] for o, n in zip(chosen["offset"], chosen["length"], strict=True)]
    return np.concatenate(parts).astype(np.int64)


class WindowSampler:
    """Random windows of seq_len + 1 ids from one long id stream, reproducible from a seed.

    With `transpose` > 0, each window is shifted by a random number of semitones in
    [-transpose, transpose], limited to what keeps every note of that window in range.
    """

    def __init__(self, stream: np.ndarray, seq_len: int, batch_size: int, seed: int, transpose: int = 0, rep=None):
        if stream.shape[0] < 2:
            raise DataError("the training split has fewer than 2 tokens")
        self.stream = stream
        self.seq_len = min(seq_len, stream.shape[0] - 1)
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.transpose = transpose
        self.rep = rep
        if transpose:
            # per id: pitch offset class (0 = not a note, 1 = NOTE_ON, 2 = NOTE_OFF) and pitch
            n = len(rep.vocab)
            self._is_note = np.zeros(n, dtype=bool)
            self._pitch = np.zeros(n, dtype=np.int64)
            self._is_note[rep.on_base : rep.shift_base] = True
            self._pitch[rep.on_base : rep.shift_base] = np.tile(np.arange(rep.pitch_min, rep.pitch_max + 1), 2)

    def batches_per_epoch(self) -> int:
        return max(1, (self.stream.shape[0] - 1) // (self.seq_len * self.batch_size))

    def get_state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = self.rng.integers(0, self.stream.shape[0] - self.seq_len, size=self.batch_size)
        idx = starts[:, None] + np.arange(self.seq_len + 1)[None, :]
        win = self.stream[idx]
        if self.transpose:
            win = self._transpose(win)
        t = torch.from_numpy(win)
        return t[:, :-1], t[:, 1:]

    def _transpose(self, win: np.ndarray) -> np.ndarray:
        rep = self.rep
        note = self._is_note[win]
        pitch = np.where(note, self._pitch[win], 0)
        lo = np.where(note, pitch, 10**6).min(axis=1)
        hi = np.where(note, pitch, -(10**6)).max(axis=1)
        down = np.minimum(self.transpose, np.maximum(lo - rep.pitch_min, 0))
        up = np.minimum(self.transpose, np.maximum(rep.pitch_max - hi, 0))
        shift = np.floor(self.rng.random(win.shape[0]) * (up + down + 1)).astype(np.int64) - down
        shift = np.where(note.any(axis=1), shift, 0)
        return np.where(note, win + shift[:, None], win)


def eval_windows(stream: np.ndarray, seq_len: int, batch_size: int):
    """Non-overlapping windows covering the whole stream once (last one padded with <PAD>)."""
    n = stream.shape[0] - 1
    n_win = -(-n // seq_len)
    x = np.full((n_win, seq_len), PAD, dtype=np.int64)
    y = np.full((n_win, seq_len), PAD, dtype=np.int64)
    for w in range(n_win):
        a = w * seq_len
        b = min(a + seq_len, n)
        x[w, : b - a] = stream[a:b]
        y[w, : b - a] = stream[a + 1 : b + 1]
    for i in range(0, n_win, batch_size):
        yield torch.from_numpy(x[i : i + batch_size]), torch.from_numpy(y[i : i + batch_size])
