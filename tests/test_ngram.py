"""KneserNeyLM: normalisation, agreement with a brute-force reference, streaming state, persistence, fit quality."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
import torch

from midigen.models.ngram import KneserNeyLM


def _random_corpus(n: int, vocab: int, seed: int) -> np.ndarray:
    """Pieces framed BOS=1 ... EOS=2 of ids drawn (skewed) from 3..vocab-1."""
    rng = np.random.default_rng(seed)
    out: list[int] = []
    while len(out) < n:
        length = int(rng.integers(3, 12))
        body = rng.zipf(1.6, size=length) % (vocab - 3) + 3
        out += [1, *body.tolist(), 2]
    return np.asarray(out[:n], dtype=np.int64)


def _pattern_corpus(n: int, vocab: int, seed: int, noise: float = 0.05) -> np.ndarray:
    """A fixed 12-id phrase repeated, each id replaced by a random one with probability `noise`."""
    rng = np.random.default_rng(seed)
    phrase = np.random.default_rng(1234).integers(3, vocab, size=12)
    ids = np.tile(phrase, n // len(phrase) + 1)[:n]
    flip = rng.random(n) < noise
    ids[flip] = rng.integers(3, vocab, size=int(flip.sum()))
    return ids.astype(np.int64)


def _next_logprobs(model: KneserNeyLM, context: tuple[int, ...]) -> torch.Tensor:
    """log p(. | context) for a context of any length 0..order-1 (empty = after a 'no token' -1)."""
    x = torch.tensor([list(context) if context else [-1]], dtype=torch.long)
    logits, _ = model(x)
    return logits[0, -1]


def _nll(model: KneserNeyLM, ids: np.ndarray) -> float:
    x = torch.from_numpy(ids)[None]
    logits, _ = model(x)
    return float(-logits[0, :-1].gather(1, x[0, 1:, None]).mean())


class _ReferenceKN:
    """Brute-force pure-Python interpolated Kneser-Ney with the same per-order discount rule."""

    def __init__(self, tokens: list[int], vocab: int, order: int, fallback: float, pad_id: int | None = 0):
        self.vocab, self.order = vocab, order
        raw = {
            k: Counter(
                tuple(tokens[i : i + k])
                for i in range(len(tokens) - k + 1)
                if pad_id is None or pad_id not in tokens[i : i + k]
            )
            for k in range(1, order + 1)
        }
        self.counts: dict[int, dict[tuple[int, ...], int]] = {order: dict(raw[order])}
        for k in range(1, order):
            cont: Counter = Counter()
            for gram in raw[k + 1]:
                cont[gram[1:]] += 1  # one per distinct left neighbour
            self.counts[k] = dict(cont)
        self.discounts = {}
        for k, table in self.counts.items():
            n1 = sum(1 for c in table.values() if c == 1)
            n2 = sum(1 for c in table.values() if c == 2)
            self.discounts[k] = n1 / (n1 + 2 * n2) if n1 and n2 else fallback

    def prob(self, k: int, h: tuple[int, ...], w: int) -> float:
        if k == 0:
            return 1.0 / self.vocab
        table, D = self.counts[k], self.discounts[k]
        followers = [table.get(h + (v,), 0) for v in range(self.vocab)]
        denom = sum(followers)
        lower = self.prob(k - 1, h[1:], w)
        if denom == 0:
            return lower
        gamma = D * sum(1 for c in followers if c > 0) / denom
        return max(followers[w] - D, 0.0) / denom + gamma * lower

    def distribution(self, context: tuple[int, ...]) -> list[float]:
        return [self.prob(len(context) + 1, context, w) for w in range(self.vocab)]


def test_probabilities_sum_to_one_on_seen_and_unseen_contexts():
    vocab = 40
    train = _random_corpus(3000, vocab, seed=0)
    train = train[(train < 30)]  # ids 30..39 never occur in training
    model = KneserNeyLM(vocab, order=4).fit(train)
    rng = np.random.default_rng(1)
    seen = torch.from_numpy(_random_corpus(400, 30, seed=2)).view(4, 100)
    unseen = torch.from_numpy(rng.integers(30, vocab, size=(4, 50)))
    mixed = torch.from_numpy(rng.integers(0, vocab, size=(8, 25)))
    for x in (seen, unseen, mixed):
        logits, _ = model(x)
        assert logits.shape == (*x.shape, vocab) and logits.dtype == torch.float32
        total = logits.double().exp().sum(-1)
        torch.testing.assert_close(total, torch.ones_like(total), atol=1e-5, rtol=0)
        assert torch.isfinite(logits).all()  # every id keeps non-zero mass (uniform floor)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_reference_for_every_context(seed):
    vocab, order = 6, 3
    rng = np.random.default_rng(seed)
    tokens = rng.choice(vocab, size=40, p=[0.05, 0.15, 0.3, 0.25, 0.15, 0.1]).astype(np.int64)
    model = KneserNeyLM(vocab, order=order, discount=0.6).fit(tokens)
    ref = _ReferenceKN(tokens.tolist(), vocab, order, fallback=0.6)
    assert model.discounts.tolist() == pytest.approx([ref.discounts[k] for k in range(1, order + 1)])
    for length in range(order):
        for context in itertools.product(range(vocab), repeat=length):
            expected = torch.tensor(ref.distribution(context), dtype=torch.float64)
            got = _next_logprobs(model, context).double().exp()
            torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5, msg=f"context {context}")


def test_uses_the_fixed_discount_when_the_estimate_is_degenerate():
    tokens = np.array([3, 4, 5] * 7, dtype=np.int64)  # every trigram count is 6 or 7: no n1, no n2
    model = KneserNeyLM(6, order=3, discount=0.4).fit(tokens)
    ref = _ReferenceKN(tokens.tolist(), 6, 3, fallback=0.4)
    assert model.discounts[2].item() == pytest.approx(0.4)
    for context in [(3, 4), (4,), (5, 3), (0, 0)]:
        expected = torch.tensor(ref.distribution(context), dtype=torch.float64)
        torch.testing.assert_close(_next_logprobs(model, context).double().exp(), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("order", [1, 2, 4])
def test_chunked_forward_with_state_equals_one_full_forward(order):
    vocab = 30
    model = KneserNeyLM(vocab, order=order).fit(_random_corpus(5000, vocab, seed=3))
    x = torch.from_numpy(_random_corpus(3 * 40, vocab, seed=4)).view(3, 40)
    full, full_state = model(x)
    parts, state = [], None
    for a, b in [(0, 1), (1, 2), (2, 7), (7, 8), (8, 25), (25, 40)]:
        logits, state = model(x[:, a:b], state)
        parts.append(logits)
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-6, rtol=1e-6)
    assert torch.equal(state, full_state)
    assert torch.equal(full_state, x[:, x.shape[1] - (order - 1) :])


def test_state_starts_padded_with_no_token_and_keep_rows_selects_rows():
    model = KneserNeyLM(10, order=4).fit(_random_corpus(500, 10, seed=5))
    _, state = model(torch.tensor([[5], [6], [7]]))
    assert state.tolist() == [[-1, -1, 5], [-1, -1, 6], [-1, -1, 7]]
    kept = model.keep_rows(state, torch.tensor([True, False, True]))
    assert kept.tolist() == [[-1, -1, 5], [-1, -1, 7]]
    assert model.keep_rows(None, torch.tensor([True])) is None


def test_state_dict_round_trip_into_a_fresh_module_gives_identical_log_probs(tmp_path):
    vocab = 50
    model = KneserNeyLM(vocab, order=4, discount=0.7).fit(_random_corpus(4000, vocab, seed=6))
    path = tmp_path / "kn.pt"
    torch.save({"config": model.config_dict(), "state": model.state_dict()}, path)
    blob = torch.load(path, weights_only=True)
    assert blob["config"] == {"vocab_size": vocab, "order": 4, "discount": 0.7}
    fresh = KneserNeyLM(**blob["config"])
    assert not fresh.is_fitted
    fresh.load_state_dict(blob["state"])
    x = torch.from_numpy(np.random.default_rng(7).integers(0, vocab, size=(5, 33)))
    assert torch.equal(fresh(x)[0], model(x)[0])
    for name, buf in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], buf), name


def test_unfitted_model_refuses_to_score_and_mismatched_vocab_does_not_load():
    with pytest.raises(RuntimeError, match="not fitted"):
        KneserNeyLM(8, order=3)(torch.zeros(1, 2, dtype=torch.long))
    fitted = KneserNeyLM(8, order=3).fit(_random_corpus(300, 8, seed=8))
    with pytest.raises(RuntimeError, match="size mismatch"):
        KneserNeyLM(9, order=3).load_state_dict(fitted.state_dict())


def test_fitted_model_predicts_a_repeated_pattern_far_better_than_uniform_and_unigram():
    vocab = 64
    train = _pattern_corpus(20_000, vocab, seed=9)
    held_out = _pattern_corpus(2_000, vocab, seed=10)
    nll = {order: _nll(KneserNeyLM(vocab, order=order).fit(train), held_out) for order in (1, 2, 4)}
    assert nll[4] < 0.25 * math.log(vocab)
    assert nll[4] < nll[2] < nll[1]
    assert nll[1] > 0.8 * math.log(12)  # a unigram model cannot see the phrase order


class _SliceOnlyStream:
    """Like a memory-mapped split: len, shape and stream[a:b] -> int64 array; nothing else."""

    def __init__(self, ids: np.ndarray):
        self._ids = ids
        self.shape = ids.shape
        self.sliced: list[slice] = []

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, index):
        if not isinstance(index, slice):
            raise TypeError("slices only")
        self.sliced.append(index)
        return self._ids[index].copy()

    def __array__(self, *args, **kwargs):
        raise AssertionError("fit must not convert the whole stream object with np.asarray")

    def __iter__(self):
        raise AssertionError("fit must not iterate over tokens")


def test_fit_accepts_a_stream_that_only_supports_len_shape_and_slicing():
    vocab = 20
    ids = _random_corpus(2000, vocab, seed=11)
    stream = _SliceOnlyStream(ids)
    via_stream = KneserNeyLM(vocab, order=3).fit(stream)
    via_array = KneserNeyLM(vocab, order=3).fit(ids)
    assert stream.sliced
    x = torch.from_numpy(ids[:200]).view(4, 50)
    assert torch.equal(via_stream(x)[0], via_array(x)[0])


def test_fit_works_from_a_memory_mapped_split(tmp_path):
    ids = _random_corpus(1500, 16, seed=12)
    path = tmp_path / "train.bin"
    ids.tofile(path)
    mm = np.memmap(path, dtype=np.int64, mode="r")
    x = torch.from_numpy(ids[:60]).view(2, 30)
    assert torch.equal(KneserNeyLM(16).fit(mm)(x)[0], KneserNeyLM(16).fit(ids)(x)[0])


def test_fit_rejects_ids_outside_the_vocabulary():
    with pytest.raises(ValueError, match="ids must lie"):
        KneserNeyLM(5).fit(np.array([1, 2, 5], dtype=np.int64))


def test_padding_is_never_counted_as_a_target():
    ids = np.array([1, 3, 4, 2, 0, 0, 1, 3, 4, 2, 0, 1, 4, 3, 2], dtype=np.int64)
    vocab = 6
    model = KneserNeyLM(vocab, order=3).fit(ids, pad_id=0)
    ref = _ReferenceKN(ids.tolist(), vocab, 3, fallback=0.75, pad_id=0)
    floor = 1.0 / vocab
    for context in [(), (2,), (4, 2), (3, 4)]:
        p = _next_logprobs(model, context).double().exp()
        torch.testing.assert_close(p, torch.tensor(ref.distribution(context), dtype=torch.float64))
        assert p[0] < floor  # only the smoothed uniform share


# -- the ngram family in the one training loop, checkpoints and sampling ------------------------


def test_the_ngram_family_trains_in_the_loop_and_its_checkpoint_scores_the_same(tmp_path, chorale_streams, event_rep):
    from conftest import tiny_params

    from midigen.evaluation.lm_eval import evaluate_loss
    from midigen.generation.generate import sample
    from midigen.models.base import SampleRequest
    from midigen.training.checkpoint import load_model
    from midigen.training.loop import train_model

    params = tiny_params(model={"kind": "ngram", "order": 3})
    train, val = chorale_streams
    result = train_model(event_rep, train, val, params, tmp_path, data_fingerprint="chorales")
    (row,) = result.history.rows  # fitted once: one row
    unigram = KneserNeyLM(len(event_rep.vocab), 1).fit(train)
    unigram_val = evaluate_loss(unigram, val, params["train"]["seq_len"], 8, torch.device("cpu"))
    assert row["val_loss"] < unigram_val < math.log(len(event_rep.vocab))  # context helps, even on 4 chorales
    assert row["train_loss"] < 0.5 * row["val_loss"]  # counts fit their own data best
    loaded = load_model(tmp_path / "best.pt", "cpu", event_rep)
    assert isinstance(loaded.model, KneserNeyLM) and loaded.model.order == 3
    again = evaluate_loss(loaded.model, val, params["train"]["seq_len"], 8, torch.device("cpu"))
    assert round(again, 5) == pytest.approx(row["val_loss"], abs=2e-5)
    pieces = sample(loaded, SampleRequest(num=3, seed=1, max_steps=40, top_k=20))
    assert len(pieces) == 3 and all(p[0] == 1 and 2 <= len(p) <= 41 for p in pieces)
    assert len(event_rep.decode(pieces[0])) > 0
