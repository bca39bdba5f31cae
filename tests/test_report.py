"""The report stage: a tiny run's reports/index.html opens in headless Chromium with every image
loaded and every audio player pointing at a playable OGG; without a synthesizer the page says
so and shows everything else; drum pieces are grids and interpolations a strip.

The tiny run is the real stage scripts, run one after the other in a temporary folder (what
`dvc repro` would run, without DVC), plus four drum interpolation steps written the way a
MusicVAE generate stage writes them.
"""

from __future__ import annotations

import html
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from browser import CHROMIUM, FLAGS
from conftest import PROJECT_ROOT, subprocess_env, write_pretty_midi
from test_interruption import tiny_params_yaml, write_corpus

from midigen.data.midi_io import read_notes, write_midi
from midigen.errors import ParamsError
from midigen.params import load_params
from midigen.report.audio import RELEASE_S, SAMPLE_RATE, find_synth, render_ogg
from midigen.report.page import Inputs, build_report, changed_params, interpolation_groups
from midigen.training.loop import training_summary

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (Debian: apt-get install chromium)")


def stage(name: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(PROJECT_ROOT / "stages" / f"{name}.py")]
    return subprocess.run(cmd, cwd=cwd, env=env or run_env(), capture_output=True, text=True, timeout=300)


def run_env() -> dict[str, str]:
    env = subprocess_env()
    env.pop("MLFLOW_TRACKING_URI", None)  # the workspace's own mlflow.db
    env.pop("DVC_ROOT", None)
    env["OMP_NUM_THREADS"] = "1"
    return env


def write_drum_interpolation(folder: Path, steps: int = 4) -> None:
    """interp_00..: a 2-bar beat that gains hits step by step, as drum-grid MIDI files."""
    from midigen.representations import OutputContext
    from midigen.representations.grid import DrumGrid

    rep = DrumGrid(4)
    ids = np.zeros(32, dtype=np.int64)
    ids[::4] |= 1  # kick on every beat
    ids[4::8] |= 2  # snare on 2 and 4
    ids[::2] |= 4  # closed hi-hat on 8ths
    rng = np.random.default_rng(3)
    for i in range(steps):
        ids[rng.integers(0, 32, 3)] |= 1 << rng.integers(3, 9, 3)
        write_midi(rep.decode(ids, OutputContext(tempo_bpm=120.0)), folder / f"interp_{i:02d}.mid")


def run_stage_in_process(name: str, root: Path) -> None:
    """Run stages/<name>.py's main() with root as the working directory, in this process: one
    torch import for all stages instead of one per stage (seconds each on a busy machine)."""
    import torch

    threads, cwd = torch.get_num_threads(), Path.cwd()
    os.chdir(root)
    try:
        runpy.run_path(str(PROJECT_ROOT / "stages" / f"{name}.py"), run_name=f"stage_{name}")["main"]()
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)  # train.threads must not leak into later tests


def write_training_outputs(root: Path, trained_run) -> None:
    """models/best.pt, metrics/train.json and metrics/train_curve.csv as the train stage writes
    them, from the session's tiny training run (conftest.trained_run: same representation and
    tiny model as the workspace's params). The train stage itself would add an MLflow store and
    ~15 s of imports on a busy machine, and it is tested elsewhere."""
    from midigen.jsonio import write_json
    from midigen.table import write_rows

    out_dir, result, _ = trained_run
    (root / "models").mkdir()
    shutil.copy(out_dir / "best.pt", root / "models/best.pt")
    summary = training_summary(result)
    write_json(root / "metrics/train.json", summary)
    columns = ["epoch", "train_loss", "val_loss", "train_perplexity", "val_perplexity"]
    write_rows(root / "metrics/train_curve.csv", result.history.rows, columns)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, chorale_paths, trained_run) -> Path:
    """A folder where the pipeline has run on a tiny corpus with a tiny model (split ratios
    raised so that 4 of the 9 files are test pieces), plus a drum interpolation."""
    root = tmp_path_factory.mktemp("report_run")
    # events tokens, as the session's tiny training run (the default representation is voices)
    tiny_params_yaml(
        root,
        preprocess={"representation": "events"},
        generate={"num_files": 2, "max_steps": 120},
        split={"test_ratio": 0.3, "val_ratio": 0.15},
    )
    write_corpus(root / "data/external/tiny", chorale_paths)
    (root / "metrics").mkdir()
    for name in ("ingest", "preprocess", "split"):
        run_stage_in_process(name, root)
    write_training_outputs(root, trained_run)
    for name in ("generate", "evaluate"):
        run_stage_in_process(name, root)
    write_drum_interpolation(root / "outputs/generated")
    return root


def fresh_copy(workspace: Path, dest: Path, **report) -> Path:
    """A copy of the workspace with report params overridden (the module's runs stay untouched)."""
    shutil.copytree(workspace, dest, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", "reports"))
    params = yaml.safe_load((dest / "params.yaml").read_text(encoding="utf-8"))
    params["report"].update(report)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return dest


CHECK_SCRIPT = """
<script>
window.addEventListener("load", async () => {
  const audios = [...document.querySelectorAll("audio")];
  await Promise.all(audios.map(a => a.readyState >= 1 ? null : new Promise(done => {
    a.addEventListener("loadedmetadata", done); a.addEventListener("error", done); setTimeout(done, 10000);
  })));
  const out = {
    images: [...document.images].map(i => ({src: i.getAttribute("src"), width: i.naturalWidth})),
    audio: audios.map(a => ({src: a.getAttribute("src"), duration: a.duration, error: a.error && a.error.code})),
  };
  const pre = document.createElement("pre");
  pre.id = "midigen-check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def chromium(args: list[str], profile: Path) -> str:
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.stdout


def check_in_browser(reports: Path, tmp_path: Path) -> dict:
    """Open a copy of index.html (same folder, so the same relative links) with a script that
    records every image's natural width and every audio element's decoded duration."""
    page = (reports / "index.html").read_text(encoding="utf-8")
    check = reports / "_check.html"
    check.write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8")
    try:
        dom = chromium(["--virtual-time-budget=15000", "--dump-dom", check.as_uri()], tmp_path / "profile")
    finally:
        check.unlink()
    match = re.search(r'<pre id="midigen-check">(.*?)</pre>', dom, re.S)
    assert match, f"the check script did not run; DOM starts:\n{dom[:2000]}"
    return json.loads(html.unescape(match.group(1)))


def screenshot(reports: Path, name: str, tmp_path: Path) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / name
    chromium(["--window-size=1100,6000", f"--screenshot={out}", (reports / "index.html").as_uri()], tmp_path / "shot")
    assert out.is_file() and out.stat().st_size > 10_000, out
    print(f"screenshot of the report: {out}")
    return out


# -- the report of a tiny run, with audio -----------------------------------------------------


@pytest.fixture(scope="module")
def with_audio(workspace) -> tuple[Path, subprocess.CompletedProcess]:
    proc = stage("report", workspace)
    assert proc.returncode == 0, f"stage report failed:\n{proc.stdout}\n{proc.stderr}"
    return workspace / "reports", proc


def test_the_report_shows_curves_tables_and_a_picture_of_every_piece(with_audio, workspace):
    reports, proc = with_audio
    page = (reports / "index.html").read_text(encoding="utf-8")
    for heading in ("Summary", "Params that differ from the defaults", "Training curves", "Evaluation", "Set distance"):
        assert heading in page, heading
    # the tiny run's params differ from the defaults: a few of them must be listed
    assert "<code>train.epochs</code>" in page and "<code>model.hidden_dim</code>" in page
    assert {p.name for p in (reports / "img").glob("curve_*.png")} == {"curve_loss.png", "curve_perplexity.png"}
    generated = sorted(p.stem for p in (workspace / "outputs/generated").glob("sample_*.mid"))
    assert generated == ["sample_00", "sample_01"]
    for stem in generated:
        assert (reports / "img" / f"{stem}.png").is_file(), stem
        assert f'src="img/{stem}.png"' in page
    refs = sorted((reports / "img").glob("ref_*.png"))
    assert len(refs) == 3, refs
    assert "Interpolations (1)" in page and 'src="img/interp_strip.png"' in page
    # links are relative: the folder works wherever it is copied
    assert "/tmp" not in page and str(workspace) not in page
    assert "report: 9 pieces" in proc.stdout, proc.stdout


@needs_chromium
def test_every_image_loads_and_every_player_plays_an_ogg_in_chromium(with_audio, tmp_path):
    reports, proc = with_audio
    if find_synth()[0] is None:
        pytest.skip(f"no synthesizer here ({find_synth()[1]}); CI installs one")
    result = check_in_browser(reports, tmp_path)
    images, audio = result["images"], result["audio"]
    assert len(images) == 2 + 2 + 1 + 3, images  # curves, samples, interpolation strip, references
    assert all(i["width"] > 0 for i in images), images
    # 2 samples + 4 interpolation steps + 3 references, each decoded by the browser
    assert len(audio) == 9, audio
    for a in audio:
        path = reports / a["src"]
        assert path.suffix == ".ogg" and path.is_file() and path.stat().st_size > 1000, a
        assert a["error"] is None and a["duration"] > 0.5, a
    screenshot(reports, "report.png", tmp_path)


def test_audio_is_vorbis_and_cut_to_max_audio_seconds(chorale_paths, tmp_path):
    synth, why = find_synth()
    if synth is None:
        pytest.skip(f"no synthesizer here ({why}); CI installs one")
    notes = read_notes(chorale_paths[1])
    assert notes["end_s"].max() > 20
    out = tmp_path / "cut.ogg"
    assert render_ogg(synth, notes, out, max_seconds=4.0) == ""
    data = out.read_bytes()
    assert data[:4] == b"OggS" and b"vorbis" in data[:64]
    # the granule position of the last Ogg page is the stream's length in samples
    last = data.rindex(b"OggS")
    seconds = int.from_bytes(data[last + 6 : last + 14], "little") / SAMPLE_RATE
    # the piece lasts over 20 s; FluidSynth lets the last notes ring out a few seconds past the cut
    assert 4.0 < seconds < 4.0 + RELEASE_S + 5.0, seconds
    # compressed: ~3 kB per second, where 16-bit mono WAV at this rate takes 44 kB
    assert len(data) / seconds < 6_000, len(data)


# -- without a synthesizer ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def without_synth(workspace, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The report stage run where neither FluidSynth nor oggenc is on the PATH."""
    root = fresh_copy(workspace, tmp_path_factory.mktemp("no_synth") / "run")
    env = run_env()
    env["PATH"] = str(Path(sys.executable).parent)  # the venv only: no fluidsynth, no oggenc
    proc = stage("report", root, env)
    assert proc.returncode == 0, proc.stderr
    return root / "reports", proc


def test_without_fluidsynth_the_page_says_so_and_still_shows_everything_else(without_synth, tmp_path):
    reports, proc = without_synth
    assert "no audio (FluidSynth is not installed" in proc.stdout, proc.stdout
    page = (reports / "index.html").read_text(encoding="utf-8")
    assert "No audio: FluidSynth is not installed" in page
    assert "<audio" not in page and not list((reports / "audio").iterdir())
    assert len(list((reports / "img").glob("*.png"))) == 2 + 2 + 1 + 3
    if CHROMIUM is not None:
        result = check_in_browser(reports, tmp_path)
        assert len(result["images"]) == 8 and all(i["width"] > 0 for i in result["images"]), result


#: each <midi-player>'s state once it has read its MIDI (or failed to): its piece, notes, error
PLAYERS_JS = """(() => {
  const players = [...document.querySelectorAll("midi-player")];
  const state = players.map(p => {
    const panel = p.shadowRoot && p.shadowRoot.querySelector(".controls");
    return {key: p.dataset.key, notes: p.noteSequence ? p.noteSequence.notes.length : null,
            drums: p.noteSequence ? p.noteSequence.notes.filter(n => n.isDrum).length : null,
            loaded: !!panel && !panel.classList.contains("frozen"),
            error: !!panel && panel.classList.contains("error") ? panel.getAttribute("title") : null,
            roll: p.getAttribute("visualizer")};
  });
  return players.length && state.every(s => s.loaded || s.error) ? state : null;
})()"""

#: start one player (by its piece) and report, after `ms` milliseconds of playing, whether its
#: start event came, how far it got and how many notes of its piano roll lit up on the way
PLAY_JS = """(async (key, ms) => {
  const p = document.querySelector(`midi-player[data-key="${key}"]`);
  const roll = p.getAttribute("visualizer") && document.querySelector(p.getAttribute("visualizer"));
  let started = false, lit = 0;
  p.addEventListener("start", () => { started = true; }, {once: true});
  p.addEventListener("note", () => { lit = Math.max(lit, roll ? roll.querySelectorAll("rect.active").length : 0); });
  p.start();
  await new Promise(done => setTimeout(done, ms));
  const out = {started, playing: p.playing, time: p.currentTime, lit,
               drawn: roll ? roll.querySelectorAll("rect.note").length : null};
  return out;
})"""


@needs_chromium
def test_without_fluidsynth_every_piece_plays_in_the_page_from_file(without_synth, tmp_path):
    """The page opened from disk in headless Chromium: no request fails, every player reads
    the notes of its piece's MIDI file from the page itself, and a generated piece, a held-out
    piece and a drum interpolation step play with the built-in synthesizer (their start event
    comes, their time advances, their piano roll lights up)."""
    from browser import Browser

    from midigen.report import player as in_page

    reports, _ = without_synth
    for name in in_page.SCRIPTS:
        assert (reports / "player" / name).is_file(), name
    licences = {p.name for p in (reports / "player/licenses").iterdir()}
    assert {"html-midi-player.LICENSE", "magenta-music.LICENSE", "tone.LICENSE.md"} <= licences, licences
    expected = {}
    for midi in (reports / "midi").glob("*.mid"):
        notes = read_notes(midi)
        expected[midi.stem] = (int(notes.shape[0]), int(notes["is_drum"].sum()))
    with Browser(tmp_path / "profile", height=1400) as browser:
        browser.open((reports / "index.html").as_uri())
        players = browser.wait_for(PLAYERS_JS, timeout_s=30)
        assert sorted(p["key"] for p in players) == sorted(expected), players
        for p in players:
            assert p["error"] is None and p["loaded"], p
            assert (p["notes"], p["drums"]) == expected[p["key"]], p
        # every piece with a picture has its piano roll; interpolation steps are in their strip
        assert sum(p["roll"] is not None for p in players) == 2 + 3, players
        ref = min(k for k in expected if k.startswith("ref_"))
        for key in (ref, "interp_01", "sample_00"):  # the last one is still playing in the screenshot
            state = browser.evaluate(f"{PLAY_JS}({json.dumps(key)}, 1500)")
            assert state["started"] and state["playing"], (key, state)
            assert state["time"] > 0.2, (key, state)
            if key != "interp_01":
                assert state["drawn"] == expected[key][0] and state["lit"] >= 1, (key, state)
        shot = browser.screenshot(ARTIFACTS / "report_players.png")
        assert browser.failed_requests() == [], browser.failed_requests()
        assert browser.errors() == [], browser.errors()
    assert shot.stat().st_size > 10_000
    print(f"screenshot of the report's players: {shot}")


def test_audio_off_skips_the_synthesizer(workspace, tmp_path):
    # the library function on the workspace's files, writing elsewhere
    params = load_params(workspace / "params.yaml")
    params["report"]["audio"] = False
    inputs = Inputs(workspace / "metrics", workspace / "outputs/generated", workspace / "data/tokens",
                    workspace / "data/split.csv")  # fmt: skip
    result = build_report(tmp_path / "reports", params, inputs, workers=1)
    assert result.audio_files == 0 and result.audio_note == "audio is off (report.audio: false)"
    page = result.index.read_text(encoding="utf-8")
    assert "No audio: audio is off (report.audio: false)" in page and "<audio" not in page
    assert "<code>report.audio</code>" in page  # listed among the params that differ
    assert len(list((tmp_path / "reports/img").glob("*.png"))) == 2 + 2 + 1 + 3


def test_a_soundfont_param_naming_a_missing_file_is_one_clear_error(workspace, tmp_path):
    root = fresh_copy(workspace, tmp_path / "run", soundfont=str(tmp_path / "missing.sf2"))
    proc = stage("report", root)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: report.soundfont = '{tmp_path / 'missing.sf2'}': no such file (use '' to search the usual places)"
    ], proc.stderr


def test_find_synth_names_the_missing_program(tmp_path):
    synth, why = find_synth("", search_path=str(tmp_path))
    assert synth is None and why.startswith("FluidSynth is not installed")
    with pytest.raises(ParamsError, match="report.soundfont"):
        find_synth(str(tmp_path / "nope.sf2"))


# -- params and defaults --------------------------------------------------------------------------


def test_changed_params_compares_numbers_by_value_and_flags_keys_without_default():
    defaults = {"train": {"lr": 0.003, "epochs": 20, "max_audio": 30.0}}
    params = {"train": {"lr": 0.003, "epochs": 5, "max_audio": 30}, "new": {"x": 1}}
    assert changed_params(params, defaults) == [("train.epochs", 5, 20), ("new.x", 1, None)]


def test_interpolation_files_are_grouped_by_name_without_the_step_number():
    names = ["interp_00.mid", "interp_01.mid", "interp_a_00.mid", "interp_a_01.mid", "interp_a_02.mid"]
    groups = interpolation_groups([Path(n) for n in reversed(names)])
    assert {k: [p.name for p in v] for k, v in groups.items()} == {
        "interp": ["interp_00.mid", "interp_01.mid"],
        "interp_a": ["interp_a_00.mid", "interp_a_01.mid", "interp_a_02.mid"],
    }


def test_a_generated_piece_with_a_hanging_note_or_off_grid_onsets_is_flagged(tmp_path):
    """What the page writes above a generated piece's roll, from the piece's own MIDI file."""
    from midigen.report.page import Flags, PieceJob, _flag_lines, _render_piece

    beat = 60 / 120  # write_pretty_midi's files are at 120 bpm
    clean = write_pretty_midi(tmp_path / "clean.mid", [(60 + i % 5, i * beat, (i + 1) * beat) for i in range(16)])
    hanging = write_pretty_midi(tmp_path / "hanging.mid", [(48, 0.0, 20 * beat), (60, 0.0, beat)])
    # onsets every 0.05 s: most fall between the sixteenths (0.125 s apart)
    off_grid = write_pretty_midi(tmp_path / "off.mid", [(60 + i % 3, i * 0.05, i * 0.05 + 0.04) for i in range(40)])
    chord = write_pretty_midi(tmp_path / "chord.mid", [(p, 0.0, 2 * beat) for p in (48, 55, 64, 72)])
    flags = Flags(longest_beats=4.0, grid_share=0.98, shortest_beats=8.0)

    def lines(path):
        return _flag_lines(_render_piece(PieceJob(path.stem, path, None, None, None, 30.0)), flags)

    assert lines(clean) == []
    (hang,) = lines(hanging)
    assert hang.startswith("hanging notes: one lasts 20.0 beats") and "(4.0)" in hang
    off, short = lines(off_grid)
    assert off.startswith("off the grid: ") and "% of its onsets" in off
    assert short.startswith("too short: 4.0 beats") and "(8.0)" in short
    (lone,) = lines(chord)
    assert lone == "too short: 2.0 beats, shorter than any piece of the test set (8.0)"
