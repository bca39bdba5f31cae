"""Command line: python -m midigen tokenize|detokenize|sample|interpolate|reconstruct ...

Representation params come from params.yaml (the `preprocess` section) when it exists, and
flags override them, so the CLI shows exactly what the pipeline would produce.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from midigen import representations
from midigen.errors import MidigenError, ParamsError, run_main
from midigen.params import SCHEMA, load_params

REP_FLAGS = ("time_step", "max_shift_steps", "velocity_bins", "pitch_min", "pitch_max")
_DEFAULT_PREPROCESS = {
    "representation": "events",
    "time_step": 0.05,
    "max_shift_steps": 100,
    "velocity_bins": 0,
    "drums": "drop",
    "pitch_min": 0,
    "pitch_max": 127,
    "steps_per_quarter": 4,
    "bars": 4,
    "hop_bars": 1,
}


def _add_rep_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file to read (default: params.yaml)")
    for key in REP_FLAGS:
        kind = SCHEMA["preprocess"][key].kind
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, type=kind, default=None)
    p.add_argument("--drums", choices=("drop", "keep"), default=None)
    p.add_argument(
        "--vocab",
        default="data/tokens/vocab.json",
        help="notes_chords only: the vocab.json its chords come from (default: data/tokens/vocab.json)",
    )


def _representation(args: argparse.Namespace, params: dict) -> representations.Representation:
    """The representation params select; notes_chords rebuilds the corpus's one from a vocab.json."""
    if params["representation"] != "notes_chords":
        return representations.from_params(params)
    import json

    path = Path(args.vocab)
    if not path.exists():
        raise ParamsError(f"notes_chords takes its chords from the corpus: {path} not found (run dvc repro preprocess)")
    config = json.loads(path.read_text(encoding="utf-8")).get("representation", {})
    if config.get("name") != "notes_chords":
        raise ParamsError(f"{path} holds {config.get('name')!r} tokens, not notes_chords")
    return representations.from_config(config)


def _preprocess_params(args: argparse.Namespace) -> dict:
    """params.yaml's preprocess section (if present), overridden by flags, then validated."""
    params = dict(_DEFAULT_PREPROCESS)
    if Path(args.params).exists():
        params.update(load_params(args.params, sections=("preprocess",))["preprocess"])
    elif args.params != "params.yaml":
        raise ParamsError(f"{args.params}: not found")
    for key in (*REP_FLAGS, "drums"):
        value = getattr(args, key, None)
        if value is not None:
            params[key] = SCHEMA["preprocess"][key].check(f"--{key.replace('_', '-')}", value)
    if params["pitch_min"] > params["pitch_max"]:
        raise ParamsError(f"pitch_min = {params['pitch_min']} is above pitch_max = {params['pitch_max']}")
    return params


def cmd_tokenize(args: argparse.Namespace) -> int:
    from midigen.data.preprocess import select_notes

    params = _preprocess_params(args)
    rep = _representation(args, params)
    if isinstance(rep, representations.GridRepresentation):  # the whole piece on the step grid
        from midigen.representations.grid import read_grid_notes

        ids = rep.encode(read_grid_notes(args.midi, rep.steps_per_quarter))
    else:
        ids = rep.encode(select_notes(rep.read(args.midi), params["drums"]))
    out = sys.stdout
    for tok in rep.ids_to_tokens(ids):
        out.write(tok + "\n")
    return 0


def cmd_detokenize(args: argparse.Namespace) -> int:
    from midigen.data.midi_io import write_midi

    params = _preprocess_params(args)
    rep = _representation(args, params)
    path = Path(args.tokens)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MidigenError(f"{path}: cannot read ({exc.strerror})") from None
    tokens = text.split()
    try:
        ids = rep.tokens_to_ids(tokens)
    except MidigenError as exc:
        raise MidigenError(f"{path}: {exc}") from None
    notes = rep.decode(ids)
    write_midi(notes, args.out)
    print(
        f"wrote {args.out}: {len(notes)} notes, {float(notes['end_s'].max()) if len(notes) else 0:.1f} s",
        file=sys.stderr,
    )
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from midigen.generation.generate import sample_ids, write_pieces
    from midigen.models import load_checkpoint

    for flag, value, spec in (
        ("--num-files", args.num_files, SCHEMA["generate"]["num_files"]),
        ("--max-steps", args.max_steps, SCHEMA["generate"]["max_steps"]),
        ("--temperature", args.temperature, SCHEMA["generate"]["temperature"]),
        ("--top-k", args.top_k, SCHEMA["generate"]["top_k"]),
        ("--top-p", args.top_p, SCHEMA["generate"]["top_p"]),
    ):
        spec.check(flag, value)
    if load_checkpoint(args.checkpoint)["model"]["kind"] == "musicvae":
        from midigen.generation.latent import load_vae, sample, write_windows

        model, grid_rep, dev = load_vae(args.checkpoint, args.device)
        # a MusicVAE decodes whole windows from z: --max-steps, --top-k/--top-p and --primer do not apply
        windows, _ = sample(model, args.num_files, 0.0 if args.greedy else args.temperature, args.seed, dev)
        for path in write_windows(windows, grid_rep, args.out, "sample", args.tempo):
            print(path)
        return 0
    seqs, rep = sample_ids(
        args.checkpoint,
        args.num_files,
        args.max_steps,
        args.temperature,
        args.top_k,
        args.top_p,
        args.seed,
        args.device,
        primer=args.primer,
        greedy=args.greedy,
    )
    paths = write_pieces(seqs, rep, args.out, clear=False)
    for path, ids in zip(paths, seqs, strict=True):
        print(f"{path}  ({len(ids)} tokens)")
    return 0


def _check_vae_flags(args: argparse.Namespace) -> None:
    if args.temperature != 0:  # 0 = argmax; otherwise what generate.temperature accepts
        SCHEMA["generate"]["temperature"].check("--temperature", args.temperature)
    if args.tempo is not None:
        SCHEMA["generate"]["tempo"].check("--tempo", args.tempo)
    if args.bar is not None and args.bar < 1:
        raise ParamsError(f"--bar = {args.bar}: bars count from 1")


def cmd_interpolate(args: argparse.Namespace) -> int:
    from midigen.generation.latent import file_window, interpolate_windows, load_vae, write_windows

    _check_vae_flags(args)
    if args.steps < 2:
        raise ParamsError(f"--steps = {args.steps}: at least 2 (both ends are included)")
    model, rep, dev = load_vae(args.checkpoint, args.device)
    (a, tempo), (b, _) = file_window(args.a, rep, args.bar), file_window(args.b, rep, args.bar)
    seq = interpolate_windows(model, a, b, args.steps, args.temperature, args.seed, dev)
    for path in write_windows(seq, rep, args.out, "interp", args.tempo or tempo):
        print(path)
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from midigen.generation.latent import file_window, load_vae, reconstruct, write_windows

    _check_vae_flags(args)
    model, rep, dev = load_vae(args.checkpoint, args.device)
    window, tempo = file_window(args.midi, rep, args.bar)
    out = reconstruct(model, window[None], args.temperature, args.seed, dev)
    write_windows(window[None], rep, args.out, "original", args.tempo or tempo)
    path = write_windows(out, rep, args.out, "reconstruction", args.tempo or tempo)[0]
    accuracy = float((out[0] == window).mean())
    print(f"{path}  ({accuracy:.1%} of the {window.shape[0]} steps as in the original)")
    return 0


def _add_vae_flags(p: argparse.ArgumentParser, temperature: float) -> None:
    p.add_argument("--checkpoint", default="models/best.pt", help="a MusicVAE checkpoint")
    p.add_argument("--bar", type=int, default=None, help="use the window starting at this bar (from 1)")
    p.add_argument(
        "--temperature", type=float, default=temperature, help=f"0 = most likely step (default {temperature:g})"
    )
    p.add_argument("--tempo", type=float, default=None, help="quarter notes per minute (default: the first file's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--out", required=True, help="output folder")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m midigen", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tokenize", help="print a MIDI file's tokens, one per line")
    p.add_argument("midi", help="input .mid file")
    _add_rep_flags(p)
    p.set_defaults(func=cmd_tokenize)

    p = sub.add_parser("detokenize", help="write MIDI from a file of tokens (whitespace-separated)")
    p.add_argument("tokens", help="text file of tokens, e.g. the output of tokenize")
    p.add_argument("--out", required=True, help="output .mid file")
    _add_rep_flags(p)
    p.set_defaults(func=cmd_detokenize)

    p = sub.add_parser("sample", help="generate new pieces from a checkpoint, all in one batch")
    p.add_argument("--checkpoint", default="models/best.pt")
    p.add_argument("--num-files", type=int, default=4)
    p.add_argument("--max-steps", type=int, default=2000, help="new tokens per piece at most")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--primer", help="a MIDI file to continue (its tokens are the prompt)")
    p.add_argument("--tempo", type=float, default=120.0, help="MusicVAE grids: quarter notes per minute")
    p.add_argument("--out", required=True, help="output folder (sample_NN.mid and .txt)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("interpolate", help="MusicVAE: walk the latent space from one MIDI file's window to another's")
    p.add_argument("a", help="first .mid file (its first usable window, or --bar)")
    p.add_argument("b", help="second .mid file")
    p.add_argument("--steps", type=int, default=5, help="points including both ends (default 5)")
    _add_vae_flags(p, temperature=0.0)
    p.set_defaults(func=cmd_interpolate)

    p = sub.add_parser("reconstruct", help="MusicVAE: encode a MIDI file's window and decode it again")
    p.add_argument("midi", help="input .mid file")
    _add_vae_flags(p, temperature=0.0)
    p.set_defaults(func=cmd_reconstruct)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_main(lambda: args.func(args))
