"""train_model on real chorale tokens: learning, determinism, checkpoints, resuming; the window
sampler's transposition; evaluate_loss."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import tiny_params

from midigen.data.windows import WindowSampler
from midigen.evaluation.lm_eval import evaluate_loss
from midigen.models.lstm import LSTMLM, LSTMConfig
from midigen.representations import BOS, EOS, PAD, EventRepresentation
from midigen.training.checkpoint import load_checkpoint, model_from_checkpoint
from midigen.training.loop import train_model

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# dropout and transposition on, so resuming also has to restore the torch and sampler RNGs
PARAMS = tiny_params(model={"dropout": 0.1}, epochs=3, transpose=2)
CPU = torch.device("cpu")


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]


def weights(path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model_state"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def checkpoint_loss(path, stream: np.ndarray) -> float:
    model = model_from_checkpoint(load_checkpoint(path))
    return evaluate_loss(model, stream, PARAMS["train"]["seq_len"], 8, CPU)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, chorale_streams, event_rep):
    """An uninterrupted 3-epoch run; a copy of last.pt is kept as it was after epoch 1."""
    out = tmp_path_factory.mktemp("full")
    snapshot = tmp_path_factory.mktemp("after_epoch_1") / "last.pt"
    seen: list[dict] = []

    def on_epoch(row):
        seen.append(dict(row))
        if row["epoch"] == 1:
            shutil.copy(out / "last.pt", snapshot)

    train, val = chorale_streams
    result = train_model(event_rep, train, val, PARAMS, out, "chorales", on_epoch=on_epoch)
    return out, result, seen, snapshot


def test_loss_goes_down_across_epochs(full_run):
    _, result, _, _ = full_run
    rows = result.history.rows
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    train = [r["train_loss"] for r in rows]
    assert train[0] > train[1] > train[2], train
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]
    # an untrained model is near log(vocab) nats/token; three tiny epochs must beat that clearly
    assert rows[-1]["val_loss"] < np.log(279) - 0.3
    for r in rows:
        assert r["train_perplexity"] == pytest.approx(np.exp(r["train_loss"]), rel=1e-3)
        assert r["val_perplexity"] == pytest.approx(np.exp(r["val_loss"]), rel=1e-3)


def test_on_epoch_sees_every_row_of_the_history(full_run):
    _, result, seen, _ = full_run
    assert seen == result.history.rows


def test_best_and_last_checkpoints_hold_the_best_and_the_final_epoch(full_run, chorale_streams):
    out, result, _, _ = full_run
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    best = result.history.best()
    assert load_checkpoint(out / "best.pt")["epoch"] == best["epoch"]
    assert load_checkpoint(out / "last.pt")["epoch"] == 3
    assert "optimizer_state" not in load_checkpoint(out / "best.pt"), "best.pt is for sampling: weights only"
    val = chorale_streams[1]
    assert checkpoint_loss(out / "best.pt", val) == pytest.approx(best["val_loss"], abs=2e-5)
    assert checkpoint_loss(out / "last.pt", val) == pytest.approx(result.history.rows[-1]["val_loss"], abs=2e-5)


def test_training_twice_with_the_same_params_gives_identical_history_and_weights(
    full_run, tmp_path, chorale_streams, event_rep
):
    out, result, _, _ = full_run
    train, val = chorale_streams
    again = train_model(event_rep, train, val, PARAMS, tmp_path, "chorales")
    assert again.resumed_from_epoch == 0
    assert without_timing(again.history.rows) == without_timing(result.history.rows)
    assert same_weights(weights(tmp_path / "last.pt"), weights(out / "last.pt"))


def test_an_interrupted_run_resumes_from_last_pt_and_ends_as_if_never_stopped(
    full_run, tmp_path, chorale_streams, event_rep
):
    out, result, _, snapshot = full_run
    shutil.copy(snapshot, tmp_path / "last.pt")  # the state a crash after epoch 1 leaves behind
    train, val = chorale_streams
    resumed = train_model(event_rep, train, val, PARAMS, tmp_path, "chorales")
    assert resumed.resumed_from_epoch == 1
    assert without_timing(resumed.history.rows) == without_timing(result.history.rows)
    assert same_weights(weights(tmp_path / "last.pt"), weights(out / "last.pt"))


def test_a_resumed_run_whose_best_epoch_came_before_the_interruption_keeps_the_best_weights(
    tmp_path, chorale_streams, event_rep
):
    # `dvc repro` deletes best.pt before the train stage runs (last.pt persists), so a resumed
    # run has to rebuild best.pt itself. Validation on random tokens: the more the model learns
    # the chorales, the worse it gets, so epoch 1 (before the interruption) is the best one.
    train, _ = chorale_streams
    noise = np.random.default_rng(0).integers(3, len(event_rep.vocab), 600)
    first, second = tmp_path / "first", tmp_path / "second"
    second.mkdir()

    def on_epoch(row):
        if row["epoch"] == 1:
            shutil.copy(first / "last.pt", second / "last.pt")

    full = train_model(event_rep, train, noise, PARAMS, first, "chorales", on_epoch=on_epoch)
    assert full.history.best()["epoch"] == 1, "the set-up needs the best epoch to be the first"
    resumed = train_model(event_rep, train, noise, PARAMS, second, "chorales")
    assert resumed.resumed_from_epoch == 1
    assert load_checkpoint(second / "best.pt")["epoch"] == 1
    assert checkpoint_loss(second / "best.pt", noise) == pytest.approx(full.history.best()["val_loss"], abs=2e-5)


def test_changing_the_number_of_epochs_starts_a_new_run_instead_of_resuming(
    full_run, tmp_path, chorale_streams, event_rep
):
    # the run fingerprint covers every train param (epochs set the LR schedule), so a finished
    # 2-epoch run is not continued by a 3-epoch one: it is retrained from scratch
    _, result, _, _ = full_run
    train, val = chorale_streams
    short = train_model(
        event_rep, train, val, tiny_params(model={"dropout": 0.1}, epochs=2, transpose=2), tmp_path, "chorales"
    )
    assert len(short.history.rows) == 2
    longer = train_model(event_rep, train, val, PARAMS, tmp_path, "chorales")
    assert longer.resumed_from_epoch == 0
    assert without_timing(longer.history.rows) == without_timing(result.history.rows)


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("other params", lambda p: p["train"].update(lr=0.002)),
        ("other data", None),
    ],
)
def test_last_pt_of_a_different_run_is_not_resumed(full_run, tmp_path, chorale_streams, event_rep, what, change):
    _, _, _, snapshot = full_run
    shutil.copy(snapshot, tmp_path / "last.pt")
    params = {k: dict(v) for k, v in PARAMS.items()}
    fingerprint = "chorales"
    if change:
        change(params)
    else:
        fingerprint = "other chorales"
    train, val = chorale_streams
    params["train"]["epochs"] = 2
    result = train_model(event_rep, train, val, params, tmp_path, fingerprint)
    assert result.resumed_from_epoch == 0, what
    assert [r["epoch"] for r in result.history.rows] == [1, 2]


def test_an_unreadable_last_pt_is_ignored_with_a_warning(tmp_path, chorale_streams, event_rep, capsys):
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint at all")
    train, val = chorale_streams
    result = train_model(event_rep, train, val, tiny_params(epochs=1), tmp_path, "chorales")
    assert result.resumed_from_epoch == 0
    assert "warning" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1


# -- windows ----------------------------------------------------------------------------------


def note_parts(rep: EventRepresentation, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(is NOTE_ON/NOTE_OFF, kind: 1 = on / 2 = off / 0 = other, pitch) per id."""
    on = (ids >= rep.on_base) & (ids < rep.off_base)
    off = (ids >= rep.off_base) & (ids < rep.shift_base)
    pitch = np.where(on, ids - rep.on_base, np.where(off, ids - rep.off_base, 0)) + rep.pitch_min
    return on | off, np.where(on, 1, np.where(off, 2, 0)), pitch


def find_shifts(rep: EventRepresentation, stream: np.ndarray, window: np.ndarray) -> set[int]:
    """Every transposition d such that some window of the stream, with its notes moved by d
    semitones (NOTE_ON and NOTE_OFF alike), equals `window`."""
    cands = np.lib.stride_tricks.sliding_window_view(stream, window.shape[0])
    w_note, w_kind, w_pitch = note_parts(rep, window)
    c_note, c_kind, c_pitch = note_parts(rep, cands)
    same_frame = (c_kind == w_kind).all(1) & np.where(w_note, True, cands == window).all(1)
    shifts = set()
    for c in np.flatnonzero(same_frame):
        d = w_pitch[w_note] - c_pitch[c][w_note]
        if d.size == 0:
            shifts.add(0)
        elif (d == d[0]).all():
            shifts.add(int(d[0]))
    return shifts


def test_transposition_moves_note_on_and_note_off_by_the_same_amount_within_range(chorale_streams, event_rep):
    stream = chorale_streams[0]
    sampler = WindowSampler(stream, seq_len=24, batch_size=16, seed=3, transpose=5, rep=event_rep)
    moved = 0
    for _ in range(4):
        x, y = sampler.batch()
        assert x.shape == y.shape == (16, 24)
        assert torch.equal(x[:, 1:], y[:, :-1]), "targets must be the inputs shifted by one"
        for window in torch.cat([x, y[:, -1:]], 1).numpy():
            assert ((window >= 0) & (window < len(event_rep.vocab))).all()
            shifts = find_shifts(event_rep, stream, window)
            assert shifts, f"window is no transposed piece of the stream: {event_rep.ids_to_tokens(window)}"
            assert min(abs(d) for d in shifts) <= 5
            moved += 0 not in shifts
    assert moved >= 16, "transposition seems never to happen"


def test_transposition_never_pushes_a_note_out_of_the_pitch_range():
    rep = EventRepresentation(0.05, 10, 0, 60, 72)
    on, off, shift = rep.token_to_id["NOTE_ON_72"], rep.token_to_id["NOTE_OFF_72"], rep.token_to_id["TIME_SHIFT_2"]
    low_on, low_off = rep.token_to_id["NOTE_ON_60"], rep.token_to_id["NOTE_OFF_60"]
    top_only = np.array([BOS] + [on, shift, off, shift] * 50 + [EOS], dtype=np.int64)
    both_ends = np.array([BOS] + [on, low_on, shift, off, low_off, shift] * 40 + [EOS], dtype=np.int64)
    for stream, allowed in ((top_only, range(-12, 1)), (both_ends, [0])):
        sampler = WindowSampler(stream, seq_len=12, batch_size=32, seed=0, transpose=12, rep=rep)
        for _ in range(5):
            x, y = sampler.batch()
            for window in torch.cat([x, y[:, -1:]], 1).numpy():
                shifts = find_shifts(rep, stream, window)
                assert shifts & set(allowed), (rep.ids_to_tokens(window), shifts)


def test_without_transposition_windows_are_verbatim_slices_of_the_stream(chorale_streams):
    stream = chorale_streams[0]
    slices = np.lib.stride_tricks.sliding_window_view(stream, 21)
    x, y = WindowSampler(stream, seq_len=20, batch_size=8, seed=1).batch()
    assert torch.equal(x[:, 1:], y[:, :-1])
    for window in torch.cat([x, y[:, -1:]], 1).numpy():
        assert (slices == window).all(1).any()


def test_evaluate_loss_is_the_mean_over_real_targets_and_ignores_pad(chorale_streams, event_rep):
    torch.manual_seed(0)
    model = LSTMLM(LSTMConfig(len(event_rep.vocab), emb_dim=16, hidden_dim=32, num_layers=1, dropout=0.0)).eval()
    stream = chorale_streams[1][:150]  # 149 targets: 4 full windows of 32 and one of 21, padded
    seq_len = 32
    total, count = 0.0, 0
    with torch.no_grad():
        for a in range(0, len(stream) - 1, seq_len):
            b = min(a + seq_len, len(stream) - 1)
            logits, _ = model(torch.from_numpy(stream[a:b]).unsqueeze(0))
            target = torch.from_numpy(stream[a + 1 : b + 1])
            total += float(torch.nn.functional.cross_entropy(logits[0], target, reduction="sum"))
            count += b - a
    assert count == 149
    expected = total / count
    for batch_size in (1, 2, 8):
        assert evaluate_loss(model, stream, seq_len, batch_size, CPU) == pytest.approx(expected, rel=1e-5)
    # a model that puts all its mass on <PAD> would look perfect if <PAD> targets counted
    with torch.no_grad():
        model.head.bias[PAD] = 50.0
    assert evaluate_loss(model, stream, seq_len, 8, CPU) > 10


# -- truncated backpropagation through time (train.stateful) -------------------------------------


def test_stream_sampler_rows_read_on_where_the_batch_before_stopped_and_shards_split_them(chorale_streams):
    from midigen.data.windows import StreamSampler

    train, _ = chorale_streams
    whole = StreamSampler(train, 16, 4, seed=3)
    n = train.shape[0]
    heads = whole.heads.copy()
    assert ((heads - heads[0]) % n).tolist() == [0, n // 4, 2 * (n // 4), 3 * (n // 4)]  # evenly spaced
    batches = [whole.batch() for _ in range(3)]
    for k, (x, y) in enumerate(batches):
        for r in range(4):
            idx = (heads[r] + 16 * k + np.arange(17)) % n
            assert x[r].tolist() == train[idx[:-1]].tolist() and y[r].tolist() == train[idx[1:]].tolist()
    # two ranks read the two halves of the same heads; the state resumes a sampler exactly
    again = StreamSampler(train, 16, 4, seed=3, shard=(1, 2))
    assert torch.equal(again.batch()[0], batches[0][0][2:])
    resumed = StreamSampler(train, 16, 4, seed=99)
    resumed.set_state(json.loads(json.dumps(StreamSampler(train, 16, 4, seed=3).get_state())))
    assert torch.equal(resumed.batch()[0], batches[0][0])


def test_a_stateful_step_starts_from_the_state_the_step_before_ended_with(chorale_streams, event_rep):
    """Two stateful training steps over consecutive windows compute exactly the loss of one pass
    over both windows at once: the LSTM state carries over (without dropout, in eval mode)."""
    from midigen.data.windows import StreamSampler
    from midigen.models import family as family_of

    params = tiny_params(stateful=True, seq_len=16, batch_size=2)
    family = family_of("lstm")
    torch.manual_seed(0)
    net = family.build(params["model"], event_rep).eval()
    sampler = StreamSampler(chorale_streams[0], 16, 2, seed=1)
    heads = sampler.heads.copy()
    with torch.no_grad():
        losses = [family.train_step(net, sampler.batch(), k, params).loss.item() for k in range(2)]
        n = chorale_streams[0].shape[0]
        ids = torch.as_tensor(chorale_streams[0][(heads[:, None] + np.arange(33)[None, :]) % n])
        logits, _ = net(ids[:, :-1])
        second = torch.nn.functional.cross_entropy(logits[:, 16:].reshape(-1, logits.size(-1)), ids[:, 17:].reshape(-1))
    assert losses[1] == pytest.approx(second.item(), rel=1e-5)
    plain = tiny_params(stateful=False, seq_len=16, batch_size=2)
    with torch.no_grad():
        fresh = family.train_step(net, StreamSampler(chorale_streams[0], 16, 2, seed=1).batch(), 0, plain)
        later = family.train_step(net, (ids[:, 16:32], ids[:, 17:33]), 1, plain).loss.item()
    assert fresh.loss.item() == pytest.approx(losses[0], rel=1e-5)
    assert abs(later - second.item()) > 1e-3  # without the carried state the second window reads differently


def test_stateful_training_is_refused_for_models_without_a_carried_state(chorale_streams, event_rep, tmp_path):
    from midigen.errors import ParamsError

    params = tiny_params(
        {
            "kind": "transformer",
            "layers": 1,
            "heads": 2,
            "d_model": 16,
            "d_ff": 32,
            "context": 64,
            "position": "rotary",
        },
        stateful=True,
    )
    with pytest.raises(ParamsError, match="train.stateful"):
        train_model(event_rep, *chorale_streams, params, tmp_path, "fp")
