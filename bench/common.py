"""Helpers shared by bench/train.py and bench/generate.py."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def enter_root() -> None:
    """midigen's data paths (data/tokens, data/split.csv, params.yaml) are relative to the project root."""
    os.chdir(ROOT)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine_line() -> str:
    """One line saying how busy the machine is: the numbers below are only comparable under equal load."""
    import torch

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return f"{cores()} core(s), torch {torch.__version__} with {torch.get_num_threads()} thread(s), load average {load}"
