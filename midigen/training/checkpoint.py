"""Checkpoints: the one place that writes, reads and validates them.

A checkpoint is a dict of tensors and plain data (torch.save; read back with weights_only=True,
so it can never run code): the format version, the model family and its config, the weights,
the representation's config and vocabulary, the training history and fingerprints; last.pt adds
what resuming needs (optimizer, sampler and RNG states, the best weights so far). It is
self-describing: loading a model needs nothing else.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from midigen import models, representations
from midigen.data import keys
from midigen.errors import DataError
from midigen.models.base import Family
from midigen.representations import Representation

#: the layout of the dict below; a reader refuses any other
FORMAT = 1
REQUIRED = ("format", "model", "model_state", "representation", "vocab")


def build(
    model: nn.Module,
    family: Family,
    rep: Representation,
    epoch: int,
    history: list[dict[str, Any]],
    run_fp: str,
    data_fp: str,
    state: dict[str, torch.Tensor],
    extra: dict[str, Any] | None = None,
    resume: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A self-describing checkpoint: model config and weights, representation and vocabulary,
    history, fingerprints, then the family's `extra` and (for last.pt) the `resume` state."""
    ckpt = {
        "format": FORMAT,
        "model": {"kind": family.name, **family.config(model)},
        "model_state": state,
        "representation": rep.config(),
        "vocab": rep.vocab,
        "epoch": epoch,
        # timings stay out, so the same run writes byte-identical checkpoints on any machine
        "history": [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in history],
        "run_fingerprint": run_fp,
        "data_fingerprint": data_fp,
    }
    ckpt.update(extra or {})
    ckpt.update(resume or {})
    return ckpt


def save(path: str | Path, payload: dict[str, Any]) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint; DataError naming the file and what is wrong."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: checkpoint not found (run the train stage first: dvc repro train)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch's own message spans many lines (with terminal colours): keep its first real line
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in str(exc).splitlines()]
        first = next((ln for ln in lines if ln), type(exc).__name__)
        raise DataError(f"{path}: not a readable midigen checkpoint ({first})"[:300]) from None
    if not isinstance(ckpt, dict) or "model_state" not in ckpt or "model" not in ckpt:
        raise DataError(f"{path}: not a midigen checkpoint (missing model config or weights)")
    if ckpt.get("format") != FORMAT:
        raise DataError(
            f"{path}: checkpoint format {ckpt.get('format')!r}; this midigen reads format {FORMAT} "
            "(retrain: dvc repro train)"
        )
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise DataError(f"{path}: not a complete midigen checkpoint (missing {', '.join(missing)})")
    kind = ckpt["model"].get("kind") if isinstance(ckpt["model"], dict) else None
    if kind not in models.kinds():
        raise DataError(
            f"{path}: model kind {kind!r} is not supported by this version (known: {', '.join(models.kinds())})"
        )
    return ckpt


def check_store(ckpt: dict[str, Any], path: str | Path, store_rep: Representation) -> None:
    """DataError unless the checkpoint was trained on tokens of the store's representation."""
    if ckpt["representation"] != store_rep.config():
        raise DataError(
            f"{path}: trained on {ckpt['representation'].get('name')!r} tokens with other settings than the "
            f"token store's {store_rep.name!r} ones (retrain: dvc repro train)"
        )
    if list(ckpt["vocab"]) != list(store_rep.vocab):
        raise DataError(f"{path}: its vocabulary differs from the token store's (retrain: dvc repro train)")


def representation_of(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> Representation:
    """The representation a (validated) checkpoint was trained on; DataError when its config
    cannot be rebuilt or its vocabulary is not the stored one."""
    try:
        rep = representations.from_config(ckpt["representation"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{path}: its representation config cannot be rebuilt ({type(exc).__name__}: {exc})") from None
    if list(rep.vocab) != list(ckpt["vocab"]):
        raise DataError(
            f"{path}: its stored vocabulary ({len(ckpt['vocab'])} tokens) is not its representation's "
            f"({len(rep.vocab)} tokens): the file was edited or written by another version"
        )
    return rep


def model_from_checkpoint(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> nn.Module:
    """The model a (validated) checkpoint describes, with its weights, on the CPU; DataError
    naming the file when the config, the vocabulary size or the weights do not fit together."""
    kind = ckpt["model"]["kind"]
    family = models.family(kind)
    config = {k: v for k, v in ckpt["model"].items() if k != "kind"}
    try:
        model = family.from_config(config)
    except (TypeError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: its model config does not describe a {kind} model ({exc})") from None
    if family.vocab_size(config) != len(ckpt["vocab"]):
        raise DataError(
            f"{path}: the {kind} model has {family.vocab_size(config)} token classes but the stored vocabulary "
            f"{len(ckpt['vocab'])} tokens"
        )
    state = ckpt["model_state"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path}: its weights are not a dict of tensors")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(ln.strip() for ln in str(exc).splitlines()[1:3] if ln.strip()) or str(exc)
        raise DataError(f"{path}: its weights do not fit its model config ({detail})"[:300]) from None
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise DataError(f"{path}: weights {bad[0]} hold NaN or infinite values (did training diverge?)")
    return model


@dataclass
class Loaded:
    """A checkpoint ready to use: the model (eval mode, on `device`), its family and representation."""

    path: Path
    model: nn.Module
    family: Family
    rep: Representation
    device: torch.device
    ckpt: dict[str, Any]


def load_model(path: str | Path, device: str = "auto", store_rep: Representation | None = None) -> Loaded:
    """Load a checkpoint for sampling or evaluation; with store_rep, check it matches the store."""
    from midigen.training.devices import pick_device

    ckpt = load(path)
    if store_rep is not None:
        check_store(ckpt, path, store_rep)
    rep = representation_of(ckpt, path)
    dev = pick_device(device)
    model = model_from_checkpoint(ckpt, path).to(dev).eval()
    return Loaded(Path(path), model, models.family(ckpt["model"]["kind"]), rep, dev, ckpt)


# the names the rest of midigen used before this module owned checkpoints
load_checkpoint = load
save_checkpoint = save


def summary(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> dict[str, Any]:
    """What `midigen info` shows of a (validated) checkpoint, as plain data: its family and model
    config, parameter count, representation, vocabulary size, training history and the
    fingerprints of the data and run it was trained on."""
    model = model_from_checkpoint(ckpt, path)
    history = [r for r in ckpt.get("history", []) if isinstance(r, dict) and "val_loss" in r]
    best = min(history, key=lambda r: r["val_loss"]) if history else {}
    out: dict[str, Any] = {
        "path": str(path),
        "family": ckpt["model"]["kind"],
        "model": {k: v for k, v in ckpt["model"].items() if k not in ("kind", "attributes")},
        "parameters": sum(p.numel() for p in model.parameters()),
        "stored_values": sum(v.numel() for v in ckpt["model_state"].values()),
        "representation": dict(ckpt["representation"]),
        "vocab_size": len(ckpt["vocab"]),
        "epochs": len(history),
        "checkpoint_epoch": ckpt.get("epoch"),
        "best": {k: v for k, v in best.items() if k == "epoch" or k.startswith("val_")},
        "data_fingerprint": ckpt.get("data_fingerprint"),
        "run_fingerprint": ckpt.get("run_fingerprint"),
    }
    attributes = ckpt["model"].get("attributes")
    if isinstance(attributes, dict):
        out["attributes"] = sorted(attributes)
    shifts = keys.of_checkpoint(ckpt)
    if shifts:  # trained in C: the training pieces' shifts, [[semitones, pieces], ...]
        out["key_shifts"] = shifts
    return out
