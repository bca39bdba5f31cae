"""Representations: how notes become token ids and back. Pick one with params."""

from __future__ import annotations

from typing import Any

from midigen.representations.base import BOS, EOS, PAD, Representation
from midigen.representations.events import EventRepresentation
from midigen.representations.grid import DrumGrid, GridRepresentation, MelodyGrid
from midigen.representations.notes_chords import NotesChordsRepresentation
from midigen.representations.pitch_duration import PitchDurationRepresentation

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "Representation",
    "EventRepresentation",
    "GridRepresentation",
    "DrumGrid",
    "MelodyGrid",
    "NotesChordsRepresentation",
    "PitchDurationRepresentation",
    "from_config",
    "from_params",
]

_KINDS: dict[str, type[Representation]] = {
    "events": EventRepresentation,
    "drums": DrumGrid,
    "melody": MelodyGrid,
    "notes_chords": NotesChordsRepresentation,
    "pitch_duration": PitchDurationRepresentation,
}


def from_config(config: dict[str, Any]) -> Representation:
    """Rebuild a representation from its config() (as stored in vocab.json and checkpoints)."""
    config = dict(config)
    kind = config.pop("name")
    return _KINDS[kind](**config)


def from_params(preprocess: dict[str, Any], chord_counts: dict[str, int] | None = None) -> Representation:
    """Build the representation selected by the preprocess params section. A representation
    whose vocabulary comes from the data (vocab_from_data: notes_chords) also takes the corpus
    counts preprocess gathered (chord_counts)."""
    kind = preprocess["representation"]
    if getattr(_KINDS[kind], "vocab_from_data", False):
        return _KINDS[kind].from_params(preprocess, chord_counts)
    return _KINDS[kind].from_params(preprocess)
