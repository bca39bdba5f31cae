"""voices: BachBot's frames of sounding notes, on real chorales exported by ingest (with their
fermata markers), on MIDI files built here, and the grammar of constrained sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from conftest import CHORALES, PITCH_MAX, PITCH_MIN, write_pretty_midi

from midigen import representations
from midigen.data.ingest import export_music21_file
from midigen.data.midi_io import FERMATA, make_notes, read_marks, write_midi
from midigen.errors import MidiError
from midigen.params import DEFAULTS, SCHEMA
from midigen.representations import OutputContext, VoicesRepresentation
from midigen.representations.base import transpose_ids
from midigen.representations.score_time import STEP_S

LIMITS = dict(DEFAULTS["preprocess"])
# bwv153.5 has repeats: music21's MIDI export plays them, and the fermatas in them, twice
INGESTED = (*CHORALES, "bach/bwv153.5")


@pytest.fixture(scope="module")
def rep() -> VoicesRepresentation:
    return VoicesRepresentation(PITCH_MIN, PITCH_MAX, 4)


@pytest.fixture(scope="module")
def positioned() -> VoicesRepresentation:
    """Voices with bar positions: each delimiter names its frame's sixteenth in the bar."""
    return VoicesRepresentation(PITCH_MIN, PITCH_MAX, 4, bar_positions=True)


@pytest.fixture(scope="module")
def runs() -> VoicesRepresentation:
    """Voices with frame runs: a frame only where the notes change, ||k its length."""
    return VoicesRepresentation(PITCH_MIN, PITCH_MAX, 4, frame_runs=True)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> list[Path]:
    """Real chorales exported to MIDI by ingest (pickups delayed, fermatas marked)."""
    from music21 import corpus

    out = tmp_path_factory.mktemp("ingested")
    for name in INGESTED:
        results = export_music21_file((str(corpus.getWork(name)), str(out), "bach"))
        assert all(reason is None for _, reason in results), results
    return sorted(out.glob("bach/*.mid"))


def steps(seconds) -> np.ndarray:
    return np.floor(np.asarray(seconds) / STEP_S + 0.5).astype(np.int64)


def expected_notes(notes: np.ndarray) -> tuple[set[tuple[int, int, int]], dict[int, set[int]]]:
    """What the frames should keep, worked out note by note: per pitch, the frames some note of
    it covers, cut into one note at each onset (unisons are one note, a pitch struck while it
    sounds is struck anew); and the pitches sounding in each frame."""
    on, off = steps(notes["start_s"]), np.maximum(steps(notes["end_s"]), steps(notes["start_s"]) + 1)
    rows, sounding = set(), {}
    for p in np.unique(notes["pitch"]).tolist():
        sel = notes["pitch"] == p
        covered = {f for o, e in zip(on[sel].tolist(), off[sel].tolist(), strict=True) for f in range(o, e)}
        onsets = set(on[sel].tolist())
        for f in covered:
            sounding.setdefault(f, set()).add(p)
        for o in sorted(onsets):
            end = o + 1
            while end in covered and end not in onsets:
                end += 1
            rows.add((o, end, p))
    return rows, sounding


def decoded_rows(rep: VoicesRepresentation, ids: np.ndarray) -> set[tuple[int, int, int]]:
    notes = rep.decode(ids)
    return set(
        zip(steps(notes["start_s"]).tolist(), steps(notes["end_s"]).tolist(), notes["pitch"].tolist(), strict=True)
    )


def tokens_of_frames(tokens: list[str]) -> list[list[str]]:
    """The frames of a token list (without <BOS>/<EOS>), each without its delimiter."""
    body = [t for t in tokens if t not in ("<BOS>", "<EOS>")]
    frames, cur = [], []
    for t in body:
        if t.startswith("|"):  # ||| or, with bar positions, |k
            frames.append(cur)
            cur = []
        else:
            cur.append(t)
    return frames + ([cur] if cur else [])


# -- vocabulary, registry, params -------------------------------------------------------------


def test_vocabulary_is_new_and_tied_per_pitch_then_fermata_and_delimiter(rep):
    n = PITCH_MAX - PITCH_MIN + 1
    assert len(rep) == 3 + 2 * n + 2
    assert rep.vocab[rep.new_base] == "A0" and rep.vocab[rep.tie_base + n - 1] == "C8~"
    assert rep.vocab[-2:] == ["FERMATA", "|||"]
    table, lo, hi = rep.pitch_table()
    assert (lo, hi) == (PITCH_MIN, PITCH_MAX)
    assert table[rep.token_to_id["C4"]] == table[rep.token_to_id["C4~"]] == 60
    assert (table[:3] == -1).all() and (table[-2:] == -1).all()


def test_registered_and_rebuilt_from_its_config(rep):
    assert representations.names() == SCHEMA["preprocess"]["representation"].choices
    assert representations.layout_of("voices") == "sequence"
    params = {**LIMITS, "representation": "voices", "max_voices": 3}
    built = representations.from_params(params)
    assert isinstance(built, VoicesRepresentation) and built.max_voices == 3
    again = representations.from_config(built.config())
    assert again.vocab == built.vocab and again.config() == built.config()


# -- real chorales ----------------------------------------------------------------------------


def test_round_trip_is_exact_on_real_chorales_for_notes_within_four_voices(rep, chorale_paths, ingested):
    """Every note in frames of at most four voices comes back with its onset, offset and
    pitch on the sixteenth grid; a chorale that never has more comes back whole."""
    for path in [*chorale_paths, *ingested]:
        chorale = rep.read_piece(path)
        ids = rep.encode(chorale)
        expected, sounding = expected_notes(chorale.notes)
        got = decoded_rows(rep, ids)
        within = {(o, e, p) for o, e, p in expected if all(len(sounding[f]) <= 4 for f in range(o, e))}
        assert within <= got, (path.name, sorted(within - got)[:5])
        if all(len(s) <= 4 for s in sounding.values()):
            assert got == expected, path.name
        for f, frame in enumerate(tokens_of_frames(rep.ids_to_tokens(ids))):
            pitches = sorted(sounding.get(f, ()), reverse=True)
            kept = pitches if len(pitches) <= 4 else pitches[:3] + pitches[-1:]
            names = [t.rstrip("~") for t in frame if t != "FERMATA"]
            assert names == [pretty_midi.note_number_to_name(p).replace("♯", "#") for p in kept], (path.name, f)


def test_unisons_of_the_fixture_chorales_are_one_note(rep, chorale_paths):
    """bwv66.6 and bwv1.6 have voices in unison (conftest): fewer notes come back than the file
    has, and no two decoded notes of one pitch overlap."""
    for path in chorale_paths[:2]:
        chorale = rep.read_piece(path)
        notes = rep.decode(rep.encode(chorale))
        assert len(notes) < len(chorale.notes), path.name
        for p in np.unique(notes["pitch"]):
            sel = notes[notes["pitch"] == p]
            assert (sel["start_s"][1:] >= sel["end_s"][:-1] - 1e-9).all(), path.name


def test_ingest_marks_the_fermatas_of_every_part_where_the_midi_plays_them(ingested):
    from music21 import corpus, expressions

    from midigen.data.ingest import pickup_quarters
    from midigen.data.midi_io import read_tick_notes

    unmarked = []
    for path in ingested:
        marks = [q for q, text in read_marks(path).markers if text == FERMATA]
        t = read_tick_notes(path)
        assert set(marks) <= set((t.start_tick / t.tpq).tolist()), path.name  # repeats expanded as the notes are
        if not marks:
            unmarked.append(path.name)
    assert unmarked == ["bwv1.6.mid"]  # the only one whose score has no fermata
    score = corpus.parse("bach/bwv66.6")
    notated = sorted(
        {
            float(n.offset)
            for n in score.flatten().notes
            if any(isinstance(e, expressions.Fermata) for e in n.expressions)
        }
    )
    path = next(p for p in ingested if p.name == "bwv66.6.mid")
    assert [q for q, _ in read_marks(path).markers] == [q + pickup_quarters(score) for q in notated]


def test_fermata_frames_start_at_the_marks_and_last_as_the_notes_struck_there(rep, ingested):
    for path in ingested:
        chorale = rep.read_piece(path)
        frames = rep.frames(chorale)
        on, off = steps(chorale.notes["start_s"]), steps(chorale.notes["end_s"])
        expected = np.zeros(frames.fermata.shape[0], dtype=bool)
        for m in chorale.fermatas.tolist():
            expected[m : off[on == m].max()] = True
        assert np.array_equal(frames.fermata, expected), path.name
        tokens = tokens_of_frames(rep.ids_to_tokens(rep.encode(chorale)))
        assert [fr[:1] == ["FERMATA"] for fr in tokens] == expected.tolist(), path.name
        assert all("FERMATA" not in fr[1:] for fr in tokens), path.name


def test_written_midi_has_one_track_per_voice_and_reads_back_to_the_same_ids(rep, ingested, tmp_path):
    context = OutputContext(tempo_bpm=90.0, key="G", program=52)
    for path in ingested:
        ids = rep.encode(rep.read_piece(path))
        out = tmp_path / path.name
        notes = rep.write_midi(ids, out, context)
        pm = pretty_midi.PrettyMIDI(str(out))
        assert [i.name for i in pm.instruments] == ["Soprano", "Alto", "Tenor", "Bass"], path.name
        assert {i.program for i in pm.instruments} == {52}
        assert pm.get_tempo_changes()[1].tolist() == pytest.approx([90.0], abs=1e-3)
        assert sum(len(i.notes) for i in pm.instruments) == len(notes)
        # a note's voice is its rank at its onset: the soprano track has the top note of each of its onsets
        for n in pm.instruments[0].notes:
            at = [m.pitch for i in pm.instruments for m in i.notes if m.start <= n.start + 1e-6 < m.end]
            assert n.pitch == max(at), path.name
        frames = [fr[:1] == ["FERMATA"] for fr in tokens_of_frames(rep.ids_to_tokens(ids))]
        starts = [f for f, on in enumerate(frames) if on and (f == 0 or not frames[f - 1])]
        assert read_marks(out).markers == [(f / 4, FERMATA) for f in starts], path.name
        assert np.array_equal(rep.encode(rep.read_piece(out)), ids), path.name


def test_tokenize_file_counts_frames_fermatas_and_frames_over_the_limit(rep, ingested):
    """bwv1.6 has a horn part above the four voices: five at once in most frames."""
    for path in ingested:
        if path.name == "bwv1.6.mid":
            with pytest.raises(
                MidiError, match=r"more than preprocess.max_voices = 4 notes at once in 45% of its frames"
            ):
                rep.tokenize_file(str(path), LIMITS)
            continue
        ids, info = rep.tokenize_file(str(path), LIMITS)
        assert set(info) == {*rep.info_keys, "key_shift"}  # preprocess.key auto: voices moves to C
        tokens = rep.ids_to_tokens(ids)
        assert info["frames"] == tokens.count("|||")
        assert info["fermata_frames"] == tokens.count("FERMATA") > 0
        assert 0 <= info["over_voices"] <= 0.1 * info["frames"]


# -- files built here -------------------------------------------------------------------------


def chord_file(path: Path, frames: list[list[int]], meter: bool | tuple[int, int] = True) -> Path:
    """A file with one note per pitch per listed quarter note (a chord a quarter), in 4/4 or
    the meter given."""
    rows = [(q * 0.5, q * 0.5 + 0.5, p) for q, chord in enumerate(frames) for p in chord]
    notes = make_notes([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    write_midi(notes, path, time_signature=meter if isinstance(meter, tuple) else (4, 4) if meter else None)
    return path


# -- bar positions ----------------------------------------------------------------------------


def test_bar_positions_are_the_last_delimiters_and_off_by_default(rep, positioned):
    assert rep.vocab[rep.frame_id :] == ["|||"] and not rep.config()["bar_positions"]
    assert positioned.vocab[positioned.frame_id :] == [f"|{k}" for k in range(32)]
    assert positioned.vocab[: positioned.frame_id] == rep.vocab[: rep.frame_id]
    assert representations.from_config(positioned.config()).vocab == positioned.vocab


@pytest.mark.parametrize(("meter", "bar"), [((4, 4), 16), ((3, 4), 12), ((3, 2), 24)])
def test_each_delimiter_names_its_frames_sixteenth_in_the_bar_and_the_meter_comes_back(
    positioned, rep, meter, bar, tmp_path
):
    path = chord_file(tmp_path / "in.mid", [[64, 60], [65, 62], [67], [], [64, 55]] * 4, meter)
    ids = positioned.encode(positioned.read_piece(path))
    delimiters = [t for t in positioned.ids_to_tokens(ids) if t.startswith("|")]
    frames = 20 * 4  # 20 quarter notes
    assert delimiters == [f"|{f % bar}" for f in range(frames)]
    # the notes are those of the plain encoding, and the written file has the meter back
    assert decoded_rows(positioned, ids) == decoded_rows(rep, rep.encode(rep.read_piece(path)))
    out = positioned.write_midi(ids, tmp_path / "out.mid") is not None and tmp_path / "out.mid"
    assert [(n, d) for _, n, d in read_marks(out).meters] == [meter]
    assert np.array_equal(positioned.encode(positioned.read_piece(out)), ids)


def test_bar_positions_follow_a_change_of_meter(positioned, tmp_path):
    import mido

    path = chord_file(tmp_path / "in.mid", [[60]] * 7)  # 4/4 from 0 ...
    mid = mido.MidiFile(str(path))
    tick = 4 * mid.ticks_per_beat  # ... and 3/4 from bar 2
    track, now, out = mid.tracks[0], 0, []
    for msg in track:
        now += msg.time
        out.append((now, msg))
    out.append((tick, mido.MetaMessage("time_signature", numerator=3, denominator=4)))
    out.sort(key=lambda tm: (tm[0], tm[1].type != "time_signature"))
    track.clear()
    prev = 0
    for t, msg in out:
        track.append(msg.copy(time=t - prev))
        prev = t
    mid.save(str(path))
    ids = positioned.encode(positioned.read_piece(path))
    positions = [int(t[1:]) for t in positioned.ids_to_tokens(ids) if t.startswith("|")]
    assert positions == list(range(16)) + list(range(12))


def test_real_chorales_round_trip_with_bar_positions_and_start_on_the_bar(positioned, rep, ingested, tmp_path):
    for path in ingested:
        ids = positioned.encode(positioned.read_piece(path))
        plain = rep.encode(rep.read_piece(path))
        assert decoded_rows(positioned, ids) == decoded_rows(rep, plain), path.name
        positions = positioned.decode_voiced(ids).positions
        assert positions[0] == 0 and len(positions) == plain.tolist().count(rep.frame_id)
        out = tmp_path / path.name
        positioned.write_midi(ids, out)
        assert np.array_equal(positioned.encode(positioned.read_piece(out)), ids), path.name


def test_frame_runs_write_a_frame_only_where_the_notes_change(runs, rep, chorale_paths, ingested, tmp_path):
    """The same notes, voices and fermata frames as a frame per sixteenth, from well under half
    the ids; every written frame differs from the one before (a note struck or ended, or the
    fermata starts or stops) unless the one before ran MAX_RUN sixteenths; written MIDI reads
    back to the same ids."""
    ratios = []
    for path in [*chorale_paths, *ingested]:
        plain, ids = rep.encode(rep.read_piece(path)), runs.encode(runs.read_piece(path))
        a, b = rep.decode_voiced(plain), runs.decode_voiced(ids)
        assert b.rows == a.rows and b.voice.tolist() == a.voice.tolist(), path.name
        assert b.fermata_frames == a.fermata_frames, path.name
        ratios.append(len(ids) / len(plain))
        frames = tokens_of_frames(runs.ids_to_tokens(ids))
        lasts = [int(t[2:]) for t in runs.ids_to_tokens(ids) if t.startswith("||")]
        assert len(lasts) == len(frames) and sum(lasts) == plain.tolist().count(rep.frame_id), path.name
        for f in range(1, len(frames)):
            same = [t.rstrip("~") for t in frames[f]] == [t.rstrip("~") for t in frames[f - 1]]
            if same and all(t.endswith("~") or t == "FERMATA" for t in frames[f]):
                assert lasts[f - 1] == 16, (path.name, f, frames[f])
        out = tmp_path / path.name
        runs.write_midi(ids, out)
        assert np.array_equal(runs.encode(runs.read_piece(out)), ids), path.name
    assert max(ratios) < 0.5, ratios


def test_a_run_longer_than_a_whole_note_writes_its_frame_again_as_ties(runs, tmp_path):
    path = tmp_path / "long.mid"
    write_midi(make_notes([0.0, 0.0, 0.0], [5.0, 5.0, 1.0], [72, 67, 60]), path, tempo_bpm=60.0, time_signature=(4, 4))
    # at 60 bpm one second is a quarter note: C4 a quarter, G4 and C5 five quarters
    assert runs.ids_to_tokens(runs.encode(runs.read_piece(path))) == [
        "<BOS>", "C5", "G4", "C4", "||4", "C5~", "G4~", "||16", "<EOS>",
    ]  # fmt: skip
    path = tmp_path / "longer.mid"
    write_midi(make_notes([0.0], [5.0 * 4 / 4 + 1.0], [72]), path, tempo_bpm=60.0, time_signature=(4, 4))
    assert runs.ids_to_tokens(runs.encode(runs.read_piece(path))) == ["<BOS>", "C5", "||16", "C5~", "||8", "<EOS>"]


def test_frame_runs_and_bar_positions_are_one_error_line():
    from midigen.errors import ParamsError

    params = {**DEFAULTS["preprocess"], "representation": "voices", "bar_positions": True, "frame_runs": True}
    with pytest.raises(ParamsError, match="bar_positions and preprocess.frame_runs"):
        representations.from_params(params)


def test_a_file_without_a_time_signature_is_rejected(rep, tmp_path):
    import mido

    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack([mido.Message("note_on", note=60, velocity=90), mido.Message("note_off", note=60, time=480)])
    mid.tracks.append(track)
    mid.save(tmp_path / "performance.mid")
    with pytest.raises(MidiError, match="no time signature"):
        rep.tokenize_file(str(tmp_path / "performance.mid"), LIMITS)
    # pretty_midi writes 4/4 when it is given no meter: such a file is read
    path = write_pretty_midi(tmp_path / "melody.mid", [(60, 0.0, 0.5), (64, 0.5, 1.0)])
    assert rep.ids_to_tokens(rep.tokenize_file(str(path), LIMITS)[0])[1:4] == ["C4", "|||", "C4~"]


def test_five_voices_in_over_a_tenth_of_the_frames_is_rejected(rep, tmp_path):
    five = [72, 67, 64, 60, 48]
    path = chord_file(tmp_path / "five.mid", [five] * 2 + [five[:4]] * 8)
    with pytest.raises(MidiError, match=r"more than preprocess.max_voices = 4 notes at once in 20% of its frames"):
        rep.tokenize_file(str(path), LIMITS)


def test_a_frame_over_the_limit_keeps_its_highest_three_and_its_lowest(rep, tmp_path):
    five = [72, 67, 64, 60, 48]
    path = chord_file(tmp_path / "five.mid", [five[:4]] * 5 + [five] + [five[:4]] * 5)
    ids, info = rep.tokenize_file(str(path), LIMITS)
    assert info["over_voices"] == 4  # one quarter, four frames
    frames = tokens_of_frames(rep.ids_to_tokens(ids))
    assert frames[20] == ["C5", "G4", "E4", "C3"]  # C4 dropped, C3 struck anew
    assert frames[23] == ["C5~", "G4~", "E4~", "C3~"]
    assert frames[24] == ["C5", "G4", "E4", "C4"]
    one = VoicesRepresentation(PITCH_MIN, PITCH_MAX, 1)
    assert tokens_of_frames(one.ids_to_tokens(one.encode(one.read_piece(path))))[20] == ["C5"]


def test_unison_is_one_note_and_a_strike_on_a_held_pitch_is_a_new_note(rep, tmp_path):
    # soprano holds G4 for a half note; the alto strikes G4 on its second beat
    notes = make_notes([0.0, 0.0, 0.5], [1.0, 0.5, 1.0], [67, 60, 67])
    write_midi(notes, tmp_path / "u.mid", time_signature=(4, 4))
    frames = tokens_of_frames(rep.ids_to_tokens(rep.encode(rep.read_piece(tmp_path / "u.mid"))))
    assert frames == [["G4", "C4"], ["G4~", "C4~"], ["G4~", "C4~"], ["G4~", "C4~"]] + [["G4"]] + [["G4~"]] * 3


# -- decoding any ids -------------------------------------------------------------------------


def test_decoding_skips_ids_out_of_place(rep):
    ids = rep.tokens_to_ids(
        ["<BOS>", "E4", "C4", "G4", "FERMATA", "|||", "FERMATA", "E4~", "D4~", "|||", "E4~", "|||", "<EOS>", "C4"]
    )
    voiced = rep.decode_voiced(ids)
    # G4 above C4 and the late FERMATA are skipped; D4~ with no D4 before starts a note
    assert voiced.rows == [(0, 1, 60), (0, 3, 64), (1, 2, 62)]
    assert voiced.voice.tolist() == [1, 0, 1]
    assert voiced.fermata_frames == [1]


def test_any_id_sequence_decodes_and_writes(rep, tmp_path):
    rng = np.random.default_rng(5)
    for k in range(20):
        ids = rng.integers(-3, len(rep) + 3, size=int(rng.integers(0, 400)))
        notes = rep.decode(ids)
        assert (notes["end_s"] > notes["start_s"]).all()
        rep.write_midi(ids, tmp_path / f"r{k}.mid")


def test_repetition_units_are_one_per_frame(rep):
    ids = rep.tokens_to_ids(["<BOS>", "C4", "|||", "C4~", "|||", "C4~", "|||", "D4", "|||", "<EOS>"])
    units = rep.repetition_units(ids)
    assert units.shape == (4,)
    assert units[1] == units[2] != units[0] != units[3]


def test_transposition_moves_every_note_and_keeps_the_frames(rep, ingested):
    table = rep.pitch_table()
    ids = rep.encode(rep.read_piece(ingested[0])).astype(np.int64)
    lo, hi = table[0][ids][table[0][ids] >= 0].min(), table[0][ids][table[0][ids] >= 0].max()
    for shift in (-5, -1, 3):
        down, up = min(5, lo - PITCH_MIN), min(5, PITCH_MAX - hi)
        u = np.array([(shift + down + 0.5) / (up + down + 1)])
        moved = transpose_ids(ids[None, :], table, 5, u)[0]
        before, after = rep.decode(ids), rep.decode(moved)
        assert np.array_equal(after["pitch"], before["pitch"] + shift)
        assert np.array_equal(after["start_s"], before["start_s"]) and np.array_equal(after["end_s"], before["end_s"])
        assert [t.endswith("~") for t in rep.ids_to_tokens(moved)] == [t.endswith("~") for t in rep.ids_to_tokens(ids)]


# -- the grammar ------------------------------------------------------------------------------


def check_grammar(tokens: list[str], max_voices: int, max_frames: int) -> str | None:
    """What is wrong with a sampled token list (after <BOS>), or None: an independent reading
    of the rules in voices_grammar's docstring (with bar positions: the first delimiter |0,
    then after |k only |k+1 or |0, |31 repeating)."""
    prev: dict[int, int] = {}  # pitch -> frames it has sounded for, in the frame before
    cur: dict[int, int] = {}
    frames, in_frame, last = 0, [], -1
    for n, t in enumerate(tokens):
        if t == "<EOS>":
            if in_frame or not frames:
                return f"{n}: <EOS> inside a frame or before any"
            if n != len(tokens) - 1:
                return f"{n}: tokens after <EOS>"
            continue
        if t in ("<PAD>", "<BOS>"):
            return f"{n}: {t}"
        if t.startswith("||") and t != "|||":  # frame runs: the frame lasts k sixteenths
            lasts = int(t[2:])
            if not 1 <= lasts <= 16:
                return f"{n}: {t}"
            ended = {p: c + lasts - 1 for p, c in cur.items()}
            if max_frames and any(c > max_frames for c in ended.values()):
                return f"{n}: {t} holds a note {max(ended.values())} frames"
            prev, cur, in_frame, frames = ended, {}, [], frames + lasts
            continue
        if t.startswith("|"):
            if t != "|||":
                k = int(t[1:])
                if k != 0 and k != min(last + 1, 31):
                    return f"{n}: {t} after |{last}"
                last = k
            prev, cur, in_frame, frames = cur, {}, [], frames + 1
            continue
        if t == "FERMATA":
            if in_frame:
                return f"{n}: FERMATA after {in_frame}"
            in_frame.append(t)
            continue
        p = pretty_midi.note_name_to_number(t.rstrip("~"))
        pitches = [x for x in in_frame if x != "FERMATA"]
        if pitches and p >= pitches[-1]:
            return f"{n}: {t} not below {pitches[-1]}"
        if max_voices and len(pitches) >= max_voices:
            return f"{n}: more than {max_voices} notes"
        if t.endswith("~"):
            if p not in prev:
                return f"{n}: {t} tied to nothing"
            cur[p] = prev[p] + 1
            if max_frames and cur[p] > max_frames:
                return f"{n}: {t} held {cur[p]} frames"
        else:
            cur[p] = 1
        in_frame.append(p)
    return None


@pytest.mark.parametrize(
    ("max_voices", "max_note_beats", "bars"),
    [(4, 2.0, False), (0, 0.0, False), (4, 2.0, True), (4, 2.0, "runs"), (0, 0.0, "runs")],
)
def test_sampling_under_the_grammar_never_writes_an_illegal_token(
    rep, positioned, runs, max_voices, max_note_beats, bars, torch_one_thread
):
    import torch

    from midigen.generation.grammar import GrammarLimits

    rep = runs if bars == "runs" else positioned if bars else rep
    grammar = rep.grammar(GrammarLimits(max_note_beats=max_note_beats, max_voices=max_voices))
    gen = torch.Generator().manual_seed(7)
    batch, n_steps = 64, 3000
    bias = torch.zeros(len(rep))
    bias[rep.tie_base : rep.fermata_id] = 4.0  # ties often, so notes reach max_note_beats
    bias[2] = -4.0  # <EOS> rarely, so rows run long
    state = grammar.start(batch, torch.device("cpu"))
    state = grammar.advance(state, torch.full((batch,), 1))  # the prompt: <BOS>
    rows = list(range(batch))
    out: list[list[int]] = [[] for _ in range(batch)]
    for _ in range(n_steps):
        mask = grammar.allowed(state)
        assert mask.any(dim=1).all()
        logits = torch.randn(len(rows), len(rep), generator=gen) + bias
        ids = torch.multinomial(torch.softmax(logits.masked_fill(~mask, float("-inf")), -1), 1, generator=gen)[:, 0]
        for r, i in zip(rows, ids.tolist(), strict=True):
            out[r].append(i)
        state = grammar.advance(state, ids)
        keep = ids != 2
        if not keep.all():
            rows = [r for r, k in zip(rows, keep.tolist(), strict=True) if k]
            state = grammar.keep_rows(state, keep)
        if not rows:
            break
    max_frames = round(max_note_beats * 4)
    for seq in out:
        assert check_grammar(rep.ids_to_tokens(seq), max_voices, max_frames) is None
    assert sum(len(s) for s in out) > batch * n_steps // 2
    tokens = [t for s in out for t in rep.ids_to_tokens(s)]
    assert tokens.count("FERMATA") and sum(t.endswith("~") for t in tokens) > len(tokens) // 4
    if bars is True:  # random logits start new bars anywhere and also run bars on
        assert tokens.count("|0") > batch and "|6" in tokens
    if bars == "runs":  # frames of every length are drawn, the long ones only where notes allow
        assert {f"||{k}" for k in range(1, 17)} <= set(tokens)


def test_eos_waits_for_min_beats_of_frames(rep, torch_one_thread):
    import torch

    from midigen.generation.grammar import GrammarLimits

    grammar = rep.grammar(GrammarLimits(max_note_beats=8.0, max_voices=4, min_beats=2.0))  # 8 frames
    state = grammar.advance(grammar.start(1, torch.device("cpu")), torch.tensor([1]))
    for frames in range(10):
        assert bool(grammar.allowed(state)[0, 2]) == (frames >= 8), frames
        state = grammar.advance(state, torch.tensor([rep.frame_id]))


@pytest.mark.parametrize("bars", [False, True, "runs"])
def test_every_real_chorale_is_a_sentence_of_the_grammar(rep, positioned, runs, bars, ingested, torch_one_thread):
    import torch

    from midigen.generation.grammar import GrammarLimits

    rep = runs if bars == "runs" else positioned if bars else rep
    grammar = rep.grammar(GrammarLimits(max_note_beats=0, max_voices=4))
    for path in ingested:
        ids = torch.as_tensor(rep.encode(rep.read_piece(path)).astype(np.int64))
        state = grammar.advance(grammar.start(1, torch.device("cpu")), ids[:1])
        for n, i in enumerate(ids[1:].tolist(), 1):
            assert grammar.allowed(state)[0, i], (path.name, n, rep.vocab[i])
            state = grammar.advance(state, torch.tensor([i]))


# -- end to end -------------------------------------------------------------------------------


@pytest.mark.pipeline
def test_dvc_exp_run_with_voices_runs_end_to_end(tmp_path, ingested):
    """`dvc exp run -S preprocess.representation=voices` on the ingested chorales (bwv1.6 is
    rejected for its horn part) and four melodies; training transposes; generated pieces are
    written one track per voice."""
    import json

    import mido
    import yaml
    from test_interruption import DVC, make_tiny_repo, run

    from midigen.table import iter_rows

    root = tmp_path / "repo"
    env = make_tiny_repo(root, tmp_path / "home", ingested, train={"epochs": 1, "transpose": 3})
    out = run([DVC, "exp", "run", "-S", "preprocess.representation=voices"], root, env, timeout=600)
    for stage in ("ingest", "preprocess", "split", "train", "generate", "evaluate"):
        assert f"Running stage '{stage}'" in out, out
    assert (
        yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))["preprocess"]["representation"] == "voices"
    )
    vocab = json.loads((root / "data/tokens/vocab.json").read_text(encoding="utf-8"))
    assert vocab["representation"] == {
        "name": "voices",
        "pitch_min": 21,
        "pitch_max": 108,
        "max_voices": 4,
        "bar_positions": False,
        "frame_runs": True,  # the default
    }
    rejected = {Path(r["rel_path"]).name: r["reason"] for r in iter_rows(root / "data/tokens/rejected.csv")}
    assert list(rejected) == ["bwv1.6.mid"] and "max_voices" in rejected["bwv1.6.mid"]
    index = list(iter_rows(root / "data/tokens/index.csv"))
    assert len(index) == len(ingested) - 1 + 4
    assert sum(int(r["fermata_frames"]) > 0 for r in index) == len(ingested) - 1  # the chorales, not the melodies
    for mid in sorted((root / "outputs/generated").glob("*.mid")):
        # a voice the model left silent is an empty track, which pretty_midi would not list
        names = [m.name for t in mido.MidiFile(mid).tracks for m in t if m.type == "track_name"]
        assert names == ["Soprano", "Alto", "Tenor", "Bass"], mid.name
    assert 0 <= json.loads((root / "metrics/eval.json").read_text(encoding="utf-8"))["test_accuracy"] <= 1
