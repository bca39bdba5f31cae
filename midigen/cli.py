"""Command line: midigen (or python -m midigen) info|render|export|tokenize|detokenize|sample|interpolate|studio|...

Representation params come from params.yaml (the `preprocess` section) when it exists, and
flags override them, so the CLI shows exactly what the pipeline would produce.

A user mistake (a bad flag, an unreadable input, an output that cannot be written or would mix
with older files) is one `error:` line and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from pathlib import Path

from midigen import representations
from midigen.data import add as add_data
from midigen.errors import MidigenError, ParamsError, run_main
from midigen.params import DEFAULTS, SCHEMA, load_params, resolve_time_unit

REP_FLAGS = (
    "representation",
    "time_unit",
    "time_step",
    "steps_per_quarter",
    "max_shift_steps",
    "velocity_bins",
    "pitch_min",
    "pitch_max",
)
#: sample flag -> its generate param (flags default to params.yaml's value, else the schema's)
SAMPLE_FLAGS = {
    "num_files": "num_files",
    "max_steps": "max_steps",
    "temperature": "temperature",
    "top_k": "top_k",
    "top_p": "top_p",
    "seed": "seed",
    "tempo": "tempo",
    "key": "key",
    "program": "program",
}


#: the largest integer a flag takes: seeds and step counts go to torch as 64-bit integers, where
#: a larger one fails deep inside with an overflow
INT_FLAG_MAX = 2**63 - 1


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one `error:` line like every other user error (argparse
    prints the whole usage first); --help still shows it."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help, with "(default: X)" added to every option whose help does not say its
    default already (a flag that is off unless given: "default: off")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.required or "default" in text or action.default is argparse.SUPPRESS:
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            shown = "on" if action.default else "off"
        elif action.default in (None, []):
            return text  # tests/test_cli_tools.py fails: such a help must say what happens without the flag
        else:
            shown = action.default
        return f"{text} (default: {shown})"


def version() -> str:
    """The installed package's version (its metadata), else midigen.__version__ (a source tree)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("midigen")
    except PackageNotFoundError:
        from midigen import __version__

        return __version__


def _integer(text: str) -> int:
    """argparse type of the integer flags: digits only, within INT_FLAG_MAX; 1e22 or 2.5 is an
    error saying so (int() would call it just 'invalid')."""
    digits = text.strip()
    if re.fullmatch(r"[+-]?[0-9]+", digits):
        if len(digits.lstrip("+-")) > 19 or abs(int(digits)) > INT_FLAG_MAX:
            raise argparse.ArgumentTypeError(f"{text!r} is too large (at most {INT_FLAG_MAX})")
        return int(digits)
    try:
        float(digits)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    raise argparse.ArgumentTypeError(f"{text!r} is not an integer (write it in digits, without a point or exponent)")


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def check_out_folder(out: str | Path, force: bool) -> Path:
    """The --out folder of sample/interpolate/reconstruct, checked before any file is written:
    not a file, writable, and empty or new unless --force (then files of the same names are
    replaced and the others stay). Nothing is created here."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise ParamsError(f"--out {out}: is a file, not a folder")
        if not os.access(out, os.W_OK | os.X_OK):
            raise ParamsError(f"--out {out}: cannot write in this folder (permission denied)")
        entries = sum(1 for _ in out.iterdir())
        if entries and not force:
            raise ParamsError(
                f"--out {out}: folder is not empty ({entries} entries); new files would mix with them. "
                "Choose a new folder, or pass --force to write into it"
            )
        return out
    _check_creatable(out)
    return out


def _check_creatable(out: Path) -> None:
    """ParamsError unless `out` (which does not exist) can be created: its nearest existing
    parent must be a folder we may write in."""
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ParamsError(f"--out {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ParamsError(f"--out {out}: cannot create it in {parent} (permission denied)")


def _default_help(section: str, key: str, what: str) -> str:
    return f"{what} (default: params.yaml's {section}.{key}, else {DEFAULTS[section][key]!r})"


def _add_rep_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file to read (default: params.yaml)")
    for key in REP_FLAGS:
        kind = SCHEMA["preprocess"][key].kind
        p.add_argument(
            _flag(key),
            dest=key,
            type=_integer if kind is int else kind,
            default=None,
            help=_default_help("preprocess", key, "representation"),
        )
    p.add_argument(
        "--drums", choices=("drop", "keep"), default=None, help=_default_help("preprocess", "drums", "drum notes")
    )
    p.add_argument(
        "--vocab",
        default="data/tokens/vocab.json",
        help="notes_chords only: the vocab.json its chords come from (default: data/tokens/vocab.json)",
    )


def _representation(args: argparse.Namespace, params: dict) -> representations.Representation:
    """The representation params select; one whose vocabulary comes from the corpus (notes_chords)
    is rebuilt from the store's vocab.json."""
    name = params["representation"]
    if not representations.vocab_from_data(name):
        return representations.from_params(params)
    import json

    path = Path(args.vocab)
    if not path.exists():
        raise ParamsError(f"{name} takes its chords from the corpus: {path} not found (run dvc repro preprocess)")
    config = json.loads(path.read_text(encoding="utf-8")).get("representation", {})
    if config.get("name") != name:
        raise ParamsError(f"{path} holds {config.get('name')!r} tokens, not {name}")
    return representations.from_config(config)


def _section(args: argparse.Namespace, section: str) -> dict:
    """params.yaml's `section` (if the file is there), else the schema's defaults."""
    if Path(args.params).exists():
        return dict(load_params(args.params, sections=(section,))[section])
    if args.params != "params.yaml":
        raise ParamsError(f"{args.params}: not found")
    return dict(DEFAULTS[section])


def _preprocess_params(args: argparse.Namespace) -> dict:
    """params.yaml's preprocess section (or the defaults), overridden by flags, then validated."""
    params = _section(args, "preprocess")
    for key in (*REP_FLAGS, "drums"):
        value = getattr(args, key, None)
        if value is not None:
            params[key] = SCHEMA["preprocess"][key].check(_flag(key), value)
    if params["pitch_min"] > params["pitch_max"]:
        raise ParamsError(f"pitch_min = {params['pitch_min']} is above pitch_max = {params['pitch_max']}")
    if params["time_unit"] == "auto":  # beats for the music21 corpora (data.source), else seconds
        params = resolve_time_unit(params, _section(args, "data")["source"])
    return params


def cmd_tokenize(args: argparse.Namespace) -> int:
    params = _preprocess_params(args)
    rep = _representation(args, params)
    ids = rep.encode(rep.read_piece(args.midi, params))
    out = sys.stdout
    for tok in rep.ids_to_tokens(ids):
        out.write(tok + "\n")
    return 0


def read_tokens(path: Path) -> list[str]:
    """The whitespace-separated tokens of a text file (a UTF-8 byte order mark, as some editors
    write, is dropped); MidigenError for a file that is no text or holds no token."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MidigenError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MidigenError(
            f"{path}: not a text file of tokens (byte {exc.start} is not UTF-8); tokenize turns a MIDI file into one"
        ) from None
    if "\x00" in text:
        raise MidigenError(f"{path}: not a text file of tokens (it holds NUL bytes)")
    tokens = text.split()
    if not tokens:
        raise MidigenError(f"{path}: no tokens (the file is empty)")
    return tokens


def cmd_detokenize(args: argparse.Namespace) -> int:
    params = _preprocess_params(args)
    rep = _representation(args, params)
    path, out = Path(args.tokens), Path(args.out)
    if out.is_dir():
        raise ParamsError(f"--out {out}: is a folder; give the .mid file to write, e.g. {out / 'piece.mid'}")
    if out.exists() and path.exists() and out.samefile(path):
        raise ParamsError(f"--out {out}: is the tokens file itself; writing MIDI there would destroy it")
    if not out.exists():
        _check_creatable(out)
    elif not os.access(out.parent, os.W_OK | os.X_OK):  # the file is replaced through a new one beside it
        raise ParamsError(f"--out {out}: cannot write in {out.parent} (permission denied)")
    tokens = read_tokens(path)
    try:
        ids = rep.tokens_to_ids(tokens)
    except MidigenError as exc:
        raise MidigenError(f"{path}: {exc}") from None
    try:
        notes = rep.write_midi(ids, out)
    except OSError as exc:
        raise MidigenError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    print(
        f"wrote {args.out}: {len(notes)} notes, {float(notes['end_s'].max()) if len(notes) else 0:.1f} s",
        file=sys.stderr,
    )
    return 0


def _generate_params(args: argparse.Namespace) -> dict:
    """params.yaml's generate section (or the defaults), overridden by the flags given, checked."""
    g = _section(args, "generate")
    for key, param in SAMPLE_FLAGS.items():
        value = getattr(args, key, None)
        if value is not None:
            g[param] = SCHEMA["generate"][param].check(_flag(key), value)
    return g


def cmd_sample(args: argparse.Namespace) -> int:
    from midigen.data.keys import of_checkpoint
    from midigen.generation.attributes import parse_attributes
    from midigen.generation.generate import checked_request, sample, write_pieces
    from midigen.models.base import context_from
    from midigen.training.checkpoint import load_model

    g = _generate_params(args)
    loaded = load_model(args.checkpoint, args.device)
    if "musicxml" in g["formats"]:  # before sampling, which is the slow part
        from midigen.export.musicxml import require_beat_grid

        require_beat_grid(loaded.rep, f"{args.params}: generate.formats = {g['formats']}")
    given = [k for k in ("max_steps", "top_k", "top_p", "primer") if getattr(args, k) is not None]
    given += ["greedy"] if args.greedy else []
    given += ["attribute"] if args.attribute else []
    attributes = parse_attributes(args.attribute) if args.attribute else ()
    request = checked_request(loaded, g, given, _flag, args.greedy, args.primer, attributes)
    check_out_folder(args.out, args.force)  # before sampling, which is the slow part
    seqs = sample(loaded, request)
    # exactly what the generate stage writes for the same params: same tempo, key and program
    paths = write_pieces(
        seqs,
        loaded.rep,
        args.out,
        clear=False,
        context=context_from(g),
        formats=g["formats"],
        keys=of_checkpoint(loaded.ckpt),
        seed=g["seed"],
    )
    for path, ids in zip(paths, seqs, strict=True):
        print(f"{path}  ({len(ids)} tokens)")
    return 0


def cmd_harmonize(args: argparse.Namespace) -> int:
    from midigen.api import harmonize_melody
    from midigen.generation.generate import write_pieces
    from midigen.training.checkpoint import load_model

    g = _generate_params(args)
    loaded = load_model(args.checkpoint, args.device)
    check_out_folder(args.out, args.force)  # before sampling, which is the slow part
    seqs, context = harmonize_melody(
        loaded, g, args.melody, args.voices, args.track, args.tempo, f"--checkpoint {args.checkpoint}"
    )
    paths = write_pieces(seqs, loaded.rep, args.out, "harmony", clear=False, context=context)
    voices = args.voices if args.voices is not None else loaded.rep.max_voices
    for path, ids in zip(paths, seqs, strict=True):
        print(f"{path}  ({len(ids)} tokens, {voices} voices at most, {context.tempo_bpm:g} quarter notes per minute)")
    return 0


#: interpolate's --steps at most: as many files as generate.num_files allows
MAX_INTERPOLATION_STEPS = 1024


def _check_vae_flags(args: argparse.Namespace) -> None:
    from midigen.generation.latent import check_temperature

    check_temperature(args.temperature)
    if args.tempo is not None:
        SCHEMA["generate"]["tempo"].check("--tempo", args.tempo)
    if getattr(args, "bar", None) is not None and args.bar < 1:
        raise ParamsError(f"--bar = {args.bar}: bars count from 1")
    if getattr(args, "min_hits", 0) < 0:
        raise ParamsError(f"--min-hits = {args.min_hits}: 0 or more")


def _write(seqs, loaded, args: argparse.Namespace, prefix: str, tempo: float) -> list[Path]:
    from midigen.generation.generate import write_pieces
    from midigen.representations import OutputContext

    return write_pieces(list(seqs), loaded.rep, args.out, prefix, clear=False, context=OutputContext(tempo_bpm=tempo))


def cmd_interpolate(args: argparse.Namespace) -> int:
    from midigen.generation.latent import file_window, interpolate_windows, load_latent

    _check_vae_flags(args)
    if not 2 <= args.steps <= MAX_INTERPOLATION_STEPS:
        raise ParamsError(f"--steps = {args.steps}: 2 to {MAX_INTERPOLATION_STEPS} (both ends are included)")
    loaded = load_latent(args.checkpoint, args.device)
    a, b = (file_window(path, loaded.rep, args.bar, args.min_hits) for path in (args.a, args.b))
    check_out_folder(args.out, args.force)
    for path, window in ((args.a, a), (args.b, b)):
        print(f"{path}: {window.describe(loaded.rep)}")
    seq = interpolate_windows(loaded.model, a.ids, b.ids, args.steps, args.temperature, args.seed, loaded.device)
    for path in _write(seq, loaded, args, "interp", args.tempo or a.tempo_bpm):
        print(path)
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from midigen.generation.latent import file_window, load_latent, reconstruct

    _check_vae_flags(args)
    loaded = load_latent(args.checkpoint, args.device)
    window = file_window(args.midi, loaded.rep, args.bar, args.min_hits)
    check_out_folder(args.out, args.force)  # once: the second write below goes beside the first
    out = reconstruct(loaded.model, window.ids[None], args.temperature, args.seed, loaded.device)
    tempo = args.tempo or window.tempo_bpm
    _write(window.ids[None], loaded, args, "original", tempo)
    path = _write(out, loaded, args, "reconstruction", tempo)[0]
    steps = loaded.rep.step_ids(window.ids[None])[0]
    accuracy = float((loaded.rep.step_ids(out)[0] == steps).mean())
    print(f"{args.midi}: {window.describe(loaded.rep)}")
    print(f"{path}  ({accuracy:.1%} of the {steps.shape[0]} steps as in the original)")
    return 0


def _task_model(args: argparse.Namespace, task: str, transform: str):
    """A GrooVAE checkpoint for `task`, with a warning when it was not trained for it."""
    from midigen.generation.latent import load_latent, transform_warning

    _check_vae_flags(args)
    loaded = load_latent(args.checkpoint, args.device)
    warning = transform_warning(loaded, task, transform)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return loaded


def _describe_hits(rep, ids) -> str:
    """Hits per class and the spread of velocities and offsets of written groove ids."""
    hit, velocity, shift = rep.features(ids[None])
    if not hit.any():
        return "no hits"
    per_class = ", ".join(f"{n} {int(hit[..., c].sum())}" for c, n in enumerate(rep.class_names) if hit[..., c].any())
    v, o = velocity[hit], shift[hit]
    spread = f"velocity {v.min()}-{v.max()}, offsets {o.min():+.2f}..{o.max():+.2f} steps"
    return f"{int(hit.sum())} hits ({per_class}); {spread}"


def _whole_file(args: argparse.Namespace, task: str) -> int:
    """humanize / tap2drum: every window of the file (bar 1 on, back to back) through the task,
    written as one file."""
    from midigen.generation import latent

    transform, tap = latent.FILE_TASKS[task]
    loaded = _task_model(args, task, transform)
    windows, piece = latent.file_grid(args.midi, loaded.rep, tap=tap)
    check_out_folder(args.out, args.force)
    ids = latent.file_task(loaded, windows, task, args.temperature, args.seed)
    path = _write([ids], loaded, args, task, args.tempo or piece.tempo_bpm)[0]
    print(f"{path}: {windows.shape[0] * loaded.rep.bars} bars; {_describe_hits(loaded.rep, ids)}")
    return 0


def cmd_humanize(args: argparse.Namespace) -> int:
    return _whole_file(args, "humanize")


def cmd_tap2drum(args: argparse.Namespace) -> int:
    return _whole_file(args, "tap2drum")


def cmd_transfer(args: argparse.Namespace) -> int:
    from midigen.generation.latent import file_window, groove_transfer

    loaded = _task_model(args, "groove transfer", "none")
    groove = file_window(args.groove, loaded.rep, args.bar, args.min_hits)
    pattern = file_window(args.pattern, loaded.rep, args.pattern_bar, args.min_hits)
    check_out_folder(args.out, args.force)
    print(f"groove {args.groove}: {groove.describe(loaded.rep)}")
    print(f"hits {args.pattern}: {pattern.describe(loaded.rep)}")
    model, rep = loaded.model, loaded.rep
    out = groove_transfer(model, rep, groove.ids[None], pattern.ids[None], args.temperature, args.seed, loaded.device)
    path = _write(out, loaded, args, "transfer", args.tempo or pattern.tempo_bpm)[0]
    print(f"{path}: {_describe_hits(loaded.rep, out[0])}")
    return 0


def cmd_studio(args: argparse.Namespace) -> int:
    from midigen.studio import serve

    return serve(args.models, args.host, args.port, args.device)


def _add_vae_flags(p: argparse.ArgumentParser, temperature: float, window: bool = True) -> None:
    p.add_argument("--checkpoint", default="models/best.pt", help="a MusicVAE checkpoint (default: models/best.pt)")
    if window:
        min_hits = DEFAULTS["generate"]["min_hits"]
        p.add_argument(
            "--bar",
            type=_integer,
            default=None,
            help="use the window starting at this bar, from 1 (default: the first with --min-hits hits)",
        )
        p.add_argument(
            "--min-hits",
            type=_integer,
            default=min_hits,
            help=f"without --bar: the first window with at least this many hits, else the fullest (default {min_hits})",
        )
    p.add_argument(
        "--temperature", type=float, default=temperature, help=f"0 = most likely step (default {temperature:g})"
    )
    p.add_argument("--tempo", type=float, default=None, help="quarter notes per minute (default: the first file's)")
    p.add_argument("--seed", type=_integer, default=0, help="random seed (default 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run (default: auto)")
    p.add_argument("--out", required=True, help="output folder (new or empty, unless --force)")
    _add_force_flag(p)


def _add_force_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--force",
        action="store_true",
        help="write into an --out folder that is not empty (files of the same names are replaced, others kept)",
    )


# -- info, render, export: tools for any checkpoint or MIDI file ------------------------------------


def _format_config(config: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in config.items() if k != "name")


def cmd_info(args: argparse.Namespace) -> int:
    import json

    from midigen.training import checkpoint

    info = checkpoint.summary(checkpoint.load(args.checkpoint), args.checkpoint)
    if args.check_data:
        from midigen.data.dataset import load_split_data

        here = load_split_data().fingerprint()
        info["data_here"] = {"fingerprint": here, "matches": here == info["data_fingerprint"]}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    best = info["best"]
    val = ", ".join(f"{k} {v:g}" for k, v in best.items() if k != "epoch")
    rep = info["representation"]
    rows = [
        ("family", f"{info['family']} ({_format_config(info['model'])})"),
        ("parameters", f"{info['parameters']:,} trainable, {info['stored_values']:,} values stored"),
        ("representation", f"{rep.get('name')} ({_format_config(rep)})"),
        ("vocabulary", f"{info['vocab_size']:,} tokens"),
        ("training", f"{info['epochs']} epochs; best at epoch {best['epoch']}: {val}" if best else "no history"),
        ("training data", f"fingerprint {info['data_fingerprint']} (run {info['run_fingerprint']})"),
    ]
    if "attributes" in info:
        rows.append(("attributes", ", ".join(info["attributes"])))
    if "key_shifts" in info:
        moves = ", ".join(f"{s:+d} x{n}" for s, n in info["key_shifts"])
        rows.append(("keys", f"trained in C (preprocess.key c); pieces moved back by minus one of: {moves}"))
    if "data_here" in info:
        here = info["data_here"]
        same = "the same data" if here["matches"] else "OTHER data than this checkpoint was trained on"
        rows.append(("data here", f"fingerprint {here['fingerprint']}: {same} (data/tokens, data/split.csv)"))
    print(info["path"])
    for name, value in rows:
        print(f"  {name:<15} {value}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from midigen.data.midi_io import read_notes
    from midigen.parallel import progress
    from midigen.report import audio

    out = Path(args.out)
    if out.suffix.lower() not in audio.RENDER_SUFFIXES:
        raise ParamsError(f"--out {out}: give an .ogg or a .wav file to write")
    if out.is_dir():
        raise ParamsError(f"--out {out}: is a folder; give the file to write, e.g. {out / 'piece.ogg'}")
    if args.max_seconds is not None and args.max_seconds <= 0:
        raise ParamsError(f"--max-seconds = {args.max_seconds:g}: more than 0")
    synth, why = audio.find_synth(args.soundfont, ogg=out.suffix.lower() == ".ogg", key="--soundfont")
    if synth is None:
        raise MidigenError(f"cannot render {args.midi}: {why}")
    notes = read_notes(args.midi)
    if not out.exists():
        _check_creatable(out)
    music_s = float(notes["end_s"].max()) if len(notes) else 0.0
    if args.max_seconds is not None:
        music_s = min(music_s, args.max_seconds)
    seconds = music_s + audio.RELEASE_S  # the bar's end: FluidSynth writes the last notes' decay too
    with progress(None, total=round(seconds, 1), desc="render", unit="s") as bar:

        def advance(done_s: float) -> None:
            bar.update(round(min(done_s, seconds), 1) - bar.n)

        why = audio.render_file(synth, notes, out, args.max_seconds, on_progress=advance)
        if not why:
            advance(seconds)
    if why:
        raise MidigenError(f"cannot render {args.midi}: {why}")
    print(f"wrote {out}: {music_s:.1f} s of music ({out.stat().st_size / 1000:.0f} kB)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from midigen.export.musicxml import write_musicxml
    from midigen.parallel import progress

    if not args.musicxml:
        raise ParamsError("export: say what to write (--musicxml)")
    paths = [Path(p) for p in args.midi]
    stems = [p.stem for p in paths]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise ParamsError(f"two inputs would both write {twice[0]}.musicxml into --out; export them one at a time")
    out = check_out_folder(args.out, force=True)  # beside other files: each score replaces its own name only
    for path in paths:
        if not path.is_file():
            raise ParamsError(f"{path}: no such file")
    written = []
    for path in progress(paths, desc="export", unit="file", disable=len(paths) < 2):
        written.append(write_musicxml(path, out / f"{path.stem}.musicxml", quantize=args.quantize))
    for summary in written:
        print(f"{summary.path}: {summary.describe()}")
    return 0


def _add_tool_commands(sub) -> None:
    p = sub.add_parser(
        "info", help="what a checkpoint holds: family, representation, vocabulary, training data, val loss"
    )
    p.add_argument("checkpoint", nargs="?", default="models/best.pt", help="the checkpoint (default: models/best.pt)")
    p.add_argument("--json", action="store_true", help="print it as JSON")
    p.add_argument(
        "--check-data",
        action="store_true",
        help="also fingerprint data/tokens and data/split.csv here and say whether the checkpoint was trained on "
        "them (reads the whole token store)",
    )
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("render", help="play a MIDI file into an .ogg or .wav file with FluidSynth and a SoundFont")
    p.add_argument("midi", help="input .mid file")
    p.add_argument("--out", required=True, help="the .ogg (Vorbis, mono) or .wav (16-bit stereo) file to write")
    p.add_argument(
        "--soundfont",
        default="",
        help="a General MIDI .sf2 file (default: the first of the usual places that exists, e.g. "
        "/usr/share/sounds/sf2/FluidR3_GM.sf2)",
    )
    p.add_argument("--max-seconds", type=float, default=None, help="cut the piece here (default: the whole piece)")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser(
        "export", help="write MIDI files on a beat grid as scores (MusicXML: key, meter, note values, a part per track)"
    )
    p.add_argument("midi", nargs="+", help="input .mid files (each writes OUT/<name>.musicxml)")
    p.add_argument("--musicxml", action="store_true", help="write MusicXML (.musicxml), for MuseScore, Sibelius, ...")
    p.add_argument("--out", required=True, help="output folder (made if new; a score of the same name is replaced)")
    p.add_argument(
        "--quantize",
        type=_integer,
        default=None,
        metavar="STEPS",
        help="snap every onset and end to 1/STEPS of a quarter note first, e.g. 4 = sixteenths (default: none; "
        "a file off the beat grid is an error)",
    )
    p.set_defaults(func=cmd_export)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="midigen",
        description="midigen learns from MIDI files and writes new music. `midigen COMMAND --help` shows a "
        "command's flags and their defaults; the pipeline itself runs with `dvc repro`.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"midigen {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # every subcommand's help shows its flags' defaults (_HelpFormatter)
    sub.add_parser = functools.partial(sub.add_parser, formatter_class=_HelpFormatter)
    _add_tool_commands(sub)

    p = sub.add_parser("tokenize", help="print a MIDI file's tokens, one per line")
    p.add_argument("midi", help="input .mid file")
    _add_rep_flags(p)
    p.set_defaults(func=cmd_tokenize)

    p = sub.add_parser("detokenize", help="write MIDI from a file of tokens (whitespace-separated)")
    p.add_argument("tokens", help="text file of tokens, e.g. the output of tokenize")
    p.add_argument("--out", required=True, help="output .mid file")
    _add_rep_flags(p)
    p.set_defaults(func=cmd_detokenize)

    p = sub.add_parser(
        "sample", help="generate new pieces from a checkpoint, all in one batch, as the generate stage writes them"
    )
    p.add_argument("--checkpoint", default="models/best.pt", help="the checkpoint (default: models/best.pt)")
    p.add_argument(
        "--params",
        default="params.yaml",
        help="params file whose generate section gives the defaults (default: params.yaml)",
    )
    p.add_argument("--num-files", type=_integer, default=None, help=_default_help("generate", "num_files", "pieces"))
    p.add_argument(
        "--max-steps",
        type=_integer,
        default=None,
        help=_default_help("generate", "max_steps", "new tokens per piece at most"),
    )
    p.add_argument(
        "--temperature", type=float, default=None, help=_default_help("generate", "temperature", "softmax temperature")
    )
    p.add_argument(
        "--top-k",
        type=_integer,
        default=None,
        help=_default_help("generate", "top_k", "keep the k most likely tokens; 0 = all"),
    )
    p.add_argument("--top-p", type=float, default=None, help=_default_help("generate", "top_p", "nucleus sampling"))
    p.add_argument("--seed", type=_integer, default=None, help=_default_help("generate", "seed", "random seed"))
    p.add_argument(
        "--tempo", type=float, default=None, help=_default_help("generate", "tempo", "quarter notes per minute")
    )
    p.add_argument("--key", default=None, help=_default_help("generate", "key", "key signature of score-time output"))
    p.add_argument(
        "--program", type=_integer, default=None, help=_default_help("generate", "program", "General MIDI program")
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run (default: auto)")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token (default: sample)")
    p.add_argument("--primer", default=None, help="a MIDI file to continue: its tokens are the prompt (default: none)")
    p.add_argument(
        "--attribute",
        action="append",
        default=[],
        metavar="NAME=AMOUNT",
        help="MusicVAE: move z along a latent attribute vector, e.g. density=+1.5 or swing=-1 (repeatable; the "
        "checkpoint's attributes: density, syncopation, velocity, laid_back, swing, density_<class>; default: none)",
    )
    p.add_argument("--out", required=True, help="output folder (sample_NN.mid and .txt; new or empty, unless --force)")
    _add_force_flag(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("harmonize", help="voices models: keep a melody as the soprano and write the voices below it")
    p.add_argument("melody", help="a .mid file: its top line (or --track) is the soprano")
    p.add_argument("--checkpoint", default="models/best.pt", help="a voices checkpoint (default: models/best.pt)")
    p.add_argument("--params", default="params.yaml", help="params file whose generate section gives the defaults")
    p.add_argument(
        "--track",
        default=None,
        help="take the melody from the track of this name, one line (default: the top line of the whole file)",
    )
    p.add_argument(
        "--voices", type=_integer, default=None, help="voices in all, soprano included (default: the model's)"
    )
    p.add_argument("--num-files", type=_integer, default=1, help="harmonizations to write (default 1)")
    p.add_argument(
        "--temperature", type=float, default=None, help=_default_help("generate", "temperature", "softmax temperature")
    )
    p.add_argument("--top-k", type=_integer, default=None, help=_default_help("generate", "top_k", "top-k"))
    p.add_argument("--top-p", type=float, default=None, help=_default_help("generate", "top_p", "nucleus sampling"))
    p.add_argument("--seed", type=_integer, default=None, help=_default_help("generate", "seed", "random seed"))
    p.add_argument("--tempo", type=float, default=None, help="quarter notes per minute (default: the melody's)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run (default: auto)")
    p.add_argument("--out", required=True, help="output folder (harmony_NN.mid and .txt; new or empty, unless --force)")
    _add_force_flag(p)
    p.set_defaults(func=cmd_harmonize)

    p = sub.add_parser("interpolate", help="MusicVAE: walk the latent space from one MIDI file's window to another's")
    p.add_argument("a", help="first .mid file (its first usable window, or --bar)")
    p.add_argument("b", help="second .mid file")
    p.add_argument("--steps", type=_integer, default=5, help="points including both ends (default 5, at most 1024)")
    _add_vae_flags(p, temperature=0.0)
    p.set_defaults(func=cmd_interpolate)

    p = sub.add_parser("reconstruct", help="MusicVAE: encode a MIDI file's window and decode it again")
    p.add_argument("midi", help="input .mid file")
    _add_vae_flags(p, temperature=0.0)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser(
        "humanize", help="GrooVAE: quantized drums in, played drums out (velocities and timing; the whole file)"
    )
    p.add_argument("midi", help="input .mid file with a drum track (its velocities and timing are ignored)")
    _add_vae_flags(p, temperature=0.0, window=False)
    p.set_defaults(func=cmd_humanize)

    p = sub.add_parser("tap2drum", help="GrooVAE: any rhythm in (every note of the file, any instrument), drums out")
    p.add_argument("midi", help="input .mid file")
    _add_vae_flags(p, temperature=0.0, window=False)
    p.set_defaults(func=cmd_tap2drum)

    p = sub.add_parser("transfer", help="GrooVAE: one pattern's hits played with another's velocities and timing")
    p.add_argument("groove", help=".mid file whose feel (velocities, offsets) is used")
    p.add_argument("pattern", help=".mid file whose hits are played")
    p.add_argument(
        "--pattern-bar", type=_integer, default=None, help="the pattern's window starts at this bar (default: as --bar)"
    )
    _add_vae_flags(p, temperature=0.0)
    p.set_defaults(func=cmd_transfer)

    p = sub.add_parser("studio", help="a local web page to sample, interpolate and humanize with your checkpoints")
    p.add_argument("--models", default="models", help="the folder of checkpoints to offer (default: models)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; any but loopback requires a token (default 127.0.0.1)",
    )
    p.add_argument("--port", type=_integer, default=8765, help="port; 0 = any free one (default 8765)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run (default: auto)")
    p.set_defaults(func=cmd_studio)
    add_data.register(sub)  # add-data: midigen/data/add.py
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_main(lambda: args.func(args))
