"""The model-family registry: model.kind -> the module that implements the family.

Each family lives in one module of this package and exposes `FAMILY`, an instance of
midigen.models.base.Family. Adding a kind of model is that module plus one line here (and its
params in midigen/params.py); nothing else in midigen compares model.kind.

The table names modules instead of importing them, so reading params (which checks model.kind
and the layout a family reads) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from midigen.errors import ParamsError

if TYPE_CHECKING:
    from midigen.models.base import Family

#: model.kind -> (module, the token-store layout the family reads: "sequence" or "windows")
FAMILIES: dict[str, tuple[str, str]] = {
    "lstm": ("midigen.models.lstm", "sequence"),
    "musicvae": ("midigen.models.musicvae", "windows"),
    "ngram": ("midigen.models.ngram", "sequence"),
    "transformer": ("midigen.models.transformer", "sequence"),
}


def kinds() -> tuple[str, ...]:
    """Every model.kind there is."""
    return tuple(FAMILIES)


def layout(kind: str) -> str:
    """The token-store layout model.kind `kind` reads."""
    return FAMILIES[kind][1]


def family(kind: str) -> Family:
    """The family of model.kind `kind`."""
    if kind not in FAMILIES:
        raise ParamsError(f"model.kind = {kind!r}: not available; known: {', '.join(FAMILIES)}")
    return importlib.import_module(FAMILIES[kind][0]).FAMILY


def check_fits(kind: str, representation: str, layout_of_representation: str) -> None:
    """ParamsError unless model.kind `kind` reads stores of the representation's layout."""
    from midigen import representations

    wants = layout(kind)
    if wants != layout_of_representation:
        fits = ", ".join(n for n in representations.names() if representations.layout_of(n) == wants)
        raise ParamsError(
            f"model.kind = {kind!r} reads {wants} of tokens but preprocess.representation = {representation!r} "
            f"gives {layout_of_representation} (use one of: {fits}; or another model.kind)"
        )
