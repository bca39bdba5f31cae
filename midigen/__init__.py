"""midigen: a reproducible DVC pipeline that learns from MIDI files and writes new music."""

__version__ = "0.1.0"
