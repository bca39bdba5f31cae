"""Representations: how notes become token ids and back. Pick one with params."""

from __future__ import annotations

from typing import Any

from midigen.representations.base import BOS, EOS, LAYOUTS, PAD, OutputContext, Representation
from midigen.representations.events import EventRepresentation
from midigen.representations.grid import DrumGrid, GridRepresentation, MelodyGrid
from midigen.representations.groove import GrooveGrid
from midigen.representations.notes_chords import NotesChordsRepresentation
from midigen.representations.pitch_duration import PitchDurationRepresentation
from midigen.representations.voices import VoicesRepresentation

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "LAYOUTS",
    "OutputContext",
    "Representation",
    "EventRepresentation",
    "GridRepresentation",
    "DrumGrid",
    "GrooveGrid",
    "MelodyGrid",
    "NotesChordsRepresentation",
    "PitchDurationRepresentation",
    "VoicesRepresentation",
    "from_config",
    "from_params",
    "layout_of",
    "names",
    "vocab_from_data",
]

_KINDS: dict[str, type[Representation]] = {
    "events": EventRepresentation,
    "drums": DrumGrid,
    "groove": GrooveGrid,
    "melody": MelodyGrid,
    "notes_chords": NotesChordsRepresentation,
    "pitch_duration": PitchDurationRepresentation,
    "voices": VoicesRepresentation,
}


def names() -> tuple[str, ...]:
    """The representations preprocess.representation can name."""
    return tuple(_KINDS)


def layout_of(name: str) -> str:
    """How a store of representation `name` is cut for models: "sequence" or "windows"."""
    return _KINDS[name].layout


def vocab_from_data(name: str) -> bool:
    """Whether representation `name` builds its vocabulary from corpus counts (see from_params)."""
    return _KINDS[name].vocab_from_data


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
    if _KINDS[kind].vocab_from_data:
        return _KINDS[kind].from_params(preprocess, chord_counts)
    return _KINDS[kind].from_params(preprocess)
