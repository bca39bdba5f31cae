"""Render MIDI to small OGG files with FluidSynth and a General MIDI SoundFont, when present.

The pipeline never needs audio, so a missing synthesizer is not an error: `find_synth` says why
there is none and the report shows that reason instead of players. The chain per piece is
notes (cut to `max_seconds`) -> temporary MIDI -> `fluidsynth` WAV (22.05 kHz) -> peak
normalisation -> `oggenc` (Vorbis, quality 0, mono): about 3 kB per second of music.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from midigen.data.midi_io import write_midi
from midigen.errors import ParamsError

#: Where Debian (fluid-soundfont-gm, timgm6mb-soundfont), Fedora and Arch put GM SoundFonts;
#: the first that exists wins, so the better (and larger) FluidR3 set is preferred.
SOUNDFONT_PATHS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
SAMPLE_RATE = 22050
#: FluidSynth's gain stays low so dense pieces do not clip inside the synth; every file is then
#: normalised to this peak (about -1 dBFS), so all players play at a similar loudness.
SYNTH_GAIN = 0.4
PEAK = 0.89
#: seconds a note may ring after the cut, so the last chord fades instead of stopping dead
RELEASE_S = 1.0


@dataclass(frozen=True)
class Synth:
    """The programs and SoundFont that turn MIDI into OGG."""

    fluidsynth: str
    oggenc: str
    soundfont: str


def find_synth(
    soundfont: str = "", search_path: str | None = None, ogg: bool = True, key: str = "report.soundfont"
) -> tuple[Synth | None, str]:
    """(synth, "") when audio can be rendered, else (None, the reason in one sentence).

    soundfont: a .sf2 path (a missing file is a ParamsError naming `key`: the user named it), or
    "" to search SOUNDFONT_PATHS. search_path: the PATH to look for the programs on (default:
    $PATH). ogg: whether oggenc is needed too (not for WAV files; then Synth.oggenc may be "").
    """
    if soundfont:
        if not Path(soundfont).is_file():
            raise ParamsError(f"{key} = {soundfont!r}: no such file (use '' to search the usual places)")
        sf2 = soundfont
    else:
        sf2 = next((p for p in SOUNDFONT_PATHS if Path(p).is_file()), "")
    fluidsynth = shutil.which("fluidsynth", path=search_path)
    oggenc = shutil.which("oggenc", path=search_path)
    if fluidsynth is None:
        return None, "FluidSynth is not installed (Debian: apt-get install fluidsynth timgm6mb-soundfont vorbis-tools)"
    if ogg and oggenc is None:
        return None, "oggenc is not installed (Debian: apt-get install vorbis-tools)"
    if not sf2:
        return None, (
            f"no General MIDI SoundFont found (Debian: apt-get install timgm6mb-soundfont, or set {key} to a .sf2 file)"
        )
    return Synth(fluidsynth, oggenc or "", sf2), ""


def cut_notes(notes: np.ndarray, max_seconds: float) -> np.ndarray:
    """The notes that start before max_seconds, each ending by max_seconds + RELEASE_S."""
    kept = notes[notes["start_s"] < max_seconds].copy()
    kept["end_s"] = np.minimum(kept["end_s"], max_seconds + RELEASE_S)
    return kept


def normalise_wav(path: Path, peak: float = PEAK) -> None:
    """Scale a 16-bit WAV in place so its loudest sample is at `peak` (silence stays silent)."""
    with wave.open(str(path), "rb") as w:
        params = w.getparams()
        samples = np.frombuffer(w.readframes(params.nframes), dtype="<i2")
    top = int(np.abs(samples.astype(np.int32)).max()) if samples.size else 0
    if top == 0:
        return
    scaled = np.clip(np.rint(samples * (peak * 32767 / top)), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setparams(params)
        w.writeframes(scaled.tobytes())


def _run(cmd: list[str], timeout_s: float, poll: Callable[[], None] | None = None) -> str:
    """Run a program; "" on success, else a one-line reason. poll: called about 5 times a second
    while it runs (a progress bar)."""
    try:
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    stdout, stderr = proc.communicate(timeout=0.2 if poll else timeout_s)
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= deadline:
                        proc.kill()
                        proc.communicate()
                        return f"{Path(cmd[0]).name} took longer than {timeout_s:g} s"
                    if poll:
                        poll()
    except OSError as exc:
        return f"{Path(cmd[0]).name} cannot run ({exc.strerror or exc})"
    if proc.returncode != 0:
        lines = (stderr or stdout).strip().splitlines()
        return f"{Path(cmd[0]).name} failed ({proc.returncode}): {lines[-1] if lines else 'no message'}"
    return ""


def synthesize_wav(
    synth: Synth, notes: np.ndarray, wav: Path, on_progress: Callable[[float], None] | None = None
) -> str:
    """Notes -> a peak-normalised 16-bit WAV file at SAMPLE_RATE (stereo, as FluidSynth writes
    it); "" on success, else why not. on_progress(seconds of audio written so far)."""
    with tempfile.TemporaryDirectory(prefix="midigen_audio_") as tmp:
        mid = Path(tmp) / "cut.mid"
        write_midi(notes, mid)

        def poll() -> None:  # FluidSynth writes the WAV as it goes: 4 bytes per stereo frame
            if wav.is_file():
                on_progress(max(0, wav.stat().st_size - 44) / (4 * SAMPLE_RATE))

        # -n no MIDI input, -i no shell, -q quiet; one synth thread keeps the output byte-identical
        why = _run(
            [synth.fluidsynth, "-n", "-i", "-q", "-g", str(SYNTH_GAIN), "-r", str(SAMPLE_RATE),
             "-o", "synth.cpu-cores=1", "-F", str(wav), synth.soundfont, str(mid)],
            timeout_s=max(120.0, float(notes["end_s"].max()) + 60),
            poll=poll if on_progress else None,
        )  # fmt: skip
    if why:
        return why
    if not wav.is_file() or wav.stat().st_size <= 44:
        return "fluidsynth wrote no audio"
    normalise_wav(wav)
    return ""


def render_ogg(synth: Synth, notes: np.ndarray, out_path: str | Path, max_seconds: float) -> str:
    """Render notes (cut to max_seconds) to an OGG file; "" on success, else why not."""
    notes = cut_notes(notes, max_seconds)
    if notes.shape[0] == 0:
        return "no notes to play"
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="midigen_audio_") as tmp:
        wav = Path(tmp) / "cut.wav"
        why = synthesize_wav(synth, notes, wav)
        if why:
            return why
        tmp_ogg = Path(tmp) / "out.ogg"
        why = _encode_ogg(synth, wav, tmp_ogg)
        if why:
            return why
        shutil.move(tmp_ogg, out_path)
    return ""


def _encode_ogg(synth: Synth, wav: Path, ogg: Path) -> str:
    # a fixed stream serial number keeps the file byte-identical from run to run
    return _run([synth.oggenc, "-Q", "-q", "0", "--downmix", "--serial", "1", "-o", str(ogg), str(wav)], 120)


#: the file types render_file writes, by suffix
RENDER_SUFFIXES = (".ogg", ".wav")


def render_file(
    synth: Synth,
    notes: np.ndarray,
    out_path: str | Path,
    max_seconds: float | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> str:
    """Render notes (all of them, or cut to max_seconds) to out_path, an .ogg (Vorbis, mono, as
    the report's) or a .wav (16-bit stereo) file by its suffix; "" on success, else why not.
    on_progress(seconds of audio rendered so far)."""
    out_path = Path(out_path)
    if out_path.suffix.lower() not in RENDER_SUFFIXES:
        raise ParamsError(f"--out {out_path}: give an .ogg or a .wav file to write")
    if max_seconds is not None:
        notes = cut_notes(notes, max_seconds)
    if notes.shape[0] == 0:
        return "no notes to play"
    with tempfile.TemporaryDirectory(prefix="midigen_render_", dir=_existing_parent(out_path)) as tmp:
        wav = Path(tmp) / "render.wav"
        why = synthesize_wav(synth, notes, wav, on_progress)
        if why:
            return why
        done = wav
        if out_path.suffix.lower() == ".ogg":
            done = Path(tmp) / "render.ogg"
            why = _encode_ogg(synth, wav, done)
            if why:
                return why
        out_path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(done, out_path)  # a crash never leaves half a file behind
    return ""


def _existing_parent(path: Path) -> Path:
    """The nearest folder above path that exists (temporary files go there: same file system)."""
    parent = path.parent
    while not parent.is_dir() and parent != parent.parent:
        parent = parent.parent
    return parent
