"""Sample new pieces from a checkpoint and write them: what the generate stage and
`midigen sample` do, for every model family and representation alike."""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from midigen.data.keys import back_shifts, of_checkpoint, transpose_key
from midigen.errors import MidigenError, ParamsError
from midigen.models.base import SampleRequest, context_from, request_from
from midigen.parallel import progress
from midigen.representations import OutputContext, Representation
from midigen.training import checkpoint


def keyed_contexts(context: OutputContext, keys: list[list[int]] | None, n: int, seed: int) -> list[OutputContext]:
    """The output context of each of n generated pieces: `context` moved (notes and key
    signature) by a key shift drawn from a checkpoint's `keys` (midigen.data.keys.back_shifts:
    a model trained in C writes in the corpus's keys), the same for the same seed; `context`
    itself for every piece without keys. What write_pieces and midigen.api write with."""
    return [
        dataclasses.replace(context, transpose=s, key=transpose_key(context.key, s)) if s else context
        for s in back_shifts(keys, n, seed)
    ]


def write_pieces(
    seqs: list[np.ndarray] | np.ndarray,
    rep: Representation,
    out_dir: str | Path,
    prefix: str = "sample",
    clear: bool = True,
    context: OutputContext | None = None,
    formats: tuple[str, ...] | list[str] = ("mid",),
    keys: list[list[int]] | None = None,
    seed: int = 0,
) -> list[Path]:
    """Write <prefix>_NN.mid (rep.write_midi with `context`) and <prefix>_NN.txt (tokens, one per
    line) per id sequence, and <prefix>_NN.musicxml (its score) when formats has "musicxml".
    keys: the training pieces' key shifts of a model trained in C (midigen.data.keys.of_checkpoint):
    each piece is moved (notes and key signature) by one drawn from them with `seed`
    (generate.seed); the .txt keeps the model's own tokens, in C.
    clear empties out_dir first; either way no <prefix>_NN file of a longer earlier run is left
    behind. Whether other files may stay beside them is the caller's policy (the generate stage
    clears its folder; the CLI wants a new or empty one unless --force).
    A folder that cannot be written is a MidigenError naming it."""
    out_dir = Path(out_dir)
    paths = []
    contexts = keyed_contexts(context or OutputContext(), keys, len(seqs), seed)
    score = "musicxml" in formats
    if score:
        from midigen.export.musicxml import require_beat_grid, write_musicxml

        grid = require_beat_grid(rep, "generate.formats has musicxml")
    try:
        if clear and out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        pattern = re.compile(re.escape(prefix) + r"_\d\d\.(mid|txt|musicxml)")
        for old in out_dir.iterdir():
            if pattern.fullmatch(old.name):
                old.unlink()
        # scores take about half a second each: a progress bar then
        for i, ids in enumerate(progress(seqs, desc=f"write {prefix}", unit="piece", disable=not score)):
            stem = out_dir / f"{prefix}_{i:02d}"
            rep.write_midi(ids, stem.with_suffix(".mid"), contexts[i])
            stem.with_suffix(".txt").write_text("\n".join(rep.ids_to_tokens(ids)) + "\n", encoding="utf-8")
            if score:
                write_musicxml(stem.with_suffix(".mid"), stem.with_suffix(".musicxml"), quantize=grid)
            paths.append(stem.with_suffix(".mid"))
    except OSError as exc:
        raise MidigenError(f"{out_dir}: cannot write there ({exc.strerror or exc})") from None
    return paths


def read_pieces(paths: list[Path], rep: Representation) -> list[np.ndarray]:
    """Id sequences back from the .txt token files write_pieces wrote."""
    return [rep.tokens_to_ids(p.read_text(encoding="utf-8").split()).astype(np.int64) for p in paths]


def sample(loaded: checkpoint.Loaded, request: SampleRequest) -> list[np.ndarray]:
    """request.num id sequences from a loaded checkpoint, all in one batch."""
    return loaded.family.sample(loaded.model, loaded.rep, request, loaded.device)


def checked_request(
    loaded: checkpoint.Loaded,
    generate_params: dict[str, Any],
    given: list[str],
    name: Callable[[str], str] = str,
    greedy: bool = False,
    primer: str | Path | None = None,
    attributes: tuple[tuple[str, float], ...] = (),
) -> SampleRequest:
    """The sample request of generate params for a loaded checkpoint (what `midigen sample` and
    midigen.api sample). ParamsError when a control in `given` (SampleRequest field names) is
    one its family does not take, or an attribute is not one of its vectors; `name` spells a
    control as the caller's user wrote it (a flag, a keyword)."""
    family = loaded.family
    refused = [name(k) for k in given if k not in family.controls]
    if refused:
        raise ParamsError(
            f"{', '.join(refused)}: a {family.name} model does not use {'it' if len(refused) == 1 else 'them'}"
            f" (it takes: {', '.join(name(k) for k in sorted(family.controls))})"
        )
    if attributes:
        from midigen.generation.attributes import attribute_shift

        attribute_shift(loaded.model, attributes)  # unknown names fail here, before anything is sampled
    return request_from(generate_params, greedy=greedy, primer=primer, attributes=tuple(attributes))


def sample_ids(
    checkpoint_path: str | Path,
    num_files: int,
    max_steps: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    device: str = "auto",
    primer: str | Path | None = None,
    greedy: bool = False,
) -> tuple[list[np.ndarray], Representation]:
    """Load a checkpoint and sample num_files id sequences from it; (sequences, representation)."""
    loaded = checkpoint.load_model(checkpoint_path, device)
    request = SampleRequest(num_files, seed, temperature, max_steps, top_k, top_p, greedy, primer)
    return sample(loaded, request), loaded.rep


def generate(checkpoint_path: str | Path, params: dict[str, Any], out_dir: str | Path, split_data) -> dict[str, int]:
    """The generate stage: what the checkpoint's family writes (samples; MusicVAE also an
    interpolation), played as the generate params say. Returns the count per file prefix."""
    loaded = checkpoint.load_model(checkpoint_path, params["train"]["device"], split_data.store.representation)
    formats = params["generate"]["formats"]
    if "musicxml" in formats:  # before sampling, which is the slow part
        from midigen.export.musicxml import require_beat_grid

        require_beat_grid(loaded.rep, f"generate.formats = {formats}")
    outputs = loaded.family.stage_outputs(loaded.model, loaded.rep, params, split_data, loaded.device)
    context = context_from(params["generate"])
    counts = {}
    for i, (prefix, seqs) in enumerate(outputs):
        written = write_pieces(
            seqs,
            loaded.rep,
            out_dir,
            prefix,
            i == 0,
            context,
            formats,
            of_checkpoint(loaded.ckpt),
            params["generate"]["seed"],
        )
        counts[prefix] = len(written)
    return counts
