"""CSV tables as dicts, for the hot start-up path of preprocessing (pandas alone takes
~0.6 s to import, as long as tokenizing the whole Bach corpus). Big tables are streamed row by
row (iter_rows, RowWriter), so memory does not grow with the corpus.

File names may hold any bytes but a CSV file is UTF-8 text: a name is kept as text with
name_to_text (for reading and joins: bytes that are not UTF-8 shown as \\xNN) and as a path to
open with path_to_text / text_to_path (a file:// URI of its bytes when it is not UTF-8, exact
both ways). A field with a carriage return or a newline (legal in a file name) is quoted, so it
never splits its row.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote_to_bytes

if TYPE_CHECKING:
    import pandas as pd

#: the prefix of a path kept as a file:// URI (see path_to_text)
URI_PREFIX = "file://"


def name_to_text(name: str) -> str:
    """A file name (as os functions give it: bytes that are not UTF-8 as surrogates) as text
    that a UTF-8 table can hold: itself when it is UTF-8, else those bytes written \\xNN."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def path_to_text(path: str) -> str:
    """A path as a table holds it: itself when it is UTF-8 text (and does not look like a
    URI), else a file:// URI of its absolute path's bytes, which text_to_path undoes exactly."""
    try:
        path.encode("utf-8")
        if not path.startswith("file:"):
            return path
    except UnicodeEncodeError:
        pass
    return URI_PREFIX + quote(os.fsencode(os.path.abspath(path)))


def text_to_path(text: str) -> str:
    """The path that path_to_text turned into text, ready for open()."""
    if text.startswith(URI_PREFIX):
        return os.fsdecode(unquote_to_bytes(text[len(URI_PREFIX) :]))
    return text


def free_name(name: str, taken: Iterable[str], prefix: str = "meta_") -> str:
    """name, or name with prefix (repeated) where it is taken: how a metadata column named like
    one of midigen's own columns (size, n_notes, duration_s ...) is kept beside it."""
    taken = set(taken)
    while name in taken:
        name = prefix + name
    return name


def one_line(text: object) -> str:
    """Text for one log line: control characters (a newline in a file name) and undecodable
    bytes escaped, everything else as it is."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(text))


def read_rows(path: str | Path) -> list[dict[str, str]]:
    return list(iter_rows(path))


def iter_rows(path: str | Path) -> Iterator[dict[str, str]]:
    """The rows of a CSV file one at a time."""
    with open(path, newline="", encoding="utf-8") as f:
        yield from csv.DictReader(f)


def read_columns(path: str | Path) -> list[str]:
    """The header of a CSV file."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f).fieldnames or [])


def _needs_quotes(row: dict) -> bool:
    # the csv module quotes the line terminator's characters only ("\n"), yet every reader
    # (csv, pandas) ends a row at an unquoted "\r" as well
    return any(isinstance(v, str) and "\r" in v for v in row.values())


class RowWriter:
    """Write a CSV file row by row, atomically: it appears complete when the block ends
    without an exception, and not at all otherwise.

    A row with a carriage return in a field is written with every field quoted; text that is
    not valid UTF-8 (a surrogate from a file name) is written escaped rather than failing."""

    def __init__(self, path: str | Path, columns: list[str], extrasaction: str = "ignore"):
        self.path = Path(path)
        self.columns = columns
        self.extrasaction = extrasaction
        self._tmp = self.path.with_name(self.path.name + ".tmp")

    def __enter__(self) -> RowWriter:
        self._file = open(self._tmp, "w", newline="", encoding="utf-8", errors="backslashreplace")
        options = {"fieldnames": self.columns, "extrasaction": self.extrasaction, "lineterminator": "\n"}
        self._writer = csv.DictWriter(self._file, **options)
        self._quoted = csv.DictWriter(self._file, quoting=csv.QUOTE_ALL, **options)
        self._writer.writeheader()
        return self

    def write(self, row: dict) -> None:
        (self._quoted if _needs_quotes(row) else self._writer).writerow(row)

    def __exit__(self, exc_type, exc, tb) -> None:
        self._file.close()
        if exc_type is None:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


def write_rows(path: str | Path, rows: Iterable[dict], columns: list[str] | None = None) -> None:
    """Write rows atomically; columns default to the union of keys in first-seen order."""
    if columns is None:
        rows = list(rows)
        columns = list(dict.fromkeys(k for r in rows for k in r))
    with RowWriter(path, columns) as w:
        for row in rows:
            w.write(row)


def write_frame(path: str | Path, frame: pd.DataFrame) -> None:
    """A pandas table written like every other (RowWriter: atomic, names with any characters
    quoted so they keep their row); missing values as empty fields, as pandas writes them."""
    clean = frame.astype(object).where(frame.notna(), "")
    write_rows(path, clean.to_dict("records"), [str(c) for c in frame.columns])
