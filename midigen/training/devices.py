"""Devices, precision, compilation and seeding: what every family's training and use share."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn

from midigen.errors import ParamsError


def pick_device(name: str) -> torch.device:
    """train.device: auto (CUDA when there is one) | cpu | cuda."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ParamsError("train.device = 'cuda' but no CUDA device is available (use auto or cpu)")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def autocast(device: torch.device):
    """bf16 autocast on CUDA; a no-op on CPU (where fp32 is both faster and exact)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def maybe_compile(net: nn.Module, mode: str, device: torch.device) -> nn.Module:
    """train.compile: 'auto' compiles on CUDA only (on CPU the LSTM kernels gain nothing and the
    compilation costs seconds), 'always' everywhere, 'never' nowhere."""
    if mode == "always" or (mode == "auto" and device.type == "cuda"):
        return torch.compile(net)
    return net
