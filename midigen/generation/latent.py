"""MusicVAE at use time: load a checkpoint, find a file's window, sample, reconstruct and
interpolate in latent space (midigen.generation.generate writes the results).

Used by the generate and evaluate stages and by `python -m midigen interpolate|reconstruct`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from midigen.errors import DataError, MidiError
from midigen.models.musicvae import MusicVAE, interpolate
from midigen.representations.grid import GridRepresentation, no_window_reason
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


def file_window(path: str | Path, rep: GridRepresentation, bar: int | None = None) -> tuple[np.ndarray, float]:
    """The first usable window of a MIDI file, or the one starting at `bar` (counted from 1), and
    the file's tempo (quarter notes per minute).

    Raises MidiError saying why there is none: no drum track / no melody, not 4/4, too short,
    nothing in the window."""
    piece = rep.read_piece(path)
    windows, starts = rep.windows_with_starts(piece, hop_bars=1)
    if bar is not None:
        windows = windows[starts == bar - 1]
    if windows.shape[0] == 0:
        raise MidiError(str(path), no_window_reason(rep, piece, bar))
    return windows[0].astype(np.int64), piece.tempo_bpm


def _as_tensor(ids: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(ids, dtype=np.int64), device=device)


@torch.no_grad()
def sample(
    model: MusicVAE, num: int, temperature: float, seed: int, device: torch.device
) -> tuple[np.ndarray, torch.Tensor]:
    """num windows decoded from z ~ N(0, I), as one batch: (ids (num, T), z)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    z = torch.randn(num, model.config.z_dim, generator=gen, device=device)
    return model.decode(z, temperature, generator=gen).cpu().numpy(), z


@torch.no_grad()
def reconstruct(
    model: MusicVAE, windows: np.ndarray, temperature: float, seed: int, device: torch.device
) -> np.ndarray:
    """Encode windows (n, T) to mu and decode them again (argmax at temperature 0)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return model.reconstruct(_as_tensor(windows, device), temperature, generator=gen).cpu().numpy()


@torch.no_grad()
def interpolate_windows(
    model: MusicVAE, a: np.ndarray, b: np.ndarray, steps: int, temperature: float, seed: int, device: torch.device
) -> np.ndarray:
    """`steps` windows decoded along the slerp from mu(a) to mu(b), both ends included: (steps, T)."""
    mu, _ = model.encode(_as_tensor(np.stack([a, b]), device))
    zs = interpolate(mu[0], mu[1], steps)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return model.decode(zs, temperature, generator=gen).cpu().numpy()


INTERPOLATION_STEPS = 5


def endpoint_windows(data, count: int = 2) -> np.ndarray:
    """The first window of each of the first `count` held-out pieces (test, else val, else train),
    as interpolation end points: (<= count, T). With one piece only, its first and last windows."""
    pieces = data.pieces("test", fallbacks=("val", "train")).head(count)
    width = data.store.representation.seq_len
    tokens = data.store.tokens
    starts = list(pieces["offset"])
    if len(starts) == 1:
        starts.append(int(pieces["offset"].iloc[0] + pieces["length"].iloc[0] - width))
    windows = [np.asarray(tokens[o : o + width], dtype=np.int64) for o in dict.fromkeys(starts)]
    return np.stack(windows) if windows else np.zeros((0, width), dtype=np.int64)
