"""MusicVAE at use time: load a checkpoint, find a file's window, sample, reconstruct and
interpolate in latent space, and write grids as MIDI (drums on channel 10).

Used by the generate and evaluate stages and by `python -m midigen interpolate|reconstruct`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from midigen import representations
from midigen.data.midi_io import write_midi
from midigen.errors import DataError, MidiError, MidigenError
from midigen.models import load_checkpoint, model_from_checkpoint
from midigen.models.musicvae import MusicVAE, interpolate
from midigen.representations.grid import DrumGrid, GridRepresentation, no_window_reason, read_grid_notes
from midigen.training.loop import pick_device


def load_vae(checkpoint: str | Path, device: str = "auto") -> tuple[MusicVAE, GridRepresentation, torch.device]:
    """The model, its grid representation and the device it was moved to (eval mode)."""
    ckpt = load_checkpoint(checkpoint)
    if ckpt["model"]["kind"] != "musicvae":
        raise DataError(
            f"{checkpoint}: a {ckpt['model']['kind']!r} checkpoint; this needs a MusicVAE one "
            "(train with model.kind=musicvae)"
        )
    rep = representations.from_config(ckpt["representation"])
    dev = pick_device(device)
    model = model_from_checkpoint(ckpt).to(dev).eval()
    return model, rep, dev


def file_window(path: str | Path, rep: GridRepresentation, bar: int | None = None) -> tuple[np.ndarray, float]:
    """The first usable window of a MIDI file, or the one starting at `bar` (counted from 1), and
    the file's tempo (quarter notes per minute).

    Raises MidiError saying why there is none: no drum track / no melody, not 4/4, too short,
    nothing in the window."""
    piece = read_grid_notes(path, rep.steps_per_quarter)
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


def write_windows(
    windows: np.ndarray,
    rep: GridRepresentation,
    out_dir: str | Path,
    prefix: str,
    tempo_bpm: float,
    clear: bool = False,
    program: int = 0,
) -> list[Path]:
    """<prefix>_NN.mid (4/4, the full window length, drums on channel 10) and <prefix>_NN.txt
    (one token per step) per window. Melodies play on General MIDI `program`."""
    out_dir = Path(out_dir)
    try:
        if clear and out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for old in [*out_dir.glob(f"{prefix}_[0-9][0-9].mid"), *out_dir.glob(f"{prefix}_[0-9][0-9].txt")]:
            old.unlink()  # a shorter run must not leave a longer run's files behind
    except OSError as exc:
        raise MidigenError(f"{out_dir}: cannot write there ({exc.strerror or exc})") from None
    drums = isinstance(rep, DrumGrid)
    paths = []
    for i, ids in enumerate(np.asarray(windows)):
        stem = out_dir / f"{prefix}_{i:02d}"
        write_midi(
            rep.decode(ids, tempo_bpm) if drums else rep.decode(ids, tempo_bpm, program=program),
            stem.with_suffix(".mid"),
            tempo_bpm,
            empty_track=(0, drums),
            time_signature=(4, 4),
            length_s=ids.shape[0] * rep.step_s(tempo_bpm),
        )
        stem.with_suffix(".txt").write_text("\n".join(rep.ids_to_tokens(ids)) + "\n", encoding="utf-8")
        paths.append(stem.with_suffix(".mid"))
    return paths


def read_windows(paths: list[Path], rep: GridRepresentation) -> np.ndarray:
    """Windows back from the .txt token files write_windows wrote: (n, T)."""
    rows = [rep.tokens_to_ids(p.read_text(encoding="utf-8").split()).astype(np.int64) for p in paths]
    return np.stack(rows) if rows else np.zeros((0, rep.seq_len), dtype=np.int64)


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


def generate_vae(checkpoint: str | Path, params: dict, out_dir: str | Path) -> dict[str, int]:
    """The generate stage for MusicVAE: generate.num_files samples from z ~ N(0, I) as one batch
    (sample_NN, at generate.temperature), and an interpolation between the first windows of two
    held-out pieces (interp_NN, both ends included, decoded by argmax). Returns counts."""
    from midigen.data.dataset import load_split_data

    g = params["generate"]
    model, rep, dev = load_vae(checkpoint, params["train"]["device"])
    samples, _ = sample(model, g["num_files"], g["temperature"], g["seed"], dev)
    write_windows(samples, rep, out_dir, "sample", g["tempo"], clear=True, program=g["program"])
    ends = endpoint_windows(load_split_data())
    n_interp = 0
    if ends.shape[0] == 2:
        # argmax decoding, as evaluate scores it: sampling would add noise at every point
        seq = interpolate_windows(model, ends[0], ends[1], INTERPOLATION_STEPS, 0.0, g["seed"], dev)
        n_interp = len(write_windows(seq, rep, out_dir, "interp", g["tempo"], program=g["program"]))
    return {"samples": int(samples.shape[0]), "interpolation_steps": n_interp}
