"""Ingest: turn `data.source` into a folder of MIDI files plus a manifest.

Sources:
- ``music21:bach`` | ``music21:essen`` | ``music21:ryans``: pieces of the corpus that ships inside
  the music21 package, exported to MIDI under ``data/raw/midi/``, with a "fermata" marker event
  where a note carries one (MIDI has no fermata; the voices representation reads them);
- ``builtin:nabiya``: a one-song dataset (midigen/data/builtin.py) written under ``data/raw/midi/``,
  assigned to the training split in the manifest (val and test fall back to it), for smoke runs;
- a path to a folder of .mid/.midi files (recursive, any case): listed in place, not copied,
  with a content hash per file so a changed file changes the manifest. A metadata CSV at the
  folder's root with a ``midi_filename`` column (the Groove MIDI Dataset's ``info.csv``) is
  joined onto the manifest; a metadata column named like a manifest column (rel_path, path,
  size, sha1) is kept as ``meta_<name>``.

File names may hold any bytes: rel_path is the name as text (bytes that are not UTF-8 written
\\xNN, see midigen.table.name_to_text) and path opens the file whatever its bytes (a file:// URI
when it is not UTF-8). A file whose text name is another file's name is listed as failed.

A worker process that dies while it works on a file (the out-of-memory killer) stops ingest
with an error naming the file; a music21 score that did so is remembered (CrashLog, in
data/.midigen-crashes/ingest.csv) and listed as failed on the next run.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from midigen.data.midi_io import FERMATA, add_markers, make_notes, write_midi
from midigen.errors import DataError
from midigen.parallel import CrashLog, WorkerCrash, crash_log_path, imap_progress
from midigen.table import free_name, name_to_text, one_line, path_to_text

MUSIC21_CORPORA = {
    # name -> (music21 composer/collection directory, file suffixes that hold music)
    "chorales": ("bach", (".mxl", ".xml", ".krn", ".mid")),
    "bach": ("bach", (".mxl", ".xml", ".krn", ".mid")),
    "essen": ("essenFolksong", (".abc",)),
    "ryans": ("ryansMammoth", (".abc",)),
}
#: corpora that keep only the scores with this many parts (music21:chorales: Bach's four-part
#: chorales, as BachBot and DeepBach train on; music21:bach also has 44 chorales with
#: instrumental parts and a keyboard prelude)
CORPUS_PARTS = {"chorales": 4}
#: the folder under data/raw/midi/ a corpus's pieces go to (chorales share bach's names, so a
#: chorale lands in the same split under either source)
CORPUS_FOLDER = {"chorales": "bach"}
MIDI_SUFFIXES = (".mid", ".midi")
MANIFEST_COLUMNS = ["rel_path", "path", "size", "sha1"]


@dataclass(frozen=True)
class Source:
    kind: str  # "music21", "builtin" or "folder"
    name: str  # corpus name or folder path

    def describe(self) -> str:
        if self.kind == "builtin":
            return f"built-in dataset '{self.name}'"
        return f"music21 corpus '{self.name}'" if self.kind == "music21" else f"folder {self.name}"


def parse_source(source: str) -> Source:
    """Interpret data.source; raise DataError naming what is allowed."""
    if source.startswith("music21:"):
        name = source.split(":", 1)[1]
        if name not in MUSIC21_CORPORA:
            raise DataError(
                f"data.source = {source!r}: unknown music21 corpus; choose one of "
                + ", ".join(f"music21:{n}" for n in MUSIC21_CORPORA)
                + ", or a path to a folder of MIDI files"
            )
        return Source("music21", name)
    if source.startswith("builtin:"):
        from midigen.data.builtin import BUILTIN

        name = source.split(":", 1)[1]
        if name not in BUILTIN:
            raise DataError(f"data.source = {source!r}: unknown; built-in datasets: " + ", ".join(BUILTIN))
        return Source("builtin", name)
    path = Path(source).expanduser()
    if not path.is_dir():
        raise DataError(
            f"data.source = {source!r}: not a folder (expected a folder of .mid/.midi files "
            f"or one of {', '.join('music21:' + n for n in MUSIC21_CORPORA)})"
        )
    return Source("folder", str(path.resolve()))


def portable_path(path: Path) -> str:
    """Relative to the working directory (the project root) when inside it, else absolute."""
    try:
        return Path(os.path.abspath(path)).relative_to(Path.cwd()).as_posix()
    except ValueError:
        return os.path.abspath(path)


def sha1_file(path: str | Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- music21 corpora --------------------------------------------------------------------------


def music21_files(name: str) -> list[Path]:
    from music21 import corpus

    directory, suffixes = MUSIC21_CORPORA[name]
    by_stem: dict[str, Path] = {}
    # some pieces ship in two formats (bwv281.krn and bwv281.mxl): keep the preferred one
    for p in sorted((Path(p) for p in corpus.getComposer(directory)), key=lambda p: p.name):
        suffix = p.suffix.lower()
        if suffix not in suffixes:
            continue
        stem = _safe_stem(p.stem)
        if stem not in by_stem or suffixes.index(suffix) < suffixes.index(by_stem[stem].suffix.lower()):
            by_stem[stem] = p
    return [by_stem[s] for s in sorted(by_stem)]


def _safe_stem(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "._-" else "_" for c in text)
    return keep.strip("._") or "piece"


def export_music21_file(job: tuple[str, str, str]) -> list[tuple[str, str | None]]:
    """Parse one corpus file (a score, or an opus of many) and write one MIDI per score.

    Returns (rel_path, None) per written piece, or (source name, reason) per failure.
    """
    src, out_dir, corpus_name = job
    from music21 import converter, stream
    from music21.midi import translate

    src_path = Path(src)
    stem = _safe_stem(src_path.stem)
    try:
        parsed = converter.parse(src_path)
    except Exception as exc:  # music21 raises many kinds; the reason is what matters
        return [(src_path.name, f"music21 could not parse it: {type(exc).__name__}: {exc}"[:300])]
    scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
    results: list[tuple[str, str | None]] = []
    folder, parts = CORPUS_FOLDER.get(corpus_name, corpus_name), CORPUS_PARTS.get(corpus_name)
    for i, score in enumerate(scores):
        rel = f"{folder}/{stem}.mid" if len(scores) == 1 else f"{folder}/{stem}_{i:04d}.mid"
        if parts and len(score.parts) != parts:
            results.append((rel, f"skipped: {len(score.parts)} parts, music21:{corpus_name} keeps {parts}-part scores"))
            continue
        target = Path(out_dir) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        pickup = pickup_quarters(score)
        try:
            data = translate.streamToMidiFile(score).writestr()
            if not data:
                raise ValueError("empty MIDI")
            data = delay_midi(data, pickup) if pickup else data
            fermatas = [(q + pickup, FERMATA) for q in fermata_quarters(score, expand_repeats=True)]
            target.write_bytes(add_markers(data, fermatas) if fermatas else data)
            results.append((rel, None))
            continue
        except Exception as exc:
            first_error = f"{type(exc).__name__}: {exc}"
        try:  # music21's exporter trips over some repeat structures; write the notes as notated
            notes = stream_notes(score, pickup)
            if not len(notes):
                raise ValueError("no notes")
            sec = seconds_per_quarter(score)
            fermatas = [((q + pickup) * sec, FERMATA) for q in fermata_quarters(score, expand_repeats=False)]
            write_midi(notes, target, markers=fermatas)
            results.append((rel, None))
        except Exception as exc:
            reason = f"MIDI export failed: {first_error}; fallback: {type(exc).__name__}: {exc}"
            results.append((f"{src_path.name}#{i}", reason[:300]))
    return results


def pickup_quarters(score) -> float:
    """Quarter notes missing from an incomplete first bar (an anacrusis: music21's paddingLeft
    of the first measure), 0 when the piece starts on a bar line.

    music21 writes a pickup at time 0, so every later bar line would sit that much early; the
    export delays the music by this much so bars fall where a bar grid expects them."""
    parts = list(getattr(score, "parts", [])) or [score]
    try:
        first = parts[0].getElementsByClass("Measure").first()
    except Exception:
        return 0.0
    pad = float(first.paddingLeft) if first is not None and first.paddingLeft else 0.0
    return pad if pad > 0 else 0.0


def delay_midi(data: bytes, quarters: float) -> bytes:
    """MIDI file bytes with every event moved `quarters` quarter notes later, except meta events
    at time 0 (tempo, meter, key, names), which stay at the start."""
    import io

    import mido

    mid = mido.MidiFile(file=io.BytesIO(data))
    shift = round(quarters * mid.ticks_per_beat)
    for track in mid.tracks:
        now, timed = 0, []
        for msg in track:
            now += msg.time
            timed.append((now if (msg.is_meta and now == 0) else now + shift, msg))
        timed.sort(key=lambda tm: tm[0])  # stable: the order of events at one time is kept
        prev = 0
        for i, (t, msg) in enumerate(timed):
            track[i] = msg.copy(time=t - prev)
            prev = t
    out = io.BytesIO()
    mid.save(file=out)
    return out.getvalue()


def fermata_quarters(score, expand_repeats: bool) -> list[float]:
    """The onsets (quarter notes from the start of the score) of the notes and chords that carry
    a fermata, in any part, with the repeats expanded as music21's MIDI export plays them or as
    notated: MIDI has no event for a fermata, so the export marks them (FERMATA markers) for the
    voices representation to read back. None in a score music21 cannot expand or flatten."""
    from music21 import bar, expressions, repeat

    try:
        if expand_repeats and any(score.recurse().getElementsByClass((bar.Repeat, repeat.RepeatExpression))):
            score = score.expandRepeats()
        notes = list(score.flatten().notes)
    except Exception:
        return []
    return sorted({float(el.offset) for el in notes if any(isinstance(e, expressions.Fermata) for e in el.expressions)})


def seconds_per_quarter(score) -> float:
    """A quarter note's length in seconds at the score's first metronome mark (120 bpm if none)."""
    from music21 import tempo

    marks = list(score.flatten().getElementsByClass(tempo.MetronomeMark))
    bpm = marks[0].getQuarterBPM() if marks and marks[0].getQuarterBPM() else 120.0
    return 60.0 / bpm


def stream_notes(score, pickup_quarters: float = 0.0) -> np.ndarray:
    """Notes of a music21 score as written (ties merged, repeats not expanded), in seconds at
    the score's first metronome mark (120 bpm if none), delayed by `pickup_quarters`."""
    flat = score.flatten().stripTies()
    sec_per_quarter = seconds_per_quarter(score)
    starts, ends, pitches = [], [], []
    for el in flat.notes:
        start = (float(el.offset) + pickup_quarters) * sec_per_quarter
        end = start + max(float(el.quarterLength), 1 / 16) * sec_per_quarter
        for p in el.pitches:
            starts.append(start)
            ends.append(end)
            pitches.append(int(p.midi))
    return make_notes(starts, ends, pitches, velocity=90)


def ingest_music21(
    name: str, out_dir: Path, max_pieces: int, workers: int, crashes: Path | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    files = music21_files(name)
    if max_pieces:
        files = files[:max_pieces]  # for opus collections this caps files, trimmed to pieces below
    midi_dir = out_dir / "midi"
    log = CrashLog(crashes or crash_log_path(out_dir, "ingest"), {"source": f"music21:{name}"})
    rows, failed, jobs = [], [], []
    for f in files:
        remembered = log.reason(sha1_file(f)) if log and f.stat().st_size in log.sizes else None
        if remembered:
            where = f"in an earlier run; remembered in {log.path}: delete its row to try it again"
            failed.append((f.name, f"{remembered} ({where})"))
        else:
            jobs.append((str(f), str(midi_dir), name))
    try:
        for results in imap_progress(export_music21_file, jobs, workers, desc=f"export music21:{name}", unit="file"):
            for rel, reason in results:
                if reason is None:
                    rows.append(rel)
                else:
                    failed.append((rel, reason))
    except WorkerCrash as crash:
        if crash.job is None:
            raise DataError(f"music21:{name}: {crash}") from None
        src = Path(crash.job[0])
        if crash.blames_job:
            log.add(sha1_file(src), src.stat().st_size, src.name, f"a worker exporting it was {crash.how}")
        raise DataError(
            f"music21:{name}: {src.name}: the worker exporting it was {crash.how}"
            + (" (remembered: the next run lists it in failed.csv)" if crash.blames_job else "")
        ) from None
    rows.sort()
    if max_pieces and len(rows) > max_pieces:
        for rel in rows[max_pieces:]:
            (midi_dir / rel).unlink()
        rows = rows[:max_pieces]
    manifest = pd.DataFrame({"rel_path": rows, "path": [portable_path(midi_dir / r) for r in rows]})
    manifest["size"] = [(midi_dir / r).stat().st_size for r in rows]
    manifest["sha1"] = [sha1_file(midi_dir / r) for r in rows]
    return manifest, pd.DataFrame(failed, columns=["source", "reason"])


# -- folders ----------------------------------------------------------------------------------


def walk_midi_files(root: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """All .mid/.midi files under root (following symlinks, never looping); plus skipped entries."""
    found: list[Path] = []
    skipped: list[tuple[str, str]] = []
    seen_dirs: set[str] = set()

    def onerror(err: OSError) -> None:
        skipped.append((str(err.filename), f"cannot read folder: {err.strerror}"))

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=onerror):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:
            skipped.append((os.path.relpath(dirpath, root), "symlink loop (folder already visited)"))
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames.sort()
        for fn in sorted(filenames):
            if fn.lower().endswith(MIDI_SUFFIXES):
                p = Path(dirpath) / fn
                if p.is_file():
                    found.append(p)
                else:
                    skipped.append((os.path.relpath(p, root), "not a regular file (broken link?)"))
    return found, skipped


def _hash_job(path: str) -> tuple[str, int, str] | tuple[str, None, str]:
    try:
        return path, os.path.getsize(path), sha1_file(path)
    except OSError as exc:
        return path, None, f"cannot read: {exc.strerror}"


def find_metadata(root: Path) -> pd.DataFrame | None:
    """A CSV at the folder's root with a midi_filename column (e.g. GMD's info.csv), that
    column as rel_path; its columns named like a manifest column get a meta_ prefix."""
    for csv in sorted(root.glob("*.csv")):
        try:
            df = pd.read_csv(csv)
        except Exception:
            continue
        if "midi_filename" in df.columns:
            names = [str(c) for c in df.columns]
            taken = set(MANIFEST_COLUMNS) | set(names)
            df.columns = [c if c not in MANIFEST_COLUMNS else free_name(c, taken) for c in names]
            df = df.rename(columns={"midi_filename": "rel_path"})
            df["rel_path"] = df["rel_path"].astype(str).str.replace("\\", "/", regex=False)
            return df.drop_duplicates("rel_path")
    return None


def _text_names(files: list[Path], root: Path) -> tuple[list[tuple[Path, str]], list[tuple[str, str]]]:
    """(file, rel_path as text) sorted by that text, and the files that text cannot name: a
    name that is not UTF-8 whose \\xNN form is another file's real name."""
    named = [(f, name_to_text(f.relative_to(root).as_posix())) for f in files]
    real = {text for f, text in named if text == f.relative_to(root).as_posix()}
    kept, failed = [], []
    for f, text in named:
        if text in real and text != f.relative_to(root).as_posix():
            failed.append((text, "its name is not UTF-8, and written as text it is another file's name"))
        else:
            kept.append((f, text))
    kept.sort(key=lambda ft: ft[1])
    return kept, failed


def ingest_folder(root: Path, max_pieces: int, workers: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    found, skipped = walk_midi_files(root)
    if not found:
        raise DataError(f"data.source = {str(root)!r}: no .mid or .midi files found in this folder")
    files, failed = _text_names(found, root)
    failed += [(name_to_text(name), reason) for name, reason in skipped]
    if max_pieces:
        files = files[:max_pieces]
    rows = []
    scan = imap_progress(_hash_job, [str(f) for f, _ in files], workers, desc="scan", unit="file")
    try:
        for (_, rel), (path, size, digest) in zip(files, scan, strict=True):
            if size is None:
                failed.append((rel, digest))
            else:
                rows.append((rel, path_to_text(path), size, digest))
    except WorkerCrash as crash:
        rel = name_to_text(Path(crash.job).relative_to(root).as_posix()) if crash.job else "(no file)"
        where = f"data.source = {str(root)!r}"
        raise DataError(f"{where}: {one_line(rel)}: the worker reading it was {crash.how}") from None
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    meta = find_metadata(root)
    if meta is not None:
        manifest = manifest.merge(meta, on="rel_path", how="left")
    return manifest, pd.DataFrame(failed, columns=["source", "reason"])


def ingest_builtin(name: str, out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write a built-in dataset's piece as MIDI; its manifest row puts it in the training split
    (a one-piece corpus whose piece hashed into val or test would leave nothing to train on)."""
    from midigen.data.builtin import BUILTIN

    make, tempo_bpm, key = BUILTIN[name]
    rel = f"builtin/{name}.mid"
    target = out_dir / "midi" / rel
    write_midi(make(), target, tempo_bpm=tempo_bpm, key=key)
    manifest = pd.DataFrame({"rel_path": [rel], "path": [portable_path(target)], "size": [target.stat().st_size]})
    manifest["sha1"] = [sha1_file(target)]
    manifest["split"] = ["train"]
    return manifest, pd.DataFrame([], columns=["source", "reason"])


def ingest(
    source: str, out_dir: Path, max_pieces: int = 0, workers: int = 0, crashes: Path | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Materialise the source; return (manifest, failed). Writes nothing outside out_dir but
    the crash log (crashes, by default out_dir/../.midigen-crashes/ingest.csv) when a worker dies."""
    src = parse_source(source)
    if src.kind == "builtin":
        manifest, failed = ingest_builtin(src.name, out_dir)
    elif src.kind == "music21":
        manifest, failed = ingest_music21(src.name, out_dir, max_pieces, workers, crashes)
    else:
        manifest, failed = ingest_folder(Path(src.name), max_pieces, workers)
    if manifest.empty:
        raise DataError(f"{src.describe()}: nothing could be ingested ({len(failed)} failures)")
    return manifest, failed
