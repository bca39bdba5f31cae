"""Sample new pieces from a checkpoint (all at once, as one batch) and write them as MIDI."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from midigen import representations
from midigen.data.midi_io import write_midi
from midigen.models import load_checkpoint, model_from_checkpoint
from midigen.representations import BOS, EOS
from midigen.training.loop import pick_device


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
        from midigen.data.preprocess import select_notes

        ids = rep.encode(select_notes(rep.read(primer), "drop"))
        prompt = ids[:-1].tolist()  # without <EOS>, so the model continues
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    out = model.generate([prompt] * num_files, max_steps, EOS, temperature, top_k, top_p, generator=gen, greedy=greedy)
    return [np.asarray(o, dtype=np.int64) for o in out], rep


def write_pieces(
    seqs: list[np.ndarray],
    rep,
    out_dir: str | Path,
    prefix: str = "sample",
    clear: bool = True,
    tempo_bpm: float | None = None,
    key: str | None = None,
    program: int | None = None,
) -> list[Path]:
    """Write <prefix>_NN.mid and <prefix>_NN.txt (tokens, one per line) per sequence.

    A representation in musical time (rep.score_tempo_bpm: notes_chords, pitch_duration) is
    played at tempo_bpm and gets the key signature `key` ("none" or None: no key signature);
    events keep their own seconds. program (when given) replaces the program of pitched notes.
    """
    out_dir = Path(out_dir)
    if clear and out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ids in enumerate(seqs):
        stem = out_dir / f"{prefix}_{i:02d}"
        notes = rep.decode(ids)
        if program is not None:
            notes["program"] = np.where(notes["is_drum"], notes["program"], program)
        score_bpm = getattr(rep, "score_tempo_bpm", None)
        if score_bpm and tempo_bpm:
            # decoded at score_bpm: stretch to tempo_bpm and mark that tempo in the file
            scale = score_bpm / tempo_bpm
            notes["start_s"] *= scale
            notes["end_s"] *= scale
            sig = None if key in (None, "none") else key
            write_midi(notes, stem.with_suffix(".mid"), tempo_bpm=tempo_bpm, key=sig)
        else:
            write_midi(notes, stem.with_suffix(".mid"))
        stem.with_suffix(".txt").write_text("\n".join(rep.ids_to_tokens(ids)) + "\n", encoding="utf-8")
        paths.append(stem.with_suffix(".mid"))
    return paths
