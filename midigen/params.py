"""Load and validate params.yaml before any work starts.

Every key the pipeline reads is declared in SCHEMA with its type, allowed values and default (the
one source of defaults: params.yaml ships them, the CLI and the report read them here), so a
typo or a bad value fails at once with one line naming the key, instead of deep inside a stage.

The choices of model.kind and preprocess.representation are the names of the two registries
(midigen.models, midigen.representations; a test keeps them equal). They are written out here so
that reading params imports no model code: a stage depends only on the code it runs.
Whether a model family can read a representation is checked when training starts
(midigen.models.check_fits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from midigen.data.midi_io import KEY_NAMES
from midigen.errors import ParamsError


@dataclass(frozen=True)
class Spec:
    """What one key accepts: a type, an optional closed/open range or a set of choices, and
    its default (the value params.yaml ships with). kind list: a non-empty list of `choices`,
    each at most once."""

    kind: type
    default: Any
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[Any, ...] | None = None

    def describe(self) -> str:
        if self.kind is list:
            return "a list of " + ", ".join(repr(c) for c in self.choices or ()) + " (each at most once)"
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        name = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[self.kind]
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {self.lo:g}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {self.hi:g}")
        return name + (" " + " and ".join(parts) if parts else "")

    def check(self, key: str, value: Any) -> Any:
        if self.kind is list:
            if not isinstance(value, list) or not value or len(set(map(str, value))) < len(value):
                raise ParamsError(f"{key} = {value!r}: expected {self.describe()}")
            if any(v not in (self.choices or ()) for v in value):
                raise ParamsError(f"{key} = {value!r}: expected {self.describe()}")
            return list(value)
        ok_type = {
            bool: lambda v: isinstance(v, bool),
            int: lambda v: isinstance(v, int) and not isinstance(v, bool),
            float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
            str: lambda v: isinstance(v, str),
        }[self.kind]
        if not ok_type(value):
            raise ParamsError(f"{key} = {value!r}: expected {self.describe()}")
        if self.kind is float:
            value = float(value)
            if not math.isfinite(value):
                raise ParamsError(f"{key} = {value!r}: expected a finite number")
        if self.choices is not None and value not in self.choices:
            raise ParamsError(f"{key} = {value!r}: expected {self.describe()}")
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            raise ParamsError(f"{key} = {value!r}: expected {self.describe()}")
        if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
            raise ParamsError(f"{key} = {value!r}: expected {self.describe()}")
        return value


#: the largest seed every generator takes (torch.manual_seed, numpy's default_rng)
MAX_SEED = 2**63 - 1


def _int(default: int, lo=None, hi=None) -> Spec:
    return Spec(int, default, lo, hi)


def _pos(default: float, hi=None, hi_open=False) -> Spec:
    return Spec(float, default, 0, hi, lo_open=True, hi_open=hi_open)


SCHEMA: dict[str, dict[str, Spec]] = {
    "data": {
        "source": Spec(str, "music21:chorales"),
        "max_pieces": _int(0, 0),
        "workers": _int(0, 0),
    },
    "preprocess": {
        "representation": Spec(
            str, "voices", choices=("events", "drums", "groove", "melody", "notes_chords", "pitch_duration", "voices")
        ),
        "time_unit": Spec(str, "auto", choices=("auto", "beats", "seconds")),
        "time_step": _pos(0.05, 1.0),
        "max_shift_steps": _int(100, 1, 10000),
        "velocity_bins": _int(0, 0, 128),
        "drums": Spec(str, "drop", choices=("drop", "keep")),
        "programs": Spec(bool, False),
        "pitch_min": _int(21, 0, 127),
        "pitch_max": _int(108, 0, 127),
        "max_file_mb": _pos(10),
        "max_notes": _int(200000, 1),
        "max_duration_s": _pos(3600),
        "max_memory_mb": _pos(512),
        "timeout_s": _pos(30),
        "steps_per_quarter": _int(4, 1, 24),
        "bars": _int(4, 1, 64),
        "hop_bars": _int(1, 1, 64),
        "chord_min_count": _int(5, 1),
        "fixed_step_quarters": Spec(float, 0.0, 0, 4),
        "max_voices": _int(4, 1, 16),
        "bar_positions": Spec(bool, False),
        "frame_runs": Spec(bool, True),
        "key": Spec(str, "auto", choices=("auto", "keep", "c")),
    },
    "split": {
        "val_ratio": Spec(float, 0.1, 0, 1, hi_open=True),
        "test_ratio": Spec(float, 0.1, 0, 1, hi_open=True),
        "seed": _int(1234, 0, MAX_SEED),
        "from_metadata": Spec(bool, True),
        "dedupe": Spec(str, "group", choices=("group", "drop", "off")),
        "dedupe_by": Spec(str, "file", choices=("file", "notes")),
    },
    "model": {
        "kind": Spec(str, "lstm", choices=("lstm", "musicvae", "ngram", "transformer")),
        "emb_dim": _int(128, 0),
        "hidden_dim": _int(256, 1),
        "num_layers": _int(2, 1, 8),
        "dropout": Spec(float, 0.3, 0, 1, hi_open=True),
        "decoder": Spec(str, "auto", choices=("auto", "hierarchical", "flat")),
        "z_dim": _int(64, 1),
        "enc_hidden": _int(128, 1),
        "conductor_hidden": _int(128, 1),
        "dec_hidden": _int(128, 1),
        "enc_layers": _int(1, 0, 8),
        "dec_layers": _int(1, 0, 8),
        "velocity_loss": Spec(str, "l1", choices=("squared", "l1")),  # models.groove.VELOCITY_LOSSES
        "preset": Spec(str, "none", choices=("none", "groovae_4bar", "transformer_cpu", "transformer_gpu")),
        "order": _int(4, 1, 10),
        "layers": _int(4, 1, 48),
        "heads": _int(4, 1, 64),
        "d_model": _int(128, 2),
        "d_ff": _int(512, 1),
        "context": _int(512, 2, 65536),
        "position": Spec(str, "rotary", choices=("rotary", "alibi")),
    },
    "train": {
        "epochs": _int(60, 1),
        "batch_size": _int(8, 1),
        "seq_len": _int(512, 2),
        "lr": _pos(0.003, 1.0),
        "weight_decay": Spec(float, 0.01, 0),
        "grad_clip": _pos(1.0),
        "schedule": Spec(str, "cosine", choices=("cosine", "constant", "exponential")),
        "warmup_steps": _int(50, 0),
        "transpose": _int(0, 0, 12),
        "stateful": Spec(bool, False),
        "seed": _int(42, 0, MAX_SEED),
        "device": Spec(str, "auto", choices=("auto", "cpu", "cuda")),
        "threads": _int(0, 0),
        "nproc": _int(1, 1, 1024),
        "compile": Spec(str, "auto", choices=("auto", "always", "never")),
        "max_beta": Spec(float, 0.2, 0),
        "beta_rate": Spec(float, 0.99, 0, 1),
        "free_bits": Spec(float, 48, 0),
        "input_transform": Spec(str, "none", choices=("none", "humanize", "tapify")),
        "log_system_metrics": Spec(bool, False),
    },
    "generate": {
        "num_files": _int(8, 1, 1024),
        "max_steps": _int(2000, 1, 10**7),
        "temperature": _pos(1.0, 10.0),
        "top_k": _int(40, 0),
        "top_p": _pos(0.95, 1.0),
        "seed": _int(7, 0, MAX_SEED),
        "tempo": Spec(float, 120.0, 20, 400),
        "key": Spec(str, "C", choices=("none", *KEY_NAMES)),
        "program": _int(0, 0, 127),
        "constrained": Spec(bool, True),
        "max_note_beats": Spec(float, 4.0, 0, 1000),
        "max_voices": _int(4, 0, 128),
        "min_beats": Spec(float, 32.0, 0, 100000),
        "mode": Spec(str, "sample", choices=("sample", "humanize", "tap2drum", "interpolate")),
        "min_hits": _int(8, 0),
        "formats": Spec(list, ["mid"], choices=("mid", "musicxml")),
    },
    "evaluate": {
        "ngram": _int(4, 1, 64),
        "max_test_pieces": _int(64, 1),
        "decode_pieces": _int(8, 1, 1024),
        "decode_steps": _int(200, 1, 10**7),
        "primer_tokens": _int(8, 1),
        "classifier_folds": _int(5, 2, 100),
        "classifier_resamples": _int(20, 1, 1000),
        "harmonize_pieces": _int(16, 0, 1024),
    },
    "report": {
        "audio": Spec(bool, True),
        "soundfont": Spec(str, ""),
        "max_audio_seconds": _pos(30, 3600),
        "reference_pieces": _int(3, 0, 20),
    },
    "tracking": {
        "on_error": Spec(str, "fail", choices=("fail", "warn")),
        "registered_model_name": Spec(str, "midigen"),
        "model_alias": Spec(str, "champion"),
    },
}


def validate(raw: Any, sections: tuple[str, ...] | None = None) -> dict[str, dict[str, Any]]:
    """Check a params mapping against SCHEMA; return it with numbers normalised."""
    if not isinstance(raw, dict):
        raise ParamsError("params.yaml must be a mapping of sections (data:, preprocess:, ...)")
    unknown = sorted(set(raw) - set(SCHEMA))
    if unknown:
        raise ParamsError(f"unknown section {unknown[0]!r}; known: {', '.join(SCHEMA)}")
    out: dict[str, dict[str, Any]] = {}
    for section, specs in SCHEMA.items():
        if sections is not None and section not in sections:
            continue
        values = raw.get(section)
        if not isinstance(values, dict):
            raise ParamsError(f"section {section!r} is missing or not a mapping")
        for key in values:
            if key not in specs:
                raise ParamsError(f"unknown key {section}.{key}; known: {', '.join(specs)}")
        checked = {}
        for key, spec in specs.items():
            if key not in values:
                raise ParamsError(f"missing key {section}.{key} ({spec.describe()})")
            checked[key] = spec.check(f"{section}.{key}", values[key])
        out[section] = checked
    _cross_checks(out)
    return apply_preset(out)


#: every key's default: what params.yaml ships with (tests/test_params.py keeps them equal)
DEFAULTS: dict[str, dict[str, Any]] = {
    section: {key: spec.check(f"{section}.{key}", spec.default) for key, spec in specs.items()}
    for section, specs in SCHEMA.items()
}


#: the representations preprocess.key c does not apply to (Representation.keyed False)
UNKEYED = ("drums", "groove", "melody")


def _cross_checks(p: dict[str, dict[str, Any]]) -> None:
    if "train" in p and p["train"]["batch_size"] < p["train"]["nproc"]:
        b, n = p["train"]["batch_size"], p["train"]["nproc"]
        raise ParamsError(f"train.batch_size = {b} (the global batch) is below train.nproc = {n}")
    if "split" in p and p["split"]["val_ratio"] + p["split"]["test_ratio"] >= 1:
        s = p["split"]
        raise ParamsError(f"split.val_ratio + split.test_ratio = {s['val_ratio'] + s['test_ratio']:g}: must be < 1")
    if "generate" in p and "mid" not in p["generate"]["formats"]:
        raise ParamsError(f"generate.formats = {p['generate']['formats']!r}: must include 'mid' (evaluate reads it)")
    if "preprocess" in p and p["preprocess"]["key"] == "c" and p["preprocess"]["representation"] in UNKEYED:
        pp = p["preprocess"]
        raise ParamsError(
            f"preprocess.key = {pp['key']!r}: the {pp['representation']} grids cannot be moved to another key "
            "(it applies to events, voices, notes_chords and pitch_duration); use preprocess.key: keep"
        )
    if "preprocess" in p and p["preprocess"]["pitch_min"] > p["preprocess"]["pitch_max"]:
        pp = p["preprocess"]
        raise ParamsError(f"preprocess.pitch_min = {pp['pitch_min']} is above preprocess.pitch_max = {pp['pitch_max']}")


#: model.preset -> the model and train values it stands for. Magenta's groovae_4bar
#: (music_vae/configs.py): a 1 x 512 bidirectional encoder, a flat 2 x 256 decoder, z 256, the
#: 27 values per step fed as they are (emb_dim 0), dropout keep 0.3, squared velocity errors,
#: batch 512, beta held at 0.2, 48 free bits, Adam at 1e-3 decaying x 0.9999 per step to 1e-5,
#: gradients clipped at 1.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "groovae_4bar": {
        "model": {
            "decoder": "flat",
            "z_dim": 256,
            "enc_hidden": 512,
            "enc_layers": 1,
            "dec_layers": 2,
            "dec_hidden": 256,
            "emb_dim": 0,
            "dropout": 0.7,
            "velocity_loss": "squared",
        },
        "train": {
            "batch_size": 512,
            "max_beta": 0.2,
            "beta_rate": 0.0,
            "free_bits": 48.0,
            "lr": 0.001,
            "schedule": "exponential",
            "warmup_steps": 0,
            "grad_clip": 1.0,
            "weight_decay": 0.0,
        },
    },
    # model.kind transformer, sized for a laptop CPU: the default sizes, trained on 32 windows of
    # 128 (measured on the chorales in 120 s of one core: val 0.71 against 2.28 with 8 x 512)
    "transformer_cpu": {
        "model": {"kind": "transformer", "layers": 4, "heads": 4, "d_model": 128, "d_ff": 512, "context": 512},
        "train": {"seq_len": 128, "batch_size": 32},
    },
    # one GPU and a large corpus (Lakh, MAESTRO): ~25 M parameters, 1024 tokens of context
    "transformer_gpu": {
        "model": {
            "kind": "transformer",
            "layers": 8,
            "heads": 8,
            "d_model": 512,
            "d_ff": 2048,
            "context": 1024,
            "dropout": 0.1,
        },
        "train": {"seq_len": 1024, "batch_size": 64, "lr": 0.0006, "warmup_steps": 1000},
    },
}


def apply_preset(p: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """params with model.preset's values filled in: every key of the preset that is still at its
    default takes the preset's value; a key set to anything else keeps it (so
    `-S model.preset=groovae_4bar -S train.batch_size=64` runs the preset with smaller batches)."""
    name = p.get("model", {}).get("preset", "none")
    if name == "none":
        return p
    out = {section: dict(values) for section, values in p.items()}
    for section, values in PRESETS[name].items():
        if section not in out:
            continue
        for key, value in values.items():
            if out[section][key] == DEFAULTS[section][key]:
                out[section][key] = value
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping: plain YAML loading keeps
    the last one silently, so a stage run outside DVC would use a value nobody meant."""

    def get_single_data(self):
        node = self.get_single_node()
        if node is None:
            return None
        _check_unique_keys(node, ())
        return self.construct_document(node)


def _check_unique_keys(node: yaml.Node, path: tuple[str, ...]) -> None:
    """Raise ParamsError naming the dotted key and both lines when a mapping repeats a key."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                line = key_node.start_mark.line + 1
                if key in seen:
                    name = ".".join((*path, key_node.value))
                    raise ParamsError(f"{name} is given twice (lines {seen[key]} and {line}); keep one")
                seen[key] = line
                _check_unique_keys(value_node, (*path, key_node.value))
            else:
                _check_unique_keys(value_node, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_unique_keys(item, (*path, str(i)))


#: data.source prefixes of corpora that are scores (their files' beats are the music's beats)
SCORE_SOURCES = ("music21:", "builtin:")


def resolve_time_unit(preprocess: dict[str, Any], source: str) -> dict[str, Any]:
    """preprocess with time_unit "auto" made concrete: "beats" for the music21 and built-in
    corpora (scores), "seconds" for a folder (it may hold performances, whose timing is free)."""
    if preprocess.get("time_unit", "auto") != "auto":
        return preprocess
    return {**preprocess, "time_unit": "beats" if source.startswith(SCORE_SOURCES) else "seconds"}


def load_params(path: str | Path = "params.yaml", sections: tuple[str, ...] | None = None) -> dict:
    """Read and validate params.yaml (only `sections` when given); a key given twice is an error."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found (run from the project root)") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc})".replace("\n", " ")) from None
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from None
    return validate(raw, sections)
