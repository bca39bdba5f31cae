"""MusicVAE at use time: load a checkpoint, find a file's window, sample, reconstruct and
interpolate in latent space, and GrooVAE's tasks (humanize, tap2drum, groove transfer);
midigen.generation.generate writes the results.

Used by the generate and evaluate stages and by `python -m midigen interpolate|reconstruct|
humanize|tap2drum|transfer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from midigen.errors import DataError, MidiError, ParamsError
from midigen.models.base import request_from
from midigen.models.musicvae import MusicVAE, interpolate
from midigen.representations.grid import DEFAULT_VELOCITY, GridPiece, GridRepresentation, no_window_reason
from midigen.representations.groove import humanize_input, quantize, tapify_input
from midigen.training import checkpoint


def load_latent(checkpoint_path: str | Path, device: str = "auto") -> checkpoint.Loaded:
    """A checkpoint of a family with a latent space (MusicVAE), loaded; DataError otherwise."""
    loaded = checkpoint.load_model(checkpoint_path, device)
    if not loaded.family.has_latent:
        raise DataError(
            f"{checkpoint_path}: a {loaded.family.name!r} checkpoint, whose model has no latent space; "
            "this needs a MusicVAE one (train with model.kind=musicvae)"
        )
    return loaded


@dataclass(frozen=True)
class FileWindow:
    """One window of a MIDI file: its ids, the bar it starts at (from 1), its hits, the file's tempo."""

    ids: np.ndarray
    bar: int
    hits: int
    tempo_bpm: float

    def describe(self, rep: GridRepresentation) -> str:
        return f"bars {self.bar}-{self.bar + rep.bars - 1} ({self.hits} hits)"


def pick_window(windows: np.ndarray, rep: GridRepresentation, min_hits: int) -> int:
    """Index of the first window with at least min_hits hits (class x step), else of the one with
    the most: a sparse intro says little about a piece's groove."""
    hits = rep.hit_counts(windows).sum(axis=1)
    enough = np.flatnonzero(hits >= min_hits)
    return int(enough[0]) if enough.size else int(np.argmax(hits))


def file_window(
    path: str | Path, rep: GridRepresentation, bar: int | None = None, min_hits: int = 0, tap: bool = False
) -> FileWindow:
    """The window of a MIDI file starting at `bar` (counted from 1), or by default its first with
    at least min_hits hits (else the fullest). tap: every note of the file, any instrument, as
    one tapped rhythm (groove's tap_piece).

    Raises MidiError saying why there is none: no drum track / no melody, not 4/4, too short,
    nothing in the window, or no window with min_hits hits."""
    piece = rep.read_piece(path)
    if tap:
        piece = rep.tap_piece(piece)
    windows, starts = rep.windows_with_starts(piece, hop_bars=1)
    if bar is not None:
        keep = starts == bar - 1
        windows, starts = windows[keep], starts[keep]
    if windows.shape[0] == 0:
        raise MidiError(str(path), no_window_reason(rep, piece, bar))
    i = 0 if bar is not None else pick_window(windows, rep, min_hits)
    hits = int(rep.hit_counts(windows[i : i + 1]).sum())
    if bar is None and hits < min_hits:
        raise MidiError(
            str(path), f"no {rep.bars}-bar window with {min_hits} hits or more (the fullest has {hits}; try --min-hits)"
        )
    return FileWindow(windows[i].astype(np.int64), int(starts[i]) + 1, hits, piece.tempo_bpm)


def file_grid(path: str | Path, rep: GridRepresentation, tap: bool = False) -> tuple[np.ndarray, GridPiece]:
    """A whole file as consecutive windows (n, seq_len) from bar 1, the last one padded with
    silence, and its piece: what humanize and tap2drum rewrite window by window."""
    piece = rep.read_piece(path)
    if tap:
        piece = rep.tap_piece(piece)
    ids = rep.encode(piece)
    windows = -(-ids.shape[0] // rep.seq_len)
    grid = np.zeros(windows * rep.seq_len, dtype=np.int64)
    grid[: ids.shape[0]] = ids
    return grid.reshape(windows, rep.seq_len), piece


def _as_tensor(ids: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(ids, dtype=np.int64), device=device)


def _generator(seed: int, device: torch.device) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


@torch.no_grad()
def sample(
    model: MusicVAE, num: int, temperature: float, seed: int, device: torch.device, shift: torch.Tensor | None = None
) -> tuple[np.ndarray, torch.Tensor]:
    """num windows decoded from z ~ N(0, I) (plus `shift`, a z_dim vector: attribute vectors),
    as one batch: (ids (num, T), z)."""
    gen = _generator(seed, device)
    z = torch.randn(num, model.config.z_dim, generator=gen, device=device)
    if shift is not None:
        z = z + shift.to(device)
    return model.decode(z, temperature, generator=gen).cpu().numpy(), z


@torch.no_grad()
def reconstruct(
    model: MusicVAE, windows: np.ndarray, temperature: float, seed: int, device: torch.device
) -> np.ndarray:
    """Encode windows (n, T) to mu and decode them again (argmax at temperature 0)."""
    return model.reconstruct(_as_tensor(windows, device), temperature, generator=_generator(seed, device)).cpu().numpy()


@torch.no_grad()
def interpolate_windows(
    model: MusicVAE, a: np.ndarray, b: np.ndarray, steps: int, temperature: float, seed: int, device: torch.device
) -> np.ndarray:
    """`steps` windows decoded along the slerp from mu(a) to mu(b), both ends included: (steps, T)."""
    mu, _ = model.encode(_as_tensor(np.stack([a, b]), device))
    zs = interpolate(mu[0], mu[1], steps)
    return model.decode(zs, temperature, generator=_generator(seed, device)).cpu().numpy()


# -- GrooVAE's tasks -----------------------------------------------------------------------------


def _hits(rep: GridRepresentation, windows: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(rep.class_hits(windows), device=device)


def check_groove(model: MusicVAE, task: str) -> None:
    """ParamsError unless the model has a groove head (velocities and offsets to give)."""
    if model.config.head != "groove":
        raise ParamsError(f"{task} needs a GrooVAE checkpoint (preprocess.representation = groove)")


@torch.no_grad()
def humanize(
    model: MusicVAE, rep: GridRepresentation, windows: np.ndarray, temperature: float, seed: int, device
) -> np.ndarray:
    """Played versions of windows (n, T * 9): the encoder reads them quantized (velocities and
    offsets zeroed, as a model trained with train.input_transform humanize learnt), the decoder
    keeps their hits and gives every hit its velocity and offset."""
    check_groove(model, "humanize")
    mu, _ = model.encode(_as_tensor(humanize_input(windows), device))
    out = model.decode(mu, temperature, _generator(seed, device), hits=_hits(rep, windows, device))
    return out.cpu().numpy()


@torch.no_grad()
def tap2drum(model: MusicVAE, windows: np.ndarray, temperature: float, seed: int, device) -> np.ndarray:
    """Full kits for the rhythms of windows (n, T * 9): each step's loudest hit alone on one
    channel is what the encoder reads (train.input_transform tapify); the decoder writes drums."""
    check_groove(model, "tap2drum")
    mu, _ = model.encode(_as_tensor(tapify_input(windows), device))
    return model.decode(mu, temperature, _generator(seed, device)).cpu().numpy()


@torch.no_grad()
def groove_transfer(
    model: MusicVAE,
    rep: GridRepresentation,
    groove: np.ndarray,
    pattern: np.ndarray,
    temperature: float,
    seed: int,
    device,
) -> np.ndarray:
    """`pattern`'s hits played with `groove`'s feel: z is the code of the groove window (its
    velocities and offsets included: a model trained with input_transform none), decoded with
    the pattern's hits fixed, so only velocities and offsets come from the groove. (n, T * 9)."""
    check_groove(model, "groove transfer")
    mu, _ = model.encode(_as_tensor(groove, device))
    return model.decode(mu, temperature, _generator(seed, device), hits=_hits(rep, pattern, device)).cpu().numpy()


#: GrooVAE's whole-file tasks: task -> (the train.input_transform it works best with, whether
#: every note of the file is read as one tapped rhythm)
FILE_TASKS = {"humanize": ("humanize", False), "tap2drum": ("tapify", True)}


def check_temperature(value: float, name: str = "--temperature") -> float:
    """A decoding temperature of the latent tasks: 0 (the most likely step) or what
    generate.temperature accepts; ParamsError naming `name` otherwise."""
    from midigen.params import SCHEMA

    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
        return 0.0
    return SCHEMA["generate"]["temperature"].check(name, value)


def transform_warning(loaded: checkpoint.Loaded, task: str, transform: str) -> str | None:
    """What to warn when `loaded` (a GrooVAE checkpoint, checked here) was not trained with the
    input transform `task` works best with; None when it was."""
    check_groove(loaded.model, task)
    trained = loaded.ckpt.get("input_transform", "none")
    if trained == transform:
        return None
    return (
        f"{loaded.path} was trained with train.input_transform = {trained}; {task} works best "
        f"with a model trained with {transform}"
    )


def file_task(loaded: checkpoint.Loaded, windows: np.ndarray, task: str, temperature: float, seed: int) -> np.ndarray:
    """humanize or tap2drum (FILE_TASKS) over a file's windows as file_grid reads them (with
    tap = FILE_TASKS[task][1]): the ids of the whole result, window after window."""
    if task == "humanize":
        out = humanize(loaded.model, loaded.rep, windows, temperature, seed, loaded.device)
    else:
        out = tap2drum(loaded.model, windows, temperature, seed, loaded.device)
    return np.asarray(out).reshape(-1)


# -- what the generate stage writes --------------------------------------------------------------

INTERPOLATION_STEPS = 5


def endpoint_windows(data, count: int = 2, min_hits: int = 0) -> np.ndarray:
    """One window of each of the first `count` held-out pieces (test, else val, else train), as
    interpolation end points: the first with at least min_hits hits (else the fullest) of each
    piece: (<= count, T). With one piece only, its first such window and its last window."""
    pieces = data.pieces("test", fallbacks=("val", "train")).head(count)
    rep = data.store.representation
    width, tokens = rep.seq_len, data.store.tokens
    windows = []
    for offset, length in zip(pieces["offset"], pieces["length"], strict=True):
        own = np.asarray(tokens[offset : offset + length], dtype=np.int64).reshape(-1, width)
        windows.append(own[pick_window(own, rep, min_hits)])
        if pieces.shape[0] == 1 and own.shape[0] > 1 and not np.array_equal(own[-1], windows[0]):
            windows.append(own[-1])
    return np.stack(windows) if windows else np.zeros((0, width), dtype=np.int64)


#: held-out windows scored at most (evenly spread over the chosen pieces)
MAX_TEST_WINDOWS = 1024


def held_out_windows(data, max_pieces: int) -> np.ndarray:
    """All windows of the first max_pieces held-out pieces (test, else val, else train), at most
    MAX_TEST_WINDOWS spread evenly: (n, T)."""
    rep = data.store.representation
    pieces = data.pieces("test", fallbacks=("val", "train")).head(max_pieces)
    spans = zip(pieces["offset"], pieces["length"], strict=True)
    windows = np.concatenate([np.asarray(data.store.tokens[o : o + n], dtype=np.int64) for o, n in spans])
    windows = windows.reshape(-1, rep.seq_len)
    if windows.shape[0] > MAX_TEST_WINDOWS:
        windows = windows[np.linspace(0, windows.shape[0] - 1, MAX_TEST_WINDOWS).astype(np.int64)]
    return windows


def task_windows(data, count: int, min_hits: int) -> np.ndarray:
    """`count` held-out windows for humanize / tap2drum, spread evenly over those of the first
    `count` held-out pieces with at least min_hits hits (all of them when none has)."""
    windows = held_out_windows(data, count)
    full = windows[data.store.representation.hit_counts(windows).sum(axis=1) >= min_hits]
    windows = full if full.shape[0] else windows
    return windows[np.linspace(0, windows.shape[0] - 1, min(count, windows.shape[0])).astype(np.int64)]


def stage_outputs(family, model: MusicVAE, rep: GridRepresentation, params: dict[str, Any], data, device) -> list:
    """The generate stage's files per generate.mode:

    - sample: generate.num_files samples (sample_NN, at generate.temperature) and an
      interpolation between windows of two held-out pieces (interp_NN, both ends included,
      decoded by argmax: sampling would add noise at every point, and evaluate scores it so);
    - interpolate: the interpolation alone;
    - humanize: up to num_files held-out windows (original_NN), quantized (quantized_NN, at
      velocity 100 to be heard) and humanized by the model (humanize_NN);
    - tap2drum: the same windows (original_NN), tapped (tap_NN: each step's loudest hit on one
      channel) and the model's drums for the taps (tap2drum_NN).

    Windows are each piece's first with at least generate.min_hits hits."""
    g = params["generate"]
    mode, seed = g["mode"], g["seed"]
    outputs = []
    if mode == "sample":
        outputs.append(("sample", family.sample(model, rep, request_from(g), device)))
    if mode in ("sample", "interpolate"):
        ends = endpoint_windows(data, 2, g["min_hits"])
        if ends.shape[0] == 2:
            seq = interpolate_windows(model, ends[0], ends[1], INTERPOLATION_STEPS, 0.0, seed, device)
            outputs.append(("interp", list(seq)))
        return outputs
    check_groove(model, f"generate.mode = {mode}")
    windows = task_windows(data, g["num_files"], g["min_hits"])
    if mode == "humanize":
        played = humanize(model, rep, windows, 0.0, seed, device)
        task = [("quantized", list(quantize(windows, DEFAULT_VELOCITY))), ("humanize", list(played))]
    else:
        task = [("tap", list(tapify_input(windows))), ("tap2drum", list(tap2drum(model, windows, 0.0, seed, device)))]
    return [("original", list(windows)), *task]
