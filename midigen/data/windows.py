"""Training and evaluation windows cut from a split of the token store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from midigen.data.store import TokenStore
from midigen.errors import DataError, ParamsError
from midigen.representations import PAD, Representation
from midigen.representations.base import transpose_ids
from midigen.training.distributed import batch_slice


def split_tokens(store: TokenStore, split: pd.DataFrame, name: str) -> np.ndarray:
    """All ids of one split's pieces back to back (each piece keeps its <BOS> ... <EOS>)."""
    names = split.set_index("rel_path")["split"]
    chosen = store.index[store.index["rel_path"].map(names).eq(name)]
    if chosen.empty:
        raise DataError(f"the {name} split is empty (data/split.csv); add pieces or change split ratios")
    parts = [store.tokens[o : o + n] for o, n in zip(chosen["offset"], chosen["length"], strict=True)]
    return np.concatenate(parts).astype(np.int64)


def split_view(store: TokenStore, split: pd.DataFrame, name: str) -> PieceStream:
    """The same ids as split_tokens, read from the memory-mapped store on demand."""
    names = split.set_index("rel_path")["split"]
    chosen = store.index[store.index["rel_path"].map(names).eq(name)]
    if chosen.empty:
        raise DataError(f"the {name} split is empty (data/split.csv); add pieces or change split ratios")
    return PieceStream(store.tokens, chosen["offset"].to_numpy(), chosen["length"].to_numpy())


class PieceStream:
    """Pieces of a (memory-mapped) token array back to back, as one virtual int64 stream.

    Indexing reads only the ids asked for, so training on a corpus larger than RAM keeps
    memory flat: per piece two integers, never a copy of the tokens. Pieces that lie next to
    each other in the file are merged into one segment, so a lookup is one binary search over
    the segments.
    """

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray, lengths: np.ndarray):
        offsets, lengths = np.asarray(offsets, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
        keep = lengths > 0
        offsets, lengths = offsets[keep], lengths[keep]
        # a new segment starts wherever a piece does not continue the previous one in the file
        new = np.ones(offsets.shape[0], dtype=bool)
        new[1:] = offsets[1:] != offsets[:-1] + lengths[:-1]
        seg = np.cumsum(new) - 1
        self.file_start = offsets[new]
        seg_len = np.bincount(seg, weights=lengths, minlength=int(new.sum())).astype(np.int64)
        self.virtual_start = np.concatenate([[0], np.cumsum(seg_len)[:-1]]).astype(np.int64)
        self.tokens = tokens
        self.shape = (int(seg_len.sum()),)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx) -> np.ndarray:
        if isinstance(idx, slice):
            start, stop, step = idx.indices(self.shape[0])
            idx = np.arange(start, stop, step, dtype=np.int64)
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.shape[0]):
            raise IndexError(f"index out of range for a stream of {self.shape[0]} ids")
        seg = np.searchsorted(self.virtual_start, idx, side="right") - 1
        return self.tokens[self.file_start[seg] + (idx - self.virtual_start[seg])].astype(np.int64)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def _pitch_table(rep: Representation | None, transpose: int) -> tuple[np.ndarray, int, int] | None:
    """The representation's pitch table when train.transpose asks for one; ParamsError when its
    ids cannot be transposed."""
    if not transpose:
        return None
    table = rep.pitch_table() if rep is not None else None
    if table is None:
        name = rep.name if rep is not None else "?"
        raise ParamsError(
            f"train.transpose = {transpose}: {name} tokens cannot be transposed "
            "(events, voices and melody ones can); set train.transpose: 0"
        )
    return table


class _Batches:
    """What both samplers share: a seeded generator whose state last.pt saves, this rank's
    share of every global batch, and the pitch table when batches are transposed."""

    def __init__(self, batch_size: int, seed: int, transpose: int, rep: Representation | None, shard: tuple[int, int]):
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.local = batch_slice(batch_size, *shard)
        if self.local.stop <= self.local.start:
            raise DataError(f"train.batch_size = {batch_size} is smaller than the {shard[1]} processes sharing it")
        self.transpose = transpose
        self.table = _pitch_table(rep, transpose)

    def get_state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def _transposed(self, win: np.ndarray) -> np.ndarray:
        if not self.transpose:
            return win
        # drawn for the whole global batch, so every rank's generator stays in step
        u = self.rng.random(self.batch_size)[self.local]
        return transpose_ids(win, self.table, self.transpose, u)


class WindowSampler(_Batches):
    """Random windows of seq_len + 1 ids from one long id stream, reproducible from a seed.

    With `transpose` > 0, each window is shifted by a random number of semitones in
    [-transpose, transpose], limited to what keeps every note of that window in range.

    With `shard` = (rank, world size), every rank draws the same global batch of batch_size
    window positions from the same seed but reads and returns only its own share
    (distributed.batch_slice): together the ranks see exactly the windows one process would.
    """

    def __init__(
        self,
        stream: np.ndarray | PieceStream,
        seq_len: int,
        batch_size: int,
        seed: int,
        transpose: int = 0,
        rep=None,
        shard: tuple[int, int] = (0, 1),
    ):
        if stream.shape[0] < 2:
            raise DataError("the training split has fewer than 2 tokens")
        super().__init__(batch_size, seed, transpose, rep, shard)
        self.stream = stream
        self.seq_len = min(seq_len, stream.shape[0] - 1)

    def batches_per_epoch(self) -> int:
        return max(1, (self.stream.shape[0] - 1) // (self.seq_len * self.batch_size))

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = self.rng.integers(0, self.stream.shape[0] - self.seq_len, size=self.batch_size)
        idx = starts[self.local, None] + np.arange(self.seq_len + 1)[None, :]
        t = torch.from_numpy(self._transposed(self.stream[idx]))
        return t[:, :-1], t[:, 1:]


class StreamSampler(WindowSampler):
    """Truncated backpropagation through time: batch_size reading heads over one id stream,
    each moving on by seq_len ids per batch, so that row r of every batch continues row r of the
    batch before and a model may carry its state from one batch to the next (train.stateful).
    The heads start evenly spaced, all moved by one random offset drawn from the seed; a head
    at the end of the stream reads on from its start (pieces are separated by <EOS> <BOS>
    anyway). Transposition (`transpose` > 0) draws a shift per window, as WindowSampler does.

    With `shard` = (rank, world size), each rank reads its share of the heads."""

    def __init__(self, stream: np.ndarray | PieceStream, seq_len: int, batch_size: int, seed: int, *args, **kwargs):
        super().__init__(stream, seq_len, batch_size, seed, *args, **kwargs)
        self.n = int(stream.shape[0])
        start = int(self.rng.integers(0, self.n))
        self.heads = (start + np.arange(batch_size, dtype=np.int64) * (self.n // batch_size)) % self.n

    def get_state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "heads": self.heads.tolist()}

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.heads = np.asarray(state["heads"], dtype=np.int64)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = (self.heads[self.local, None] + np.arange(self.seq_len + 1)[None, :]) % self.n
        self.heads = (self.heads + self.seq_len) % self.n
        t = torch.from_numpy(self._transposed(np.asarray(self.stream[idx], dtype=np.int64)))
        return t[:, :-1], t[:, 1:]


def eval_windows(stream: np.ndarray | PieceStream, seq_len: int, batch_size: int):
    """Non-overlapping windows covering the whole stream once (last one padded with <PAD>),
    built one batch at a time so a large validation split is never copied whole."""
    n = stream.shape[0] - 1
    n_win = -(-n // seq_len)
    offsets = np.arange(seq_len, dtype=np.int64)[None, :]
    for i in range(0, n_win, batch_size):
        pos = np.arange(i, min(i + batch_size, n_win), dtype=np.int64)[:, None] * seq_len + offsets
        real = pos < n
        # one read of the ids a batch needs: pos and pos + 1
        ids = stream[np.minimum(np.concatenate([pos, pos[:, -1:] + 1], axis=1), n)].astype(np.int64)
        x = np.where(real, ids[:, :-1], PAD)
        y = np.where(real, ids[:, 1:], PAD)
        yield torch.from_numpy(x), torch.from_numpy(y)


class WindowBatches(_Batches):
    """Random batches of whole windows (with replacement) of a "windows" store, reproducible
    from a seed; with `shard` = (rank, world size), each rank returns its share of the same
    global batch (as WindowSampler does).

    With `transpose` > 0 (representations with a pitch table: melody), each window's notes move
    by a random number of semitones in [-transpose, transpose], limited to what keeps that
    window inside the representation's pitch range.
    """

    def __init__(
        self,
        windows: np.ndarray,
        batch_size: int,
        seed: int,
        transpose: int = 0,
        rep: Representation | None = None,
        shard: tuple[int, int] = (0, 1),
    ):
        if windows.ndim != 2 or windows.shape[0] == 0:
            raise DataError("the training split has no windows")
        super().__init__(batch_size, seed, transpose, rep, shard)
        self.windows = windows

    def batches_per_epoch(self) -> int:
        return max(1, self.windows.shape[0] // self.batch_size)

    def batch(self) -> torch.Tensor:
        idx = self.rng.integers(0, self.windows.shape[0], size=self.batch_size)
        return torch.from_numpy(self._transposed(np.asarray(self.windows[idx[self.local]], dtype=np.int64)))
