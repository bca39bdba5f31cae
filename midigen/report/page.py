"""The report: one self-contained HTML page of what a run did, to look at and listen to.

`build_report` reads the pipeline's files (metrics/, outputs/generated/, data/tokens, data/split.csv)
and writes `<out>/index.html` plus the files it links with relative paths (img/*.png,
audio/*.ogg, midi/*.mid, player/*.js), so the folder opens straight from disk or from anywhere
it is copied.

What it shows: the data and the params that differ from their defaults (midigen.params.DEFAULTS,
what params.yaml ships with: a stage must not ask git for them), training time and device, the train/val
curves, the evaluation tables, and per generated piece, per interpolation and per held-out
reference piece a piano roll (a drum grid for drum tracks), an in-page MIDI player with its own
piano roll (midigen.report.player: any browser, no system packages) and, where FluidSynth is
installed, an audio player of its rendering.
"""

from __future__ import annotations

import html
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from midigen.data.midi_io import read_notes
from midigen.errors import DataError, MidiError
from midigen.evaluation.hearing import listen
from midigen.evaluation.hearing import read_piece as read_heard
from midigen.jsonio import read_json
from midigen.parallel import imap_progress
from midigen.params import DEFAULTS
from midigen.report import player as in_page
from midigen.report.audio import Synth, find_synth, render_ogg
from midigen.report.pianoroll import draw_piece, draw_strip, grid_step_s, is_drum_piece
from midigen.representations import OutputContext
from midigen.table import read_rows

#: the folders build_report owns inside its output folder (and empties before writing)
SUBDIRS = ("img", "audio", "midi")


@dataclass(frozen=True)
class Inputs:
    """Where the pipeline's files are (the defaults are the paths the stages write)."""

    metrics: Path = Path("metrics")
    generated: Path = Path("outputs/generated")
    store: Path = Path("data/tokens")
    split: Path = Path("data/split.csv")


@dataclass(frozen=True)
class PieceJob:
    """One MIDI file to draw (unless drawn in a strip) and to render to audio (when synth)."""

    key: str
    midi: Path
    image: Path | None
    audio: Path | None
    synth: Synth | None
    max_audio_seconds: float
    #: seconds the piano roll's time axis spans (the same for pieces shown side by side)
    axis_s: float | None = None


@dataclass
class PieceResult:
    key: str
    n_notes: int = 0
    duration_s: float = 0.0
    drums: bool = False
    audio_error: str = ""
    error: str = ""
    #: what midigen.evaluation.hearing hears in a pitched piece: its longest note and the share
    #: of its onsets on the sixteenth grid of its own beats (None: no pitched notes)
    longest_beats: float = 0.0
    on_grid: float | None = None
    #: beats from its first onset to its last note's end
    span_beats: float = 0.0


@dataclass
class Piece:
    """A piece as the page shows it."""

    key: str
    title: str
    midi: Path
    image: Path | None = None
    audio: Path | None = None
    result: PieceResult = field(default_factory=lambda: PieceResult(""))


@dataclass
class ReportResult:
    index: Path
    pieces: int
    audio_files: int
    audio_note: str
    bytes: int
    seconds: float


def _render_piece(job: PieceJob) -> PieceResult:
    """Worker: read the MIDI file, draw it, render its audio."""
    out = PieceResult(job.key)
    try:
        notes = read_notes(job.midi)
    except MidiError as exc:
        out.error = exc.reason
        return out
    out.n_notes = int(notes.shape[0])
    out.duration_s = float(notes["end_s"].max()) if notes.shape[0] else 0.0
    out.drums = is_drum_piece(notes)
    if not out.drums and out.n_notes:
        heard = listen(read_heard(job.midi))
        out.longest_beats = heard.longest_beats
        out.on_grid = heard.on_grid / heard.onsets if heard.onsets else None
        out.span_beats = heard.span_beats
    if job.image is not None:
        step_s = grid_step_s(job.midi) if out.drums else None
        draw_piece(notes, job.image, seconds=job.axis_s, step_s=step_s)
    if job.audio is not None and job.synth is not None:
        out.audio_error = render_ogg(job.synth, notes, job.audio, job.max_audio_seconds)
    return out


# -- reading the pipeline's files ----------------------------------------------------------------


def _need(path: Path) -> Path:
    if not path.exists():
        raise DataError(f"{path}: missing (the report reads what the pipeline wrote: run dvc repro first)")
    return path


def changed_params(params: dict, defaults: dict) -> list[tuple[str, Any, Any]]:
    """(section.key, value, default) for every value that differs from its default; a key
    without a default counts as changed with default None."""
    out = []
    for section, values in params.items():
        for key, value in values.items():
            default = (defaults.get(section) or {}).get(key)
            same = default is not None and (
                value == default
                or (isinstance(value, (int, float)) and isinstance(default, (int, float)) and float(value) == default)
            )
            if not same:
                out.append((f"{section}.{key}", value, default))
    return out


def rejected_reasons(path: Path, top: int = 5) -> list[tuple[str, int]]:
    """The most common rejection reasons of rejected.csv (details in parentheses dropped)."""
    if not path.exists():
        return []
    reasons = Counter(re.sub(r"\s*\(.*$", "", r.get("reason") or "") for r in read_rows(path))
    return reasons.most_common(top)


def interpolation_groups(paths: list[Path]) -> dict[str, list[Path]]:
    """interp_*.mid files grouped by name without the last _NN (interp_a_00, interp_a_01 -> interp_a)."""
    groups: dict[str, list[Path]] = {}
    for p in sorted(paths):
        groups.setdefault(re.sub(r"_\d+$", "", p.stem), []).append(p)
    return groups


def reference_pieces(inputs: Inputs, n: int, out_dir: Path, tempo_bpm: float) -> tuple[list[Piece], str]:
    """The first n held-out test pieces (val/train on a tiny corpus), decoded from the token
    store with its own representation and written to out_dir/midi; also the split's name."""
    if n == 0:
        return [], "test"
    import pandas as pd

    from midigen.data.store import TokenStore

    # what midigen.data.dataset.SplitData.pieces does, without importing torch (1.4 s of the stage)
    store = TokenStore(inputs.store)
    split = pd.read_csv(_need(inputs.split)).set_index("rel_path")["split"]
    of_piece = store.index["rel_path"].map(split)
    counts = of_piece.value_counts()
    used = next((s for s in ("test", "val", "train") if counts.get(s, 0) > 0), "")
    if not used:
        return [], "test"
    rows = store.index[of_piece.eq(used)].head(n)
    rep = store.representation
    pieces = []
    for i, row in enumerate(rows.itertuples()):
        ids = np.asarray(store.tokens[row.offset : row.offset + row.length], dtype=np.int64)
        title = str(row.rel_path)
        n_windows = int(getattr(row, "windows", 0) or 0)
        if n_windows > 0:  # a store of windows keeps a piece as its overlapping windows: play the first
            ids = ids[: ids.shape[0] // n_windows]
            title += " (its first window)"
        tempo = float(getattr(row, "tempo_bpm", 0) or 0) or tempo_bpm
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(row.rel_path)).stem)[:60]
        key = f"ref_{i:02d}_{stem}"
        midi = out_dir / "midi" / f"{key}.mid"
        midi.parent.mkdir(parents=True, exist_ok=True)
        rep.write_midi(ids, midi, OutputContext(tempo_bpm=tempo))
        pieces.append(Piece(key, title, midi))
    return pieces, used


# -- pictures of the curves ----------------------------------------------------------------------


def curve_metrics(columns: list[str]) -> list[str]:
    """Metrics logged for both splits (train_loss + val_loss -> loss), in column order."""
    return [c[len("train_") :] for c in columns if c.startswith("train_") and "val_" + c[len("train_") :] in columns]


def draw_curves(rows: list[dict[str, str]], out_dir: Path) -> list[tuple[str, Path]]:
    """One PNG per metric of train_curve.csv with train and val over epochs."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, ScalarFormatter

    if not rows:
        return []
    epochs = [int(float(r["epoch"])) for r in rows]
    out = []
    for name in curve_metrics(list(rows[0])):
        fig = Figure(figsize=(4.6, 2.8))
        ax = fig.add_subplot()
        values = []
        for split, style in (("train", "-"), ("val", "--")):
            ys = [float(r[f"{split}_{name}"]) for r in rows]
            values += ys
            ax.plot(epochs, ys, style, marker="o", markersize=2.5, linewidth=1.4, label=split)
        positive = [v for v in values if v > 0]
        # perplexity falls from ~vocab size to ~3: a log axis shows the end of training
        if name == "perplexity" and positive and max(positive) / min(positive) > 20:
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_title(name.replace("_", " "), fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
        fig.tight_layout(pad=0.4)
        path = out_dir / "img" / f"curve_{name}.png"
        fig.savefig(path, dpi=100)
        out.append((name, path))
    return out


# -- HTML ----------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0 auto;max-width:980px;padding:16px 20px;
color:#222}
h1{font-size:22px;margin:8px 0}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:3px}
h3{font-size:14px;margin:16px 0 4px}table{border-collapse:collapse;margin:6px 0}
td,th{padding:2px 10px 2px 0;text-align:left;vertical-align:top}th{font-weight:600;color:#555}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:12px}.piece{border:1px solid #e3e3e3;border-radius:6px;padding:8px;
margin:10px 0}.piece img,.strip img{max-width:100%;display:block}.meta{color:#666;font-size:12px}
audio{height:32px;margin-top:4px;width:100%;max-width:520px}.note{background:#fff6dd;border:1px solid #eed9a0;
padding:6px 10px;border-radius:4px}.bar{display:inline-block;height:9px;background:#3b6fb6;vertical-align:middle}
code{font-size:12px}.strip audio{width:220px}.pair{display:grid;grid-template-columns:1fr 1fr;gap:10px}
.pair .piece{margin:4px 0}.flag{background:#fde8e8;border:1px solid #f0b4b4;color:#8a1c1c;font-size:12px;
padding:2px 6px;border-radius:4px;margin:2px 0}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "—"}[value]
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    return str(value)


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m else f"{seconds:.1f} s"


def _kv_table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{_e(k.replace('_', ' '))}</th><td>{_e(_fmt(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _rel(path: Path, root: Path) -> str:
    return html.escape(path.relative_to(root).as_posix(), quote=True)


@dataclass(frozen=True)
class Flags:
    """When a generated piece is flagged: a note longer than `longest_beats` (the test set's
    longest note; None = no test set), fewer than `grid_share` of its onsets on the grid,
    shorter than `shortest_beats` (the test set's shortest piece; None = no test set)."""

    longest_beats: float | None
    grid_share: float
    shortest_beats: float | None = None


#: a generated piece with fewer of its onsets on the sixteenth grid is flagged (the chorales: 100%)
GRID_FLAG = 0.98


def _flag_lines(r: PieceResult, flags: Flags) -> list[str]:
    out = []
    if flags.longest_beats is not None and r.longest_beats > flags.longest_beats + 1e-9:
        out.append(
            f"hanging notes: one lasts {r.longest_beats:.1f} beats, longer than any note of the test set "
            f"({flags.longest_beats:.1f})"
        )
    if r.on_grid is not None and r.on_grid < flags.grid_share:
        out.append(f"off the grid: {r.on_grid:.0%} of its onsets on sixteenths of its beats")
    if flags.shortest_beats and r.n_notes and not r.drums and r.span_beats < flags.shortest_beats - 1e-9:
        out.append(
            f"too short: {r.span_beats:.1f} beats, shorter than any piece of the test set ({flags.shortest_beats:.1f})"
        )
    return out


def _longest_s(paths: list[Path]) -> float | None:
    """The longest of these MIDI files, in seconds (None when none can be read)."""
    ends = []
    for path in paths:
        try:
            notes = read_notes(path)
        except MidiError:
            continue
        if notes.shape[0]:
            ends.append(float(notes["end_s"].max()))
    return max(ends, default=None)


def _piece_html(piece: Piece, root: Path, max_audio_seconds: float, flags: Flags | None = None) -> str:
    r = piece.result
    if r.error:
        return f'<div class="piece"><h3>{_e(piece.title)}</h3><p class="note">unreadable: {_e(r.error)}</p></div>'
    warn = "".join(f'<div class="flag">{_e(line)}</div>' for line in _flag_lines(r, flags)) if flags else ""
    meta = [f"{r.duration_s:.1f} s", f"{r.n_notes:,} {'hits' if r.drums else 'notes'}"]
    player = ""
    if piece.audio is not None and piece.audio.is_file() and not r.audio_error:
        if r.duration_s > max_audio_seconds:
            meta.append(f"audio: the first {max_audio_seconds:g} s")
        player = f'<audio controls preload="metadata" src="{_rel(piece.audio, root)}"></audio>'
    elif r.audio_error:
        meta.append(f"no audio: {r.audio_error}")
    player += _in_page_player(piece)
    meta.append(f'<a href="{_rel(piece.midi, root)}">MIDI</a>')
    img = f'<img src="{_rel(piece.image, root)}" alt="{_e(piece.title)}">' if piece.image else ""
    return (
        f'<div class="piece"><h3>{_e(piece.title)}</h3>{warn}{img}'
        f'<div class="meta">{" · ".join(m if m.startswith("<a") else _e(m) for m in meta)}</div>{player}</div>'
    )


def _in_page_player(piece: Piece, roll: bool = True) -> str:
    """The in-page player of a piece (midigen.report.player), under a label when FluidSynth's
    audio player is there too."""
    label = ""
    if piece.audio is not None and piece.audio.is_file() and not piece.result.audio_error:
        label = '<div class="meta">above: FluidSynth; below: the browser\'s built-in synthesizer</div>'
    return label + in_page.player_html(piece.midi, piece.key, roll=roll)


def _eval_html(ev: dict[str, Any]) -> str:
    parts = []
    scalars = [(k, v) for k, v in ev.items() if not isinstance(v, dict)]
    if scalars:
        parts.append(_kv_table(scalars))
    gen, test = ev.get("generated"), ev.get("test")
    if isinstance(gen, dict) and isinstance(test, dict):
        rows = []
        for key in [k for k in gen if k in test]:
            rows.append(
                f"<tr><th>{_e(key.replace('_', ' '))}</th><td class=n>{_e(_cell(gen[key]))}</td>"
                f"<td class=n>{_e(_cell(test[key]))}</td></tr>"
            )
        parts.append(
            "<h3>Generated vs held-out test pieces (mean ± std over pieces)</h3>"
            f"<table><tr><th></th><th>generated</th><th>test</th></tr>{''.join(rows)}</table>"
        )
    dist = ev.get("distance")
    if isinstance(dist, dict) and dist:
        rows = []
        for feature, d in dist.items():
            overlap = float(d.get("overlap", 0.0))
            bar = f'<span class="bar" style="width:{max(0.0, min(1.0, overlap)) * 120:.0f}px"></span>'
            rows.append(
                f"<tr><th>{_e(feature.replace('_', ' '))}</th><td class=n>{_e(_fmt(overlap))}</td><td>{bar}</td>"
                f"<td class=n>{_e(_fmt(d.get('kl')))}</td></tr>"
            )
        parts.append(
            "<h3>Set distance: each feature's distribution over the generated set vs the test set</h3>"
            "<p class=meta>overlap: 1 = the same distribution; KL divergence: 0 = the same</p>"
            f"<table><tr><th>feature</th><th>overlap</th><th></th><th>KL</th></tr>{''.join(rows)}</table>"
        )
    if isinstance(ev.get("c2st"), dict) and isinstance(ev.get("hearing"), dict):
        parts.append(_hearing_html(ev["c2st"], ev["hearing"]))
    shown = ("generated", "test", "distance", "c2st", "hearing")
    other = {k: v for k, v in ev.items() if isinstance(v, dict) and k not in shown}
    for key, value in other.items():
        parts.append(f"<h3>{_e(key.replace('_', ' '))}</h3>" + _nested_html(value))
    return "".join(parts)


def _hearing_html(c2st: dict[str, Any], heard: dict[str, Any]) -> str:
    """The classifier two-sample test's verdict, then what hearing found in the generated and
    the test pieces' MIDI files side by side."""
    acc = c2st.get("accuracy")
    if acc is None:
        verdict = f"not run: {_fmt(c2st.get('n_per_class'))} pieces per class (2 needed)"
    else:
        verdict = (
            f"accuracy {_fmt(acc)} (95% interval {_fmt(c2st.get('ci_low'))} to {_fmt(c2st.get('ci_high'))}) "
            f"over {_fmt(c2st.get('n_per_class'))} pieces of each set"
        )
    gen, test = heard.get("generated", {}), heard.get("test", {})
    rows = "".join(
        f"<tr><th>{_e(key.replace('_', ' '))}</th><td class=n>{_e(_cell(gen.get(key)))}</td>"
        f"<td class=n>{_e(_cell(test.get(key)))}</td></tr>"
        for key in dict.fromkeys([*gen, *test])
    )
    tv = heard.get("tv", {})
    return (
        "<h3>Can a classifier tell generated from held-out pieces?</h3>"
        "<p class=meta>a logistic regression on per-piece features heard in the MIDI files, cross-validated: "
        "0.5 = it cannot tell them apart, 1 = it tells every piece right</p>"
        f"<p>{_e(verdict)}</p>"
        "<h3>Heard in the MIDI files: generated vs held-out test pieces (pooled over pieces)</h3>"
        "<p class=meta>beats = quarter notes of each file; on-grid share: onsets within 10% of a sixteenth "
        "of the sixteenth grid; voice count: share of onsets with that many notes sounding</p>"
        f"<table><tr><th></th><th>generated</th><th>test</th></tr>{rows}</table>"
        + _kv_table(
            [("hanging note share (generated notes longer than any test note)", heard.get("hanging_note_share"))]
            + [(f"total variation distance, {k.replace('_', ' ')}", v) for k, v in tv.items()]
        )
    )


def _cell(value: Any) -> str:
    """A {mean, std} summary as 'mean ± std', a deeper dict as 'key value; ...', else the value."""
    if isinstance(value, dict) and "mean" in value:
        return f"{_fmt(value['mean'])} ± {_fmt(value.get('std', 0.0))}"
    if isinstance(value, dict):
        return "; ".join(f"{k} {_fmt(v)}" for k, v in _flatten(value).items())
    return _fmt(value)


def _nested_html(d: dict[str, Any]) -> str:
    """Scalars as key/value rows; sub-dicts side by side as columns (e.g. greedy vs sampled)."""
    scalars = [(k, v) for k, v in d.items() if not isinstance(v, dict)]
    columns = {k: v for k, v in d.items() if isinstance(v, dict)}
    out = _kv_table(scalars) if scalars else ""
    if columns:
        rows = list(dict.fromkeys(k for c in columns.values() for k in c))
        head = "".join(f"<th>{_e(n.replace('_', ' '))}</th>" for n in columns)
        body = "".join(
            f"<tr><th>{_e(r.replace('_', ' '))}</th>"
            + "".join(f"<td class=n>{_e(_cell(c.get(r)))}</td>" for c in columns.values())
            + "</tr>"
            for r in rows
        )
        out += f"<table><tr><th></th>{head}</tr>{body}</table>"
    return out


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# -- the report ----------------------------------------------------------------------------------


def build_report(
    out_dir: str | Path, params: dict[str, dict[str, Any]], inputs: Inputs = Inputs(), workers: int = 0
) -> ReportResult:
    """Write out_dir/index.html and its files from the pipeline's outputs (see the module doc)."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    rp = params["report"]
    max_s = rp["max_audio_seconds"]
    for sub in SUBDIRS:
        shutil.rmtree(out_dir / sub, ignore_errors=True)
        (out_dir / sub).mkdir(parents=True)

    data = read_json(_need(inputs.metrics / "data.json"))
    train = read_json(_need(inputs.metrics / "train.json"))
    ev = read_json(_need(inputs.metrics / "eval.json"))
    curve_rows = read_rows(_need(inputs.metrics / "train_curve.csv"))
    defaults = DEFAULTS

    synth, audio_note = (None, "audio is off (report.audio: false)")
    if rp["audio"]:
        synth, audio_note = find_synth(rp["soundfont"])

    # the pieces: generated, interpolations (drawn as strips), held-out references
    midi_files = sorted(_need(inputs.generated).glob("*.mid"))
    interp = [p for p in midi_files if p.name.startswith("interp_")]
    generated = [Piece(p.stem, p.name, out_dir / "midi" / p.name) for p in midi_files if p not in interp]
    groups = interpolation_groups(interp)
    steps = {name: [Piece(p.stem, p.stem, out_dir / "midi" / p.name) for p in files] for name, files in groups.items()}
    for p in midi_files:
        shutil.copyfile(p, out_dir / "midi" / p.name)
    references, ref_split = reference_pieces(inputs, rp["reference_pieces"], out_dir, params["generate"]["tempo"])

    strip_pieces = [p for group in steps.values() for p in group]
    for p in generated + references:
        p.image = out_dir / "img" / f"{p.key}.png"
    for p in generated + references + strip_pieces:
        p.audio = out_dir / "audio" / f"{p.key}.ogg" if synth is not None else None
    every = generated + strip_pieces + references
    axis_s = _longest_s([p.midi for p in generated + references])  # pairs share one time scale
    jobs = [PieceJob(p.key, p.midi, p.image, p.audio, synth, max_s, axis_s) for p in every]
    for piece, result in zip(every, imap_progress(_render_piece, jobs, workers, "report", "piece"), strict=True):
        piece.result = result

    strips = []
    for name, group in steps.items():
        readable = [p for p in group if not p.result.error]
        if not readable:
            continue
        image = out_dir / "img" / f"{name}_strip.png"
        draw_strip([read_notes(p.midi) for p in readable], [p.key.removeprefix(name + "_") for p in readable], image)
        strips.append((name, image, group))
    curves = draw_curves(curve_rows, out_dir)
    in_page.copy_assets(out_dir)

    note = ""
    if synth is None:
        note = (
            f'<p class="note">No audio: {_e(audio_note)}. Every piece still plays in the page, '
            "with the browser's built-in synthesizer.</p>"
        )
    heard_test = (ev.get("hearing") or {}).get("test", {})
    longest, shortest = heard_test.get("longest_note_beats"), heard_test.get("shortest_piece_beats")
    if not longest:  # no hearing numbers (MusicVAE): the references shown
        longest = max((p.result.longest_beats for p in references), default=0.0)
    flags = Flags(longest or None, GRID_FLAG, shortest or None)
    pieces = note + _pieces_html(generated, strips, references, ref_split, out_dir, max_s, flags)
    summary = _summary_html(params, defaults, data, train, inputs)
    interps = f", {len(strip_pieces)} interpolation steps" if strip_pieces else ""
    intro = (
        f"{len(generated)} generated pieces{interps} and {len(references)} held-out pieces for reference; "
        f"audio is cut after {max_s:g} s."
    )
    index = out_dir / "index.html"
    index.write_text(_page(params, intro, summary, curves, _eval_html(ev), pieces), encoding="utf-8")
    audio_files = sum(1 for p in every if p.audio is not None and p.audio.is_file())
    size = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file())
    return ReportResult(index, len(every), audio_files, audio_note, size, time.perf_counter() - t0)


def _pieces_html(
    generated: list[Piece],
    strips: list[tuple[str, Path, list[Piece]]],
    references: list[Piece],
    ref_split: str,
    root: Path,
    max_s: float,
    flags: Flags,
) -> str:
    if references and generated:
        parts = [
            f"<h2>Generated pieces ({len(generated)}), each beside a held-out piece ({ref_split} split)</h2>"
            '<p class="meta">Both piano rolls of a row share one time scale (every roll on the page does).</p>'
        ]
        for i, p in enumerate(generated):
            ref = references[i % len(references)]
            parts.append(f'<div class="pair">{_piece_html(p, root, max_s, flags)}{_piece_html(ref, root, max_s)}</div>')
    else:
        parts = [f"<h2>Generated pieces ({len(generated)})</h2>"]
        parts += [_piece_html(p, root, max_s, flags) for p in generated] or ["<p>none in outputs/generated</p>"]
    if strips:
        parts.append(f"<h2>Interpolations ({len(strips)})</h2>")
        for name, image, group in strips:
            players = "".join(
                f'<div><div class="meta">{_e(p.key)}</div>'
                + (
                    f'<audio controls preload="metadata" src="{_rel(p.audio, root)}"></audio>'
                    if p.audio is not None and p.audio.is_file() and not p.result.audio_error
                    else ""
                )
                + (in_page.player_html(p.midi, p.key, roll=False) if not p.result.error else "")
                + "</div>"
                for p in group
            )
            parts.append(
                f'<div class="piece strip"><h3>{_e(name)}: {len(group)} steps</h3>'
                f'<img src="{_rel(image, root)}" alt="{_e(name)}"><div class="grid">{players}</div></div>'
            )
    rest = references[len(generated) :]  # the ones no generated piece stands beside
    if rest:
        parts.append(f"<h2>{'More held-out' if generated else 'Held-out'} reference pieces ({ref_split} split)</h2>")
        parts += [_piece_html(p, root, max_s) for p in rest]
    return "".join(parts)


def _summary_html(params: dict, defaults: dict, data: dict, train: dict, inputs: Inputs) -> str:
    pp, mp = params["preprocess"], params["model"]
    counts = Counter(r["split"] for r in read_rows(inputs.split)) if inputs.split.exists() else Counter()
    data_rows = [("source", params["data"]["source"]), ("representation", pp["representation"])]
    data_rows += [(k, v) for k, v in data.items()]
    data_rows += [(f"{s} pieces", counts[s]) for s in ("train", "val", "test") if s in counts]
    reasons = rejected_reasons(inputs.store / "rejected.csv")
    rejected = "".join(f"<li>{n} × {_e(reason)}</li>" for reason, n in reasons)
    if rejected:
        rejected = f"<p class=meta>rejected, most common reasons:</p><ul class=meta>{rejected}</ul>"
    changed = changed_params(params, defaults)
    changed_rows = "".join(
        f"<tr><td><code>{_e(k)}</code></td><td>{_e(_fmt(v))}</td><td>{_e(_fmt(d))}</td></tr>" for k, v, d in changed
    )
    changed_html = (
        f"<table><tr><th>param</th><th>value</th><th>default</th></tr>{changed_rows}</table>"
        if changed
        else "<p>none: every param has its default value</p>"
    )
    train_rows = [("model", mp["kind"]), ("device", train.get("device", "not recorded"))]
    if "wall_s" in train:
        train_rows.append(("training time", _duration(float(train["wall_s"]))))
    train_rows += [(k, v) for k, v in train.items() if k not in ("device", "wall_s")]
    return (
        f'<div class="grid"><div><h3>Data</h3>{_kv_table(data_rows)}{rejected}</div>'
        f"<div><h3>Training</h3>{_kv_table(train_rows)}</div></div>"
        f"<h3>Params that differ from the defaults</h3>{changed_html}"
    )


def _page(params: dict, intro: str, summary: str, curves: list[tuple[str, Path]], evaluation: str, pieces: str) -> str:
    curve_imgs = "".join(f'<img src="img/{p.name}" alt="{_e(name)} curve">' for name, p in curves)
    title = f"midigen report: {params['model']['kind']} on {params['data']['source']}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{_e(title)}</title><style>{CSS}{in_page.CSS}</style>{in_page.head_html()}</head><body>
<h1>{_e(title)}</h1>
<p class="meta">{_e(intro)} Written by the <code>report</code> stage (<code>dvc repro report</code>).</p>
<h2>Summary</h2>{summary}
<h2>Training curves</h2><div class="grid">{curve_imgs or "<p>no curves</p>"}</div>
<h2>Evaluation</h2>{evaluation}
{pieces}
{in_page.SCRIPT}
</body></html>
"""
