"""Command line: python -m midigen tokenize|detokenize|sample ...

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
}


def _add_rep_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file to read (default: params.yaml)")
    for key in REP_FLAGS:
        kind = SCHEMA["preprocess"][key].kind
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, type=kind, default=None)
    p.add_argument("--drums", choices=("drop", "keep"), default=None)


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
    from midigen.midi_io import read_notes
    from midigen.preprocess import select_notes

    params = _preprocess_params(args)
    rep = representations.from_params(params)
    notes = select_notes(read_notes(args.midi), params["drums"])
    out = sys.stdout
    for tok in rep.ids_to_tokens(rep.encode(notes)):
        out.write(tok + "\n")
    return 0


def cmd_detokenize(args: argparse.Namespace) -> int:
    from midigen.midi_io import write_midi

    params = _preprocess_params(args)
    rep = representations.from_params(params)
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
    from midigen.generate import sample_ids, write_pieces

    for flag, value, spec in (
        ("--num-files", args.num_files, SCHEMA["generate"]["num_files"]),
        ("--max-steps", args.max_steps, SCHEMA["generate"]["max_steps"]),
        ("--temperature", args.temperature, SCHEMA["generate"]["temperature"]),
        ("--top-k", args.top_k, SCHEMA["generate"]["top_k"]),
        ("--top-p", args.top_p, SCHEMA["generate"]["top_p"]),
    ):
        spec.check(flag, value)
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
    p.add_argument("--out", required=True, help="output folder (sample_NN.mid and .txt)")
    p.set_defaults(func=cmd_sample)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_main(lambda: args.func(args))
