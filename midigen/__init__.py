"""midigen: a reproducible DVC pipeline that learns from MIDI files and writes new music."""

__version__ = "0.1.0"

#: the Python API (midigen.api), imported on first use: `python -m midigen` need not load torch
_API = ("load", "Model", "Piece")


def __getattr__(name: str):
    if name in _API:
        from midigen import api

        return getattr(api, name)
    raise AttributeError(f"module 'midigen' has no attribute {name!r}")
