"""CSV tables as dicts, for the hot start-up path of preprocessing (pandas alone takes
~0.6 s to import, as long as tokenizing the whole Bach corpus). Big tables are streamed row by
row (iter_rows, RowWriter), so memory does not grow with the corpus."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from pathlib import Path


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


class RowWriter:
    """Write a CSV file row by row, atomically: it appears complete when the block ends
    without an exception, and not at all otherwise."""

    def __init__(self, path: str | Path, columns: list[str], extrasaction: str = "ignore"):
        self.path = Path(path)
        self.columns = columns
        self.extrasaction = extrasaction
        self._tmp = self.path.with_name(self.path.name + ".tmp")

    def __enter__(self) -> RowWriter:
        self._file = open(self._tmp, "w", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(
            self._file, fieldnames=self.columns, extrasaction=self.extrasaction, lineterminator="\n"
        )
        self._writer.writeheader()
        return self

    def write(self, row: dict) -> None:
        self._writer.writerow(row)

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
