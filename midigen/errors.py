"""User-facing errors: the stage and CLI entry points print them as one line, no traceback."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable


class MidigenError(Exception):
    """A mistake the user can fix (bad params, unreadable input, empty dataset)."""


class ParamsError(MidigenError):
    """A key in params.yaml (or a flag) has a wrong type, an unknown name or a bad value."""


class MidiError(MidigenError):
    """A MIDI file that cannot be read or holds nothing usable."""

    def __init__(self, path: object, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class DataError(MidigenError):
    """A dataset, store or split that is missing or unusable."""


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def run_main(main: Callable[[], int | None]) -> int:
    """Run an entry point, turning user errors and Ctrl-C into one line and an exit code.

    SIGTERM (what `kill` and job runners send) is treated like Ctrl-C, so cleanup code runs:
    an MLflow run ends as KILLED instead of staying "running" forever.
    """
    try:
        signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread
        pass
    try:
        return int(main() or 0)
    except MidigenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `python -m midigen tokenize x.mid | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
