"""midigen.generation.sampling: top-k / top-p filtering and next-token sampling, row by row for a batch."""

from __future__ import annotations

import math

import pytest
import torch

from midigen.generation.sampling import filter_logits, sample_next


def log_probs(*probs: float) -> torch.Tensor:
    return torch.tensor([math.log(p) for p in probs])


def kept(logits: torch.Tensor) -> list[set[int]]:
    """Per row, the ids whose logit survived filtering."""
    rows = logits if logits.dim() == 2 else logits.unsqueeze(0)
    return [set(torch.isfinite(r).nonzero().flatten().tolist()) for r in rows]


@pytest.mark.parametrize("k", [1, 3, 7])
def test_top_k_keeps_exactly_the_k_largest_logits_of_each_row(k):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 20, generator=gen)  # distinct values: no ties
    out = filter_logits(logits, top_k=k)
    for row, keep in zip(logits, kept(out), strict=True):
        assert keep == set(torch.topk(row, k).indices.tolist())
    survivors = torch.isfinite(out)
    assert torch.equal(out[survivors], logits[survivors]), "kept logits must not change"


def test_top_k_of_zero_or_at_least_the_vocabulary_keeps_everything():
    logits = torch.randn(3, 10, generator=torch.Generator().manual_seed(1))
    for k in (0, 10, 50):
        assert torch.equal(filter_logits(logits, top_k=k), logits)


def test_filtering_does_not_modify_its_input():
    logits = torch.randn(2, 12, generator=torch.Generator().manual_seed(2))
    before = logits.clone()
    filter_logits(logits, top_k=3, top_p=0.5)
    assert torch.equal(logits, before)


@pytest.mark.parametrize(
    ("top_p", "expected"),
    [
        (0.3, {0}),  # the top token alone (0.5) already reaches p
        (0.5 - 1e-6, {0}),
        (0.75, {0, 1}),  # 0.5 + 0.3 = 0.8 is the smallest prefix >= 0.75
        (0.85, {0, 1, 2}),  # 0.95 >= 0.85
        (0.99, {0, 1, 2, 3}),
    ],
)
def test_top_p_keeps_the_smallest_set_of_most_likely_tokens_reaching_p(top_p, expected):
    logits = log_probs(0.5, 0.3, 0.15, 0.05)
    assert kept(filter_logits(logits, top_p=top_p))[0] == expected


def test_top_p_keeps_the_most_likely_token_even_for_a_tiny_p():
    logits = torch.randn(6, 30, generator=torch.Generator().manual_seed(3))
    for keep, row in zip(kept(filter_logits(logits, top_p=1e-6)), logits, strict=True):
        assert keep == {int(row.argmax())}


def test_top_p_is_applied_per_row():
    # row 0 is peaked (one token holds 0.9), row 1 is flat over 4 tokens
    logits = torch.stack([log_probs(0.9, 0.04, 0.03, 0.03), log_probs(0.25, 0.25, 0.25, 0.25) + 0.01 * torch.arange(4)])
    # row 1 sorted: ~0.258, 0.255, 0.248 (cum 0.76 >= 0.7), 0.240 dropped
    assert kept(filter_logits(logits, top_p=0.7)) == [{0}, {1, 2, 3}]


def test_top_p_of_one_keeps_everything():
    logits = torch.randn(2, 9, generator=torch.Generator().manual_seed(4))
    assert torch.equal(filter_logits(logits, top_p=1.0), logits)


def test_top_k_and_top_p_together_keep_the_top_p_set_among_the_top_k():
    # after top-k = 3 the renormalised probabilities are 0.5/0.95, 0.3/0.95, 0.15/0.95
    logits = log_probs(0.5, 0.3, 0.15, 0.05)
    assert kept(filter_logits(logits, top_k=3, top_p=0.9))[0] == {0, 1, 2}
    assert kept(filter_logits(logits, top_k=3, top_p=0.8))[0] == {0, 1}


def test_greedy_and_zero_temperature_give_the_argmax_of_each_row():
    logits = torch.randn(8, 25, generator=torch.Generator().manual_seed(5))
    expected = logits.argmax(-1)
    assert torch.equal(sample_next(logits, greedy=True), expected)
    assert torch.equal(sample_next(logits, temperature=0.0), expected)
    # a temperature close to 0 concentrates all mass on the argmax as well
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        assert torch.equal(sample_next(logits, temperature=1e-4, generator=gen), expected)


def test_sampling_with_a_seeded_generator_is_reproducible():
    logits = torch.zeros(64, 50)  # uniform: any difference in the random stream shows
    a = sample_next(logits, top_k=40, top_p=0.95, generator=torch.Generator().manual_seed(11))
    b = sample_next(logits, top_k=40, top_p=0.95, generator=torch.Generator().manual_seed(11))
    c = sample_next(logits, top_k=40, top_p=0.95, generator=torch.Generator().manual_seed(12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_a_batch_is_sampled_row_by_row():
    # each row allows exactly one token (a different one per row) after top-k = 1
    logits = torch.randn(6, 10, generator=torch.Generator().manual_seed(6))
    logits[torch.arange(6), torch.tensor([3, 0, 9, 3, 5, 1])] = 10.0
    out = sample_next(logits, top_k=1, generator=torch.Generator().manual_seed(0))
    assert out.shape == (6,)
    assert out.tolist() == [3, 0, 9, 3, 5, 1]
    # identical rows are independent draws, not one draw copied to every row
    same = sample_next(torch.zeros(32, 10), generator=torch.Generator().manual_seed(0))
    assert len(set(same.tolist())) > 1


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_sampled_frequencies_follow_the_tempered_distribution(temperature):
    probs = torch.tensor([0.6, 0.3, 0.1])
    logits = probs.log().repeat(20000, 1)
    ids = sample_next(logits, temperature=temperature, generator=torch.Generator().manual_seed(7))
    freq = torch.bincount(ids, minlength=3).float() / ids.numel()
    expected = probs ** (1 / temperature)
    expected /= expected.sum()
    assert torch.allclose(freq, expected, atol=0.015), (freq, expected)


def test_sampling_never_picks_a_filtered_token():
    logits = torch.randn(200, 40, generator=torch.Generator().manual_seed(8))
    allowed = kept(filter_logits(logits / 1.3, top_k=5, top_p=0.7))  # temperature applies before filtering
    ids = sample_next(logits, temperature=1.3, top_k=5, top_p=0.7, generator=torch.Generator().manual_seed(9))
    assert all(int(i) in a for i, a in zip(ids, allowed, strict=True))
