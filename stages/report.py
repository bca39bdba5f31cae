"""Stage report: metrics, samples and held-out pieces -> reports/index.html with piano rolls,
curves, in-page MIDI players and audio (reports/img, reports/audio, reports/midi, reports/player)."""

import sys
from pathlib import Path

from midigen.errors import run_main
from midigen.params import load_params
from midigen.report.page import build_report

OUT = Path("reports")


def main() -> None:
    params = load_params()
    r = build_report(OUT, params)
    audio = f"{r.audio_files} audio files" if not r.audio_note else f"no audio ({r.audio_note})"
    print(f"report: {r.pieces} pieces, {audio}, {r.bytes / 1e6:.1f} MB in {r.seconds:.1f} s -> {r.index}")


if __name__ == "__main__":
    sys.exit(run_main(main))
