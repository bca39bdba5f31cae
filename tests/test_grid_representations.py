"""Grid representations for MusicVAE: drum and melody windows on the 16th-note grid, and back."""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pretty_midi
import pytest

from midigen.data.midi_io import read_notes, write_midi
from midigen.errors import MidiError
from midigen.representations import OutputContext
from midigen.representations.grid import (
    NOTE_OFF,
    NOTE_ON_BASE,
    DrumGrid,
    MelodyGrid,
    grid_from_config,
    read_grid_notes,
)

TEMPO_BPM = 120.0
STEP_S = 60.0 / TEMPO_BPM / 4  # one 16th at 120 bpm
BAR_S = 16 * STEP_S

# Magenta's 9-class drum map, written out here independently of the module's table
MAGENTA_DRUM_MAP = {
    0: (36, 35),
    1: (38, 27, 28, 31, 32, 33, 34, 37, 39, 40, 56, 65, 66, 75, 85),
    2: (42, 44, 54, 68, 69, 70, 71, 73, 78, 80, 22),
    3: (46, 67, 72, 74, 79, 81, 26),
    4: (45, 29, 41, 43, 61, 64, 84),
    5: (48, 47, 60, 63, 77, 86, 87),
    6: (50, 30, 62, 76, 83),
    7: (49, 52, 55, 57, 58),
    8: (51, 53, 59, 82),
}
KICK, SNARE, HAT = 1, 2, 4  # token bits

#: one bar of the rock beat as tokens: kick+hat on 1 and 3, snare+hat on 2 and 4, hat on the 8ths
ROCK_BAR = np.zeros(16, dtype=np.uint16)
ROCK_BAR[::2] |= HAT
ROCK_BAR[[0, 8]] |= KICK
ROCK_BAR[[4, 12]] |= SNARE


def rock_hits(bar: int, rng: np.random.Generator) -> list[tuple[int, float]]:
    """(pitch, start_s) of one bar of the rock beat, alternating pitches of each class by bar and
    by hit, every hit up to 20 ms off the grid (a 16th is 125 ms)."""
    hits = []
    for e in range(8):
        hits.append((42 if e % 2 == 0 else 44, bar * BAR_S + 2 * e * STEP_S))
    hits += [(36 if bar % 2 == 0 else 35, bar * BAR_S + s * STEP_S) for s in (0, 8)]
    hits += [(38 if bar % 2 == 0 else 40, bar * BAR_S + s * STEP_S) for s in (4, 12)]
    return [(p, max(0.0, t + float(rng.uniform(-0.02, 0.02)))) for p, t in hits]


def write_drum_file(
    path: Path,
    hits: list[tuple[int, float]],
    time_signatures: tuple[tuple[int, int, float], ...] = (),
    with_piano: bool = False,
) -> Path:
    """A pretty_midi file at 120 bpm with one drum instrument (channel 10) holding `hits`."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=TEMPO_BPM)
    for num, den, t in time_signatures:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(num, den, t))
    if with_piano:
        piano = pretty_midi.Instrument(program=0)
        piano.notes.append(pretty_midi.Note(velocity=80, pitch=60, start=0.0, end=1.0))
        pm.instruments.append(piano)
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    for pitch, start in hits:
        drums.notes.append(pretty_midi.Note(velocity=100, pitch=int(pitch), start=start, end=start + 0.05))
    if hits:
        pm.instruments.append(drums)
    pm.write(str(path))
    return path


def rock_file(path: Path, bars: int = 8, silent_bars: tuple[int, ...] = (), **kw) -> Path:
    rng = np.random.default_rng(7)
    hits = [h for b in range(bars) if b not in silent_bars for h in rock_hits(b, rng)]
    return write_drum_file(path, hits, **kw)


# -- drums ------------------------------------------------------------------------------------


def test_drum_vocabulary_is_512_bit_tokens_fixed_by_params():
    rep = DrumGrid()
    assert rep.num_classes == len(rep.vocab) == 512
    assert rep.vocab[0] == "DRUMS_000000000"
    assert rep.vocab[KICK | HAT] == "DRUMS_000000101"
    assert rep.vocab[511] == "DRUMS_111111111"
    assert len(set(rep.vocab)) == 512
    rebuilt = grid_from_config(rep.config())
    assert isinstance(rebuilt, DrumGrid) and rebuilt.vocab == rep.vocab


def test_rock_beat_gives_bar_aligned_64_step_windows_with_the_right_bits(tmp_path):
    piece = read_grid_notes(rock_file(tmp_path / "rock.mid"))
    rep = DrumGrid()
    windows = rep.windows(piece, bars=4, hop_bars=4)
    assert windows.shape == (2, 64) and windows.dtype == np.uint16
    # bars with kick 36/snare 38 and bars with kick 35/snare 40 give the same tokens
    np.testing.assert_array_equal(windows, np.tile(ROCK_BAR, (2, 4)))
    assert rep.windows(piece, bars=4, hop_bars=1).shape == (5, 64)
    assert rep.windows(piece, bars=2, hop_bars=2).shape == (4, 32)


def test_every_pitch_of_magenta_drum_map_sets_its_class_bit_and_others_are_ignored(tmp_path):
    pairs = [(cls, p) for cls, pitches in MAGENTA_DRUM_MAP.items() for p in pitches]
    # one pitch per step, then pitch 90 (in no class) on the next step
    hits = [(p, i * STEP_S) for i, (_, p) in enumerate(pairs)] + [(90, len(pairs) * STEP_S)]
    piece = read_grid_notes(write_drum_file(tmp_path / "all.mid", hits))
    grid = DrumGrid().encode(piece)
    np.testing.assert_array_equal(grid[: len(pairs)], [1 << cls for cls, _ in pairs])
    assert grid[len(pairs)] == 0


def test_hits_of_one_step_combine_into_one_token(tmp_path):
    hits = [(36, 0.0), (35, 0.01), (38, 0.0), (46, 0.0), (51, 0.0)]
    grid = DrumGrid().encode(read_grid_notes(write_drum_file(tmp_path / "chord.mid", hits)))
    assert grid[0] == KICK | SNARE | 8 | 256
    assert not grid[1:].any()


def test_windows_without_hits_are_skipped(tmp_path):
    piece = read_grid_notes(rock_file(tmp_path / "gap.mid", bars=12, silent_bars=(4, 5, 6, 7)))
    rep = DrumGrid()
    windows = rep.windows(piece, bars=4, hop_bars=4)
    np.testing.assert_array_equal(windows, np.tile(ROCK_BAR, (2, 4)))
    # hop 1: starts at bars 0..8, and only the window of bars 4-7 is silent
    assert rep.windows(piece, bars=4, hop_bars=1).shape == (8, 64)


@pytest.mark.parametrize(
    ("signatures", "reason"),
    [
        (((3, 4, 0.0),), "not 4/4 (found 3/4 at bar 1)"),
        (((4, 4, 0.0), (3, 4, 4 * BAR_S)), "not 4/4 (found 3/4 at bar 5)"),
    ],
)
def test_a_file_not_in_four_four_is_rejected_with_the_bar(tmp_path, signatures, reason):
    piece = read_grid_notes(rock_file(tmp_path / "waltz.mid", time_signatures=signatures))
    with pytest.raises(MidiError) as err:
        DrumGrid().windows(piece, bars=4, hop_bars=4)
    assert err.value.reason == reason


def test_a_file_without_time_signature_or_tempo_counts_as_four_four_at_120_bpm(tmp_path):
    # pretty_midi always writes a 4/4 meta event, so this file is built with mido
    mid = mido.MidiFile(type=0, ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    for bar in range(2):
        track.append(mido.Message("note_on", channel=9, note=36, velocity=90, time=0 if bar == 0 else 1900))
        track.append(mido.Message("note_off", channel=9, note=36, time=20))
    mid.save(str(tmp_path / "bare.mid"))
    piece = read_grid_notes(tmp_path / "bare.mid")
    assert piece.time_signatures.shape == (0,) and piece.tempo_bpm == 120.0
    windows = DrumGrid().windows(piece, bars=1, hop_bars=1)
    np.testing.assert_array_equal(windows, [[KICK] + [0] * 15] * 2)


def test_a_file_without_drums_is_rejected(tmp_path):
    path = write_drum_file(tmp_path / "piano.mid", [], with_piano=True)
    with pytest.raises(MidiError) as err:
        DrumGrid().windows(read_grid_notes(path), bars=4, hop_bars=4)
    assert err.value.reason == "no drum track"


def test_decoded_drums_are_a_drum_track_on_the_16th_grid(tmp_path):
    rep = DrumGrid()
    window = rep.windows(read_grid_notes(rock_file(tmp_path / "rock.mid")), 4, 4)[0]
    notes = rep.decode(window, OutputContext(tempo_bpm=TEMPO_BPM))
    assert notes.shape[0] == sum(bin(int(t)).count("1") for t in window)
    write_midi(notes, tmp_path / "out.mid", tempo_bpm=TEMPO_BPM)

    pm = pretty_midi.PrettyMIDI(str(tmp_path / "out.mid"))
    assert len(pm.instruments) == 1 and pm.instruments[0].is_drum
    starts = np.array([n.start for n in pm.instruments[0].notes])
    np.testing.assert_allclose(starts / STEP_S, np.round(starts / STEP_S), atol=1e-6)
    assert {n.pitch for n in pm.instruments[0].notes} == {36, 38, 42}  # the first pitch of each class
    channels = {m.channel for m in mido.MidiFile(str(tmp_path / "out.mid")) if m.type == "note_on"}
    assert channels == {9}  # MIDI channel 10
    # and the file reads back to the same window
    back = rep.windows(read_grid_notes(tmp_path / "out.mid"), 4, 4)
    np.testing.assert_array_equal(back, window[None])


def test_decode_ignores_ids_outside_the_vocabulary():
    notes = DrumGrid().decode(np.array([-1, 512, 0, KICK, 10_000]))
    assert notes.shape[0] == 1 and notes["pitch"][0] == 36 and notes["start_s"][0] == 3 * STEP_S


def _k525_with_drums(out: Path) -> tuple[Path, int]:
    """Mozart's K.525 excerpt that ships with music21 (5 string tracks), with a rock drum track
    on channel 10 inserted between its tracks. Returns the path and the number of drum hits."""
    import music21

    mid = mido.MidiFile(str(Path(music21.__file__).parent / "omr" / "k525short.mid"))
    step = mid.ticks_per_beat // 4
    events = []
    for bar in range(8):
        for s, tok in enumerate(ROCK_BAR):
            for pitch, bit in ((36, KICK), (38, SNARE), (42, HAT)):
                if tok & bit:
                    tick = (bar * 16 + s) * step
                    events.append((tick, mido.Message("note_on", channel=9, note=pitch, velocity=100)))
                    events.append((tick + step // 2, mido.Message("note_off", channel=9, note=pitch)))
    events.sort(key=lambda e: e[0])
    track, last = mido.MidiTrack(), 0
    for tick, msg in events:
        track.append(msg.copy(time=tick - last))
        last = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    mid.tracks.insert(3, track)
    mid.save(str(out))
    return out, len(events) // 2


def test_the_drum_track_is_found_among_the_tracks_of_a_real_file(tmp_path):
    path, n_hits = _k525_with_drums(tmp_path / "k525_drums.mid")
    piece = read_grid_notes(path)
    assert piece.notes["is_drum"].sum() == n_hits
    assert (~piece.notes["is_drum"]).sum() == 45 + 68 + 34 + 32 + 32  # the strings are all there
    np.testing.assert_array_equal(DrumGrid().windows(piece, 4, 4), np.tile(ROCK_BAR, (2, 4)))


# -- reading ----------------------------------------------------------------------------------


def test_ticks_round_to_the_nearest_step_whatever_the_tempo(tmp_path):
    mid = mido.MidiFile(type=0, ticks_per_beat=480)  # a 16th is 120 ticks
    events = [(0, mido.MetaMessage("set_tempo", tempo=600000)), (100, mido.MetaMessage("set_tempo", tempo=300000))]
    for tick, pitch in ((59, 60), (60, 62), (119, 64), (240, 65), (299, 67)):
        events.append((tick, mido.Message("note_on", note=pitch, velocity=90)))
        events.append((tick + 10, mido.Message("note_off", note=pitch)))
    track, last = mido.MidiTrack(), 0
    for tick, msg in sorted(events, key=lambda e: e[0]):
        track.append(msg.copy(time=tick - last))
        last = tick
    mid.tracks.append(track)
    mid.save(str(tmp_path / "ticks.mid"))
    piece = read_grid_notes(tmp_path / "ticks.mid")
    np.testing.assert_array_equal(piece.notes["onset_step"], [0, 1, 1, 2, 2])
    assert (piece.notes["offset_step"] > piece.notes["onset_step"]).all()  # 10-tick notes last a step
    assert piece.tempo_bpm == pytest.approx(100.0)  # the first tempo; the change moves nothing
    eighths = read_grid_notes(tmp_path / "ticks.mid", steps_per_quarter=2).notes["onset_step"]
    assert eighths.tolist() == [0, 0, 0, 1, 1]


def test_unreadable_files_raise_midi_error(tmp_path):
    (tmp_path / "junk.mid").write_bytes(b"MThd not really a midi file")
    (tmp_path / "empty.mid").write_bytes(b"")
    for name in ("junk.mid", "empty.mid", "missing.mid"):
        with pytest.raises(MidiError):
            read_grid_notes(tmp_path / name)
    with pytest.raises(MidiError, match="more than 10 notes"):
        read_grid_notes(rock_file(tmp_path / "rock.mid"), max_notes=10)


# -- melody -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folk_path(tmp_path_factory) -> Path:
    """'Herzog Ernst' from music21's Essen collection (4/4, monophonic, 104 notes) as MIDI."""
    from music21 import corpus

    path = tmp_path_factory.mktemp("folk") / "herzog_ernst.mid"
    corpus.parse("essenFolksong/altdeu10", number=2).write("midi", fp=str(path))
    return path


def test_melody_vocabulary_has_130_tokens():
    rep = MelodyGrid()
    assert rep.num_classes == 130
    assert rep.vocab[:3] == ["NO_EVENT", "NOTE_OFF", "NOTE_ON_0"] and rep.vocab[-1] == "NOTE_ON_127"
    assert grid_from_config(rep.config()).vocab == rep.vocab


def test_folk_melody_is_read_as_it_is_and_round_trips_through_the_grid(folk_path):
    piece = read_grid_notes(folk_path)
    rep = MelodyGrid()
    onset, offset, pitch = rep.melody(piece)
    np.testing.assert_array_equal(onset, piece.notes["onset_step"])  # already monophonic: nothing lost
    np.testing.assert_array_equal(pitch, piece.notes["pitch"])
    assert (offset[:-1] <= onset[1:]).all()
    notes = rep.decode(rep.encode(piece), OutputContext(tempo_bpm=piece.tempo_bpm))
    step_s = rep.step_s(piece.tempo_bpm)
    np.testing.assert_allclose(notes["start_s"] / step_s, onset)
    np.testing.assert_array_equal(notes["pitch"], pitch)
    np.testing.assert_allclose(notes["end_s"] / step_s, offset)


def test_folk_melody_windows_start_on_bar_lines_and_decode_to_its_notes(folk_path, tmp_path):
    piece = read_grid_notes(folk_path)
    rep = MelodyGrid()
    onset, offset, pitch = rep.melody(piece)
    n_bars = rep.encode(piece).shape[0] // 16
    windows = rep.windows(piece, bars=4, hop_bars=1)
    assert windows.shape == (n_bars - 3, 64)  # the tune never rests for long, so no window is dropped
    assert ((windows >= 2).sum(axis=1) >= 2).all()

    for k in (0, 5, n_bars - 4):
        write_midi(
            rep.decode(windows[k], OutputContext(tempo_bpm=TEMPO_BPM)), tmp_path / f"w{k}.mid", tempo_bpm=TEMPO_BPM
        )
        back = read_notes(tmp_path / f"w{k}.mid")
        lo, hi = 16 * k, 16 * k + 64
        # every note sounding in the window: those starting in it, and one held across its start
        sel = (onset < hi) & (offset > lo)
        np.testing.assert_allclose(back["start_s"] / STEP_S, np.maximum(onset[sel], lo) - lo, atol=1e-6)
        np.testing.assert_array_equal(back["pitch"], pitch[sel])


def _melody_file(path: Path, notes: list[tuple[int, float, float]]) -> Path:
    pm = pretty_midi.PrettyMIDI(initial_tempo=TEMPO_BPM)
    inst = pretty_midi.Instrument(program=0)
    for p, s, e in notes:
        inst.notes.append(pretty_midi.Note(velocity=90, pitch=p, start=s, end=e))
    pm.instruments.append(inst)
    drums = pretty_midi.Instrument(program=0, is_drum=True)  # drums never join the melody
    drums.notes.append(pretty_midi.Note(velocity=90, pitch=81, start=0.0, end=4.0))
    pm.instruments.append(drums)
    pm.write(str(path))
    return path


def test_top_line_keeps_the_highest_onset_and_a_new_onset_ends_the_note(tmp_path):
    notes = [
        (60, 0.0, 1.0), (64, 0.0, 1.0), (67, 0.0, 1.0),  # a chord: its top note is the melody
        (72, 1.0, 1.5),  # cut short by the lower note that starts under it
        (48, 1.25, 2.0),
        (74, 3.0, 3.25),  # then a rest, and a note that ends by itself
    ]  # fmt: skip
    piece = read_grid_notes(_melody_file(tmp_path / "chords.mid", notes))
    rep = MelodyGrid()
    onset, offset, pitch = rep.melody(piece)
    assert list(zip(onset.tolist(), offset.tolist(), pitch.tolist(), strict=True)) == [
        (0, 8, 67),
        (8, 10, 72),
        (10, 16, 48),
        (24, 26, 74),
    ]
    grid = rep.encode(piece)
    assert rep.ids_to_tokens(grid[[0, 8, 10, 16, 24, 26]]) == [
        "NOTE_ON_67",
        "NOTE_ON_72",
        "NOTE_ON_48",
        "NOTE_OFF",
        "NOTE_ON_74",
        "NOTE_OFF",
    ]
    assert grid.shape == (32,) and (grid[[1, 9, 11, 17, 25, 27]] == 0).all()


def test_a_note_held_across_the_bar_line_is_struck_again_at_the_window_start(tmp_path):
    notes = [(60, 0.0, 0.5), (62, 1.0, 3.0), (64, 3.0, 3.5), (65, 3.5, 4.0), (67, 4.0, 4.5)]
    rep = MelodyGrid()
    windows = rep.windows(read_grid_notes(_melody_file(tmp_path / "tie.mid", notes)), bars=1, hop_bars=1)
    assert windows.shape == (2, 16)
    assert rep.ids_to_tokens(windows[1][[0, 8, 12]]) == ["NOTE_ON_62", "NOTE_ON_64", "NOTE_ON_65"]


def test_windows_with_fewer_than_two_notes_are_skipped(tmp_path):
    notes = [(60, 0.0, 0.5), (62, 0.5, 1.0), (64, 2.25, 2.5), (65, 4.0, 4.5), (67, 4.5, 5.0)]
    rep = MelodyGrid()
    windows = rep.windows(read_grid_notes(_melody_file(tmp_path / "sparse.mid", notes)), bars=1, hop_bars=1)
    # bar 2 holds one note only
    assert [rep.vocab[int(w[0])] for w in windows] == ["NOTE_ON_60", "NOTE_ON_65"]


def test_melody_decode_accepts_any_ids():
    rep = MelodyGrid()
    ids = np.array([NOTE_OFF, 2 + 60, 0, NOTE_OFF, NOTE_OFF, 999, -3, 2 + 62, 2 + 64])
    notes = rep.decode(ids, OutputContext(tempo_bpm=TEMPO_BPM, program=40))
    assert notes["pitch"].tolist() == [60, 62, 64]
    np.testing.assert_allclose(notes["start_s"] / STEP_S, [1, 7, 8])
    np.testing.assert_allclose(notes["end_s"] / STEP_S, [3, 8, 9])  # the last note lasts to the end
    assert (notes["program"] == 40).all() and not notes["is_drum"].any()
    assert rep.decode(np.zeros(16, dtype=np.uint16)).shape == (0,)


def test_melody_of_a_tune_in_four_two_is_rejected(tmp_path):
    from music21 import corpus

    path = tmp_path / "hildebrandslied.mid"
    corpus.parse("essenFolksong/altdeu10", number=1).write("midi", fp=str(path))
    with pytest.raises(MidiError) as err:
        MelodyGrid().windows(read_grid_notes(path), bars=4, hop_bars=1)
    assert err.value.reason == "not 4/4 (found 4/2 at bar 1)"


def test_a_drum_only_file_has_no_melody(tmp_path):
    with pytest.raises(MidiError, match="no melodic"):
        MelodyGrid().encode(read_grid_notes(rock_file(tmp_path / "rock.mid")))


def test_cut_time_drums_and_two_four_melodies_are_accepted_but_not_two_four_drums(tmp_path):
    from drum_corpus import drum_bars, write_drum_midi

    bars = drum_bars("rock", 8, np.random.default_rng(0))
    cut = read_grid_notes(write_drum_midi(tmp_path / "cut.mid", bars, 100, (2, 2)))
    assert DrumGrid().windows(cut).shape == (5, 64)
    two_four = read_grid_notes(write_drum_midi(tmp_path / "march.mid", bars, 100, (2, 4)))
    with pytest.raises(MidiError, match=r"not 4/4 \(found 2/4 at bar 1\)"):
        DrumGrid().windows(two_four)
    notes = [(60 + i % 5, i * 0.25, i * 0.25 + 0.25) for i in range(64)]
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(2, 4, 0.0))
    inst = pretty_midi.Instrument(0)
    inst.notes = [pretty_midi.Note(velocity=80, pitch=p, start=a, end=b) for p, a, b in notes]
    pm.instruments.append(inst)
    pm.write(str(tmp_path / "polka.mid"))
    assert MelodyGrid().windows(read_grid_notes(tmp_path / "polka.mid")).shape[0] > 0


def test_a_melody_is_read_per_track_so_an_alto_never_replaces_a_held_soprano(tmp_path):
    # soprano: whole notes; alto: quarter notes below it. Merged, the alto's onsets would cut
    # the soprano's notes; per track, each line stays itself and both give windows.
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    soprano, alto = pretty_midi.Instrument(0, name="S"), pretty_midi.Instrument(0, name="A")
    for bar in range(4):
        soprano.notes.append(pretty_midi.Note(velocity=80, pitch=72 + bar, start=2.0 * bar, end=2.0 * bar + 2.0))
        for q in range(4):
            t = 2.0 * bar + 0.5 * q
            alto.notes.append(pretty_midi.Note(velocity=80, pitch=60 + q, start=t, end=t + 0.5))
    pm.instruments += [soprano, alto]
    pm.write(str(tmp_path / "two_voices.mid"))
    piece = read_grid_notes(tmp_path / "two_voices.mid")
    rep = MelodyGrid(bars=4)
    tracks = rep.tracks(piece)
    assert len(tracks) == 2
    soprano_track = tracks[1]  # 4 notes: after the alto's 16
    onset, offset, pitch = rep.melody(piece, soprano_track)
    assert pitch.tolist() == [72, 73, 74, 75] and (offset - onset).tolist() == [16, 16, 16, 16]
    windows = rep.windows(piece)
    assert windows.shape == (2, 64)  # one 4-bar window per voice
    assert sorted(int(w[0]) - NOTE_ON_BASE for w in windows) == [60, 72]


def test_the_drum_track_of_a_multitrack_file_is_the_one_used(tmp_path):
    # the piano plays 60 and 64, pitches Magenta's map would read as toms if they leaked in
    from drum_corpus import drum_bars, write_drum_midi

    bars = drum_bars("funk", 8, np.random.default_rng(2))
    band = read_grid_notes(write_drum_midi(tmp_path / "band.mid", bars, 100, extra_piano=True))
    alone = read_grid_notes(write_drum_midi(tmp_path / "drums.mid", bars, 100))
    assert (~band.notes["is_drum"]).sum() == 32
    np.testing.assert_array_equal(DrumGrid().windows(band), DrumGrid().windows(alone))
