"""Sample new pieces from a checkpoint (all at once, as one batch) and write them as MIDI."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from midigen import representations
from midigen.midi_io import read_notes, write_midi
from midigen.models import load_checkpoint, model_from_checkpoint
from midigen.representations import BOS, EOS
from midigen.train import pick_device


def load_for_sampling(checkpoint: str | Path, device: str = "auto"):
    ckpt = load_checkpoint(checkpoint)
    rep = representations.from_config(ckpt["representation"])
    dev = pick_device(device)
    model = model_from_checkpoint(ckpt).to(dev)
    return model, rep, dev


def sample_ids(
    checkpoint: str | Path,
    num_files: int,
    max_steps: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    device: str = "auto",
    primer: str | Path | None = None,
    greedy: bool = False,
) -> tuple[list[np.ndarray], representations.Representation]:
    """num_files id sequences, each from <BOS> (or the primer's tokens) to <EOS> or max_steps."""
    model, rep, dev = load_for_sampling(checkpoint, device)
    prompt = [BOS]
    if primer is not None:
        from midigen.preprocess import select_notes

        ids = rep.encode(select_notes(read_notes(primer), "drop"))
        prompt = ids[:-1].tolist()  # without <EOS>, so the model continues
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    out = model.generate([prompt] * num_files, max_steps, EOS, temperature, top_k, top_p, generator=gen, greedy=greedy)
    return [np.asarray(o, dtype=np.int64) for o in out], rep


def write_pieces(
    seqs: list[np.ndarray], rep, out_dir: str | Path, prefix: str = "sample", clear: bool = True
) -> list[Path]:
    """Write <prefix>_NN.mid and <prefix>_NN.txt (tokens, one per line) per sequence."""
    out_dir = Path(out_dir)
    if clear and out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ids in enumerate(seqs):
        stem = out_dir / f"{prefix}_{i:02d}"
        write_midi(rep.decode(ids), stem.with_suffix(".mid"))
        stem.with_suffix(".txt").write_text("\n".join(rep.ids_to_tokens(ids)) + "\n", encoding="utf-8")
        paths.append(stem.with_suffix(".mid"))
    return paths
