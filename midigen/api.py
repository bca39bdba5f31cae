"""The Python API: what `python -m midigen sample|harmonize|interpolate|reconstruct|humanize|tap2drum`
does, from a notebook or a script, without files in between.

    import midigen

    model = midigen.load("models/best.pt")         # any checkpoint the train stage wrote
    pieces = model.sample(4, temperature=0.9, seed=1)
    pieces[0].write("piece.mid")                   # or .to_pretty_midi(), .notes, .tokens

Every control takes the CLI's values and is checked the same way (a bad one raises
midigen.errors.ParamsError saying which and why); one left out takes the generate params'
default (the schema's, which params.yaml ships, or those of a params file given to `load`).
Sampling runs the same code as the CLI and the generate stage (midigen.generation), so a seed
gives the same notes here as there.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from midigen.errors import ParamsError
from midigen.params import DEFAULTS, SCHEMA, load_params
from midigen.representations import OutputContext, Representation
from midigen.training import checkpoint

__all__ = ["Model", "Piece", "load"]


@dataclass
class Piece:
    """One generated piece: its token ids and how they become notes and MIDI."""

    ids: np.ndarray = field(repr=False)
    rep: Representation = field(repr=False)
    #: how the notes are played and written (tempo, key, program)
    context: OutputContext = field(default_factory=OutputContext)

    def __repr__(self) -> str:
        return f"Piece({len(self.ids)} ids, {len(self.notes)} notes)"

    @property
    def tokens(self) -> list[str]:
        """The ids as tokens (what `midigen sample` writes to its .txt files)."""
        return self.rep.ids_to_tokens(self.ids)

    @property
    def notes(self) -> np.ndarray:
        """The notes (midigen.data.midi_io.NOTE_DTYPE rows: start_s, end_s in seconds, pitch,
        velocity, program, is_drum), as the MIDI file holds them."""
        return self.rep.decode(self.ids, self.context)

    @property
    def duration_s(self) -> float:
        """How long the piece lasts in seconds: a grid window's whole length (rests at its end
        included, as its MIDI file keeps them), else until its last note ends."""
        from midigen.representations.grid import DEFAULT_TEMPO_BPM, GridRepresentation

        if isinstance(self.rep, GridRepresentation):
            steps = len(self.ids) // self.rep.cells_per_step
            return steps * self.rep.step_s(self.context.tempo_bpm or DEFAULT_TEMPO_BPM)
        notes = self.notes
        return float(notes["end_s"].max()) if len(notes) else 0.0

    def write(self, path: str | Path) -> Path:
        """Write the piece as a MIDI file (as the generate stage writes it); returns the path."""
        path = Path(path)
        self.rep.write_midi(self.ids, path, self.context)
        return path

    def write_musicxml(self, path: str | Path) -> Path:
        """Write the piece as a MusicXML score (as `midigen export --musicxml` writes its MIDI
        file: key, meter, note values, one part per voice or track); returns the path. Only for
        pieces on a beat grid (not events timed in seconds)."""
        from midigen.export.musicxml import require_beat_grid, write_musicxml

        require_beat_grid(self.rep, "write_musicxml")
        path = Path(path)
        write_musicxml(self.to_pretty_midi(), path)
        return path

    def midi_bytes(self) -> bytes:
        """The MIDI file `write` would write, as bytes."""
        with tempfile.TemporaryDirectory(prefix="midigen-") as tmp:
            return self.write(Path(tmp) / "piece.mid").read_bytes()

    def to_pretty_midi(self):
        """The piece as a pretty_midi.PrettyMIDI (read back from its MIDI file, so it is exactly
        what a DAW would open)."""
        import io

        import pretty_midi

        return pretty_midi.PrettyMIDI(io.BytesIO(self.midi_bytes()))


def checkpoint_info(ckpt: dict[str, Any]) -> dict[str, Any]:
    """A (validated) checkpoint in brief: family, representation, vocabulary size, epochs, best
    val loss, data fingerprint, the sampling controls it takes, whether it has a latent space
    (and a groove head: humanize, tap2drum) and its attribute vectors."""
    from midigen import models

    family = models.family(ckpt["model"]["kind"])
    history = ckpt.get("history") or []
    losses = [row["val_loss"] for row in history if isinstance(row.get("val_loss"), (int, float))]
    return {
        "family": family.name,
        "representation": ckpt["representation"].get("name"),
        "vocab_size": len(ckpt["vocab"]),
        "epochs": int(ckpt.get("epoch", len(history))),
        "val_loss": round(min(losses), 5) if losses else None,
        "data_fingerprint": ckpt.get("data_fingerprint"),
        "controls": sorted(family.controls),
        "has_latent": family.has_latent,
        "groove": family.has_latent and ckpt["model"].get("head") == "groove",
        "attributes": sorted(ckpt["model"].get("attributes") or {}),
    }


def _checked(key: str, value: Any) -> Any:
    return SCHEMA["generate"][key].check(key, value)


def harmonize_melody(
    loaded: checkpoint.Loaded,
    generate_params: dict[str, Any],
    melody: str | Path,
    voices: int | None = None,
    track: str | None = None,
    tempo: float | None = None,
    where: str = "checkpoint",
) -> tuple[list[np.ndarray], OutputContext]:
    """generate_params["num_files"] harmonizations of the melody in a MIDI file (its top line, or
    its track named `track`) by a voices model: (token id sequences, the context to write them
    with). A model trained in C (preprocess.key c) harmonizes the melody moved to C, and the
    context moves the result back by the same shift, so the soprano is the melody note for note.
    What `midigen harmonize`, Model.harmonize and the studio run."""
    from midigen.data import keys
    from midigen.generation.grammar import GrammarLimits
    from midigen.generation.harmonize import harmonize, read_melody
    from midigen.models.base import request_from

    rep, g = loaded.rep, generate_params
    if rep.name != "voices":
        raise ParamsError(
            f"{where}: harmonize needs a model trained on preprocess.representation = voices "
            f"(this one reads {rep.name})"
        )
    voices = voices if voices is not None else rep.max_voices
    if not 1 <= voices <= rep.max_voices:
        raise ParamsError(f"--voices {voices}: this model writes 1 to {rep.max_voices} voices")
    from midigen.data.midi_io import read_marks
    from midigen.representations.voices import Chorale, meter_rows

    notes, file_tempo = read_melody(melody, rep, track)
    meters = meter_rows(read_marks(melody).meters)  # bar positions follow the melody's bars
    shift = 0
    if keys.of_checkpoint(loaded.ckpt):
        notes, shift = keys.to_c(notes, rep.pitch_min, rep.pitch_max)
    request = request_from(g, limits=GrammarLimits(g["max_note_beats"], voices, g["tempo"]))
    seqs = harmonize(loaded.model, rep, notes, request, loaded.device, meters)
    if shift:  # back by exactly the shift (a lower note out of range folds by octaves), re-encoded
        none = np.zeros(0, dtype=np.int64)
        seqs = [
            rep.encode(Chorale(_moved_back(rep.decode(ids), shift, rep.pitch_min, rep.pitch_max), none, meters))
            for ids in seqs
        ]
    return seqs, OutputContext(tempo or file_tempo, None, g["program"])


def _moved_back(notes: np.ndarray, shift: int, lo: int, hi: int) -> np.ndarray:
    """Harmonized notes moved by exactly -shift (the melody's way back to its key, so the soprano
    is the user's); a note that leaves lo..hi moves by octaves until it is inside."""
    out = notes.copy()
    pitch = out["pitch"].astype(np.int64) - shift
    pitch = np.where(pitch < lo, pitch + 12 * -(-(lo - pitch) // 12), pitch)
    out["pitch"] = np.where(pitch > hi, pitch - 12 * -(-(pitch - hi) // 12), pitch)
    return out


class Model:
    """A loaded checkpoint: `family` (model.kind: "lstm", "musicvae", ...), `representation`
    (its token representation's name), `config` (the model's config as the checkpoint stores
    it), `info` (what it was trained on and how well)."""

    def __init__(self, loaded: checkpoint.Loaded, generate_params: dict[str, Any]):
        self.loaded = loaded
        self.generate_params = generate_params

    @property
    def path(self) -> Path:
        return self.loaded.path

    @property
    def family(self) -> str:
        return self.loaded.family.name

    @property
    def representation(self) -> str:
        return self.loaded.rep.name

    @property
    def rep(self) -> Representation:
        return self.loaded.rep

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.loaded.ckpt["model"])

    @property
    def controls(self) -> frozenset[str]:
        """The sampling controls this family honours (sample refuses the others)."""
        return self.loaded.family.controls

    @property
    def has_latent(self) -> bool:
        """True for MusicVAE/GrooVAE: interpolate and reconstruct work (humanize and tap2drum
        need the groove representation too)."""
        return self.loaded.family.has_latent

    @property
    def attributes(self) -> list[str]:
        """The latent attribute vectors sample(attributes=...) can move along (MusicVAE)."""
        return sorted(getattr(getattr(self.loaded.model, "config", None), "attributes", None) or {})

    @property
    def info(self) -> dict[str, Any]:
        """What checkpoint_info says of this checkpoint."""
        return checkpoint_info(self.loaded.ckpt)

    def __repr__(self) -> str:
        return f"Model({str(self.path)!r}, family={self.family!r}, representation={self.representation!r})"

    # -- token models and MusicVAE alike ---------------------------------------------------------

    def sample(
        self,
        num: int = 1,
        *,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        max_steps: int | None = None,
        seed: int | None = None,
        primer: str | Path | None = None,
        greedy: bool = False,
        constrained: bool | None = None,
        max_voices: int | None = None,
        max_note_beats: float | None = None,
        min_beats: float | None = None,
        attributes: dict[str, float] | None = None,
        tempo: float | None = None,
        key: str | None = None,
        program: int | None = None,
    ) -> list[Piece]:
        """`num` new pieces in one batch, as `midigen sample` writes them.

        temperature, top_k (0 = all), top_p, max_steps (new tokens per piece at most), seed:
        as the generate params; primer: a MIDI file every piece continues; greedy: always the
        most likely token; constrained, max_voices, max_note_beats, min_beats (<EOS> not before
        this many quarter notes): the grammar of the constrained sampler (0 = that limit off);
        attributes: MusicVAE, {"density": 1.5, ...} moves z along the checkpoint's attribute
        vectors; tempo (quarter notes per minute), key, program: how the pieces are written.
        A control the family does not use (top_k for a MusicVAE) is a ParamsError, as in the
        CLI."""
        from midigen.data.keys import of_checkpoint
        from midigen.generation.generate import checked_request, keyed_contexts, sample

        g = self._generate(
            num,
            {
                "temperature": temperature,
                "top_k": top_k,
                "top_p": top_p,
                "max_steps": max_steps,
                "seed": seed,
                "constrained": constrained,
                "max_voices": max_voices,
                "max_note_beats": max_note_beats,
                "min_beats": min_beats,
                "tempo": tempo,
                "key": key,
                "program": program,
            },
        )
        optional = {"max_steps": max_steps, "top_k": top_k, "top_p": top_p, "primer": primer}
        given = [k for k, v in optional.items() if v is not None]
        given += ["greedy"] if greedy else []
        given += ["attribute"] if attributes else []
        pairs = tuple((str(n), float(a)) for n, a in (attributes or {}).items())
        request = checked_request(self.loaded, g, given, _keyword, bool(greedy), primer, pairs)
        seqs = sample(self.loaded, request)
        # a model trained in C: each piece in a key drawn from the training pieces' (as generate)
        contexts = keyed_contexts(
            OutputContext(g["tempo"], g["key"], g["program"]), of_checkpoint(self.loaded.ckpt), len(seqs), g["seed"]
        )
        return [Piece(np.asarray(ids, dtype=np.int64), self.rep, c) for ids, c in zip(seqs, contexts, strict=True)]

    # -- MusicVAE / GrooVAE ------------------------------------------------------------------------

    def interpolate(
        self,
        a: str | Path,
        b: str | Path,
        steps: int = 5,
        *,
        temperature: float = 0.0,
        seed: int = 0,
        bar: int | None = None,
        min_hits: int | None = None,
        tempo: float | None = None,
    ) -> list[Piece]:
        """`steps` windows along the latent path from MIDI file a's window to b's, both ends
        included (temperature 0: the most likely step). The window is the one at `bar` (from 1)
        or each file's first with min_hits hits; tempo defaults to file a's."""
        from midigen.cli import MAX_INTERPOLATION_STEPS
        from midigen.generation.latent import interpolate_windows

        if not isinstance(steps, int) or not 2 <= steps <= MAX_INTERPOLATION_STEPS:
            raise ParamsError(f"steps = {steps!r}: 2 to {MAX_INTERPOLATION_STEPS} (both ends are included)")
        model, temperature = self._latent("interpolate"), self._temperature(temperature)
        wa, wb = (self._window(path, bar, min_hits) for path in (a, b))
        seq = interpolate_windows(model, wa.ids, wb.ids, steps, temperature, _seed(seed), self.loaded.device)
        return self._pieces(seq, self._context(tempo, wa.tempo_bpm))

    def reconstruct(
        self,
        midi: str | Path,
        *,
        temperature: float = 0.0,
        seed: int = 0,
        bar: int | None = None,
        min_hits: int | None = None,
        tempo: float | None = None,
    ) -> tuple[Piece, Piece]:
        """(the file's window, the model's reconstruction of it): encoded to z and decoded."""
        from midigen.generation.latent import reconstruct

        model, temperature = self._latent("reconstruct"), self._temperature(temperature)
        window = self._window(midi, bar, min_hits)
        out = reconstruct(model, window.ids[None], temperature, _seed(seed), self.loaded.device)
        context = self._context(tempo, window.tempo_bpm)
        return Piece(window.ids, self.rep, context), Piece(out[0], self.rep, context)

    def humanize(self, midi: str | Path, *, temperature: float = 0.0, seed: int = 0, tempo: float | None = None):
        """GrooVAE: the whole drum file played (velocities and timing), window after window."""
        return self._file_task("humanize", midi, temperature, seed, tempo)

    def tap2drum(self, midi: str | Path, *, temperature: float = 0.0, seed: int = 0, tempo: float | None = None):
        """GrooVAE: every note of the file (any instrument) as one tapped rhythm, turned into drums."""
        return self._file_task("tap2drum", midi, temperature, seed, tempo)

    def harmonize(
        self,
        melody: str | Path,
        num: int = 1,
        *,
        voices: int | None = None,
        track: str | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        tempo: float | None = None,
    ) -> list[Piece]:
        """voices models: `num` harmonizations of the melody in a MIDI file (its top line, or the
        track named `track`) kept as the soprano, the model writing the voices below (at most
        `voices`); as `midigen harmonize` writes them."""
        g = self._generate(num, {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed})
        seqs, context = harmonize_melody(self.loaded, g, melody, voices, track, tempo, str(self.path))
        return self._pieces(seqs, context)

    # -- helpers ---------------------------------------------------------------------------------

    def _generate(self, num: int, values: dict[str, Any]) -> dict[str, Any]:
        """The generate params of one call: num pieces, the controls given (None: the default), checked."""
        g = dict(self.generate_params)
        g["num_files"] = _checked("num_files", num)
        g.update({name: _checked(name, value) for name, value in values.items() if value is not None})
        return g

    def _pieces(self, seqs, context: OutputContext) -> list[Piece]:
        return [Piece(np.asarray(ids, dtype=np.int64), self.rep, context) for ids in seqs]

    def _latent(self, task: str):
        if not self.has_latent:
            raise ParamsError(
                f"{task}: a {self.family} model has no latent space; this needs a MusicVAE checkpoint "
                "(train with model.kind=musicvae)"
            )
        return self.loaded.model

    @staticmethod
    def _temperature(value: float) -> float:
        from midigen.generation.latent import check_temperature

        return check_temperature(value, "temperature")

    def _context(self, tempo: float | None, file_tempo: float) -> OutputContext:
        return OutputContext(tempo_bpm=_checked("tempo", tempo) if tempo is not None else file_tempo)

    def _window(self, path: str | Path, bar: int | None, min_hits: int | None):
        from midigen.generation.latent import file_window

        if bar is not None and (not isinstance(bar, int) or isinstance(bar, bool) or bar < 1):
            raise ParamsError(f"bar = {bar!r}: bars count from 1")
        hits = self.generate_params["min_hits"] if min_hits is None else _checked("min_hits", min_hits)
        return file_window(path, self.rep, bar, hits)

    def _file_task(self, task: str, midi: str | Path, temperature: float, seed: int, tempo: float | None) -> Piece:
        from midigen.generation import latent

        self._latent(task)
        temperature = self._temperature(temperature)
        transform, tap = latent.FILE_TASKS[task]
        warning = latent.transform_warning(self.loaded, task, transform)
        if warning:
            warnings.warn(warning, stacklevel=3)
        windows, piece = latent.file_grid(midi, self.rep, tap=tap)
        ids = latent.file_task(self.loaded, windows, task, temperature, _seed(seed))
        return Piece(ids, self.rep, self._context(tempo, piece.tempo_bpm))


def _keyword(control: str) -> str:
    """A sampling control as sample()'s keyword spells it."""
    return "attributes" if control == "attribute" else control


def _seed(seed: int) -> int:
    return _checked("seed", seed)


def load(path: str | Path, device: str = "auto", params: str | Path | None = None) -> Model:
    """Load a checkpoint (models/best.pt, or any the train stage wrote) for sampling.

    device: "auto" (a GPU when there is one), "cpu" or "cuda". params: a params.yaml whose
    generate section gives the defaults of every control (default: the schema's defaults, the
    values params.yaml ships with). A missing or broken checkpoint raises
    midigen.errors.DataError naming the file."""
    if device not in ("auto", "cpu", "cuda"):
        raise ParamsError(f"device = {device!r}: expected 'auto', 'cpu' or 'cuda'")
    generate_params = dict(DEFAULTS["generate"])
    if params is not None:
        generate_params = dict(load_params(params, sections=("generate",))["generate"])
    return Model(checkpoint.load_model(path, device), generate_params)
