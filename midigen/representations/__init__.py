"""Representations: how notes become token ids and back. Pick one with params."""

from __future__ import annotations

from typing import Any

from midigen.representations.base import BOS, EOS, PAD, Representation
from midigen.representations.events import EventRepresentation

__all__ = ["BOS", "EOS", "PAD", "Representation", "EventRepresentation", "from_config", "from_params"]

_KINDS = {"events": EventRepresentation}


def from_config(config: dict[str, Any]) -> Representation:
    """Rebuild a representation from its config() (as stored in vocab.json and checkpoints)."""
    config = dict(config)
    kind = config.pop("name")
    return _KINDS[kind](**config)


def from_params(preprocess: dict[str, Any]) -> Representation:
    """Build the representation selected by the preprocess params section."""
    kind = preprocess["representation"]
    return _KINDS[kind].from_params(preprocess)
