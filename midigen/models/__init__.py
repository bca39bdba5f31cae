"""Models and their self-describing checkpoints."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from midigen.errors import DataError
from midigen.models.lstm import LSTMLM, LSTMConfig
from midigen.models.musicvae import MusicVAE, MusicVAEConfig

__all__ = [
    "LSTMLM",
    "LSTMConfig",
    "MusicVAE",
    "MusicVAEConfig",
    "build_model",
    "save_checkpoint",
    "load_checkpoint",
    "model_from_checkpoint",
]


def build_model(model_params: dict[str, Any], vocab_size: int, rep: Any = None) -> torch.nn.Module:
    """The model params select and size; vocab_size from the representation (and for MusicVAE
    the window shape of the grid representation `rep`)."""
    kind = model_params["kind"]
    if kind == "musicvae":
        if rep is None or not hasattr(rep, "steps_per_bar"):
            raise DataError(
                "model.kind = 'musicvae' needs a grid representation (preprocess.representation drums|melody)"
            )
        layers = model_params["num_layers"]
        return MusicVAE(
            MusicVAEConfig(
                num_classes=vocab_size,
                steps_per_bar=rep.steps_per_bar,
                bars=rep.bars,
                z_dim=model_params["z_dim"],
                enc_hidden=model_params["enc_hidden"],
                enc_layers=layers,
                conductor_hidden=model_params["conductor_hidden"],
                conductor_layers=layers,
                dec_hidden=model_params["dec_hidden"],
                dec_layers=layers,
                emb_dim=model_params["emb_dim"],
                decoder=model_params["decoder"],
                dropout=model_params["dropout"],
            )
        )
    if kind == "lstm":
        return LSTMLM(
            LSTMConfig(
                vocab_size=vocab_size,
                emb_dim=model_params["emb_dim"],
                hidden_dim=model_params["hidden_dim"],
                num_layers=model_params["num_layers"],
                dropout=model_params["dropout"],
            )
        )
    raise DataError(f"model.kind = {kind!r}: not available")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with weights_only=True: a checkpoint can hold tensors and plain data, never code."""
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
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> torch.nn.Module:
    kind = ckpt["model"]["kind"]
    if kind == "lstm":
        cfg = {k: v for k, v in ckpt["model"].items() if k != "kind"}
        model = LSTMLM(LSTMConfig(**cfg))
    elif kind == "musicvae":
        cfg = {k: v for k, v in ckpt["model"].items() if k != "kind"}
        model = MusicVAE(MusicVAEConfig(**cfg))
    else:
        raise DataError(f"checkpoint model kind {kind!r} is not supported by this version")
    model.load_state_dict(ckpt["model_state"])
    return model
