"""In-page MIDI players: every piece of the report plays in any browser, with no system packages.

The report page carries html-midi-player's `<midi-player>` and `<midi-visualizer>` web
components (vendored in midigen/report/assets with their licences, see its README.md): each
piece's MIDI file is embedded in the page as a `data:` URL (a browser refuses fetch() of
local files from a file:// page, so a link to midi/*.mid would not load), the player plays it
with Magenta.js's built-in oscillator synthesizer (no SoundFont: nothing is fetched) and the
visualizer draws a piano roll whose notes light up as they sound. FluidSynth's OGG files stay
beside the players where FluidSynth is installed: they sound better.
"""

from __future__ import annotations

import base64
import html
import shutil
from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
#: the scripts, in the order the page loads them (each needs the ones before it)
SCRIPTS = ("tone.js", "magenta-music-core.js", "html-midi-player.min.js")
#: the folder of the report the scripts and their licences are copied to
FOLDER = "player"

CSS = """
midi-player{display:block;width:100%;max-width:520px;margin-top:4px}
midi-player::part(control-panel){border-radius:6px;background:#eef2f6}
midi-visualizer{margin-top:2px;max-width:100%;max-height:150px;overflow:auto;border:1px solid #eee;
border-radius:4px}.pair>.piece{min-width:0}
midi-visualizer svg rect.note{fill:#3b6fb6}midi-visualizer svg rect.note.active{fill:#e04a3f}
.strip midi-player{width:220px}
"""

#: draws each piano roll as soon as its player has read the MIDI (html-midi-player itself gives a
#: visualizer without a src its notes only when playback starts) and keeps the rolls small
SCRIPT = """<script>
(() => {
  const config = {noteHeight: 3, pixelsPerTimeStep: 40};
  for (const player of document.querySelectorAll("midi-player[visualizer]")) {
    const roll = document.querySelector(player.getAttribute("visualizer"));
    if (!roll) continue;
    roll.config = config;
    player.addEventListener("load", () => { roll.noteSequence = player.noteSequence; });
  }
})();
</script>"""


def copy_assets(out_dir: Path) -> Path:
    """The scripts and their licences copied to out_dir/player (emptied first); the folder."""
    dest = out_dir / FOLDER
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(ASSETS, dest)
    return dest


def head_html() -> str:
    """The script tags of the page's <head>."""
    return "".join(f'<script src="{FOLDER}/{name}"></script>' for name in SCRIPTS)


def data_url(midi: Path) -> str:
    """A MIDI file as a data: URL."""
    return "data:audio/midi;base64," + base64.b64encode(midi.read_bytes()).decode("ascii")


def player_html(midi: Path, key: str, roll: bool = True) -> str:
    """A <midi-player> of the file (and a <midi-visualizer> piano roll under it when roll);
    key: the piece's name, unique on the page."""
    attrs = f'src="{data_url(midi)}" data-key="{html.escape(key, quote=True)}"'
    if not roll:
        return f"<midi-player {attrs}></midi-player>"
    ident = "roll-" + key.encode("utf-8").hex()  # any key makes a valid, unique CSS id
    return (
        f'<midi-player {attrs} visualizer="#{ident}"></midi-player>'
        f'<midi-visualizer type="piano-roll" id="{ident}"></midi-visualizer>'
    )
