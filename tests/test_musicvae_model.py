"""MusicVAE: shapes, the ELBO terms, spherical interpolation, and that a small model can overfit."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from midigen.models.musicvae import MusicVAE, MusicVAEConfig, beta_schedule, interpolate, slerp

KICK, SNARE, HAT, OPEN_HAT, CRASH, RIDE = 1, 2, 4, 8, 128, 256  # DrumGrid token bits

#: small enough for a few seconds of training on one CPU core
TINY = dict(
    num_classes=512,
    z_dim=16,
    enc_hidden=64,
    enc_layers=1,
    conductor_hidden=64,
    conductor_layers=1,
    dec_hidden=64,
    dec_layers=1,
    emb_dim=32,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run faster on one thread than with threads fighting over 2 busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(**kw) -> MusicVAE:
    torch.manual_seed(0)
    return MusicVAE(MusicVAEConfig(**{**TINY, **kw}))


def eight_grooves() -> torch.Tensor:
    """8 four-bar DrumGrid windows: 4 cymbals on the 8ths x (kick on 1 and 3 | on every beat),
    snare on 2 and 4. Which groove it is can only come through z."""
    windows = []
    for cymbal, four_on_floor in itertools.product([HAT, OPEN_HAT, RIDE, CRASH], [False, True]):
        bar = np.zeros(16, dtype=np.int64)
        bar[::2] |= cymbal
        bar[[0, 4, 8, 12] if four_on_floor else [0, 8]] |= KICK
        bar[[4, 12]] |= SNARE
        windows.append(np.tile(bar, 4))
    return torch.from_numpy(np.stack(windows))


@pytest.mark.parametrize("decoder", ["hierarchical", "flat"])
@pytest.mark.parametrize("emb_dim", [32, 0])
def test_outputs_have_the_documented_shapes(decoder, emb_dim):
    model = tiny(decoder=decoder, emb_dim=emb_dim, enc_layers=2, conductor_layers=2, dec_layers=2)
    x = torch.randint(0, 512, (3, 64))
    logits, mu, sigma = model(x)
    assert logits.shape == (3, 64, 512)
    assert mu.shape == sigma.shape == (3, 16) and (sigma > 0).all()
    out = model.loss(x, beta=0.5, free_bits=1.0)
    assert set(out) == {"loss", "recon", "kl", "accuracy"}
    assert all(v.shape == () and torch.isfinite(v) for v in out.values())
    # an untrained model is close to uniform: about ln(512) nats per step
    assert out["recon"].item() == pytest.approx(64 * math.log(512), rel=0.1)
    ids = model.decode(torch.randn(3, 16))
    assert ids.shape == (3, 64) and ids.dtype == torch.long
    assert 0 <= int(ids.min()) and int(ids.max()) < 512
    assert model.reconstruct(x).shape == (3, 64)


def test_bars_and_steps_set_the_window_length():
    model = tiny(bars=2, steps_per_bar=12, num_classes=130)
    assert model.config.seq_len == 24
    assert model(torch.randint(0, 130, (2, 24)))[0].shape == (2, 24, 130)
    assert model.decode(torch.zeros(2, 16), temperature=0).shape == (2, 24)
    with pytest.raises(ValueError, match=r"\(batch, 24\)"):
        model.encode(torch.zeros(2, 64, dtype=torch.long))


def test_unknown_decoder_is_rejected():
    with pytest.raises(ValueError, match="hierarchical"):
        MusicVAEConfig(num_classes=4, decoder="transformer")


def test_config_dict_rebuilds_the_same_model():
    model = tiny(decoder="flat")
    again = MusicVAE(MusicVAEConfig(**model.config_dict()))
    again.load_state_dict(model.state_dict())
    x = eight_grooves()[:2]
    torch.testing.assert_close(again.encode(x), model.encode(x))


def test_kl_is_the_closed_form_gaussian_kl_summed_over_z():
    model = tiny()
    x = eight_grooves()
    mu, sigma = model.encode(x)
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, sigma), torch.distributions.Normal(0.0, 1.0)
    ).sum(-1)
    out = model.loss(x, beta=1.0, free_bits=0.0, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out["kl"], expected.mean())
    torch.testing.assert_close(out["loss"], out["recon"] + expected.mean())


def test_kl_term_is_zero_when_free_bits_exceed_the_kl():
    model = tiny()
    x = eight_grooves()
    out = model.loss(x, beta=1.0, free_bits=0.0)
    assert out["kl"].item() > 0
    free_bits = out["kl"].item() / math.log(2) * 4  # well above every example's KL, in bits
    out = model.loss(x, beta=1.0, free_bits=free_bits)
    assert out["kl"].item() > 0
    torch.testing.assert_close(out["loss"], out["recon"])
    # and the threshold is in bits: each example pays only the nats above free_bits * ln 2
    mu, sigma = model.encode(x)
    kl_each = (0.5 * (mu**2 + sigma**2 - 1) - sigma.log()).sum(-1).detach()
    fb = kl_each.median().item() / math.log(2)
    out = model.loss(x, beta=2.0, free_bits=fb)
    expected = 2.0 * torch.clamp(kl_each - fb * math.log(2), min=0).mean()
    torch.testing.assert_close(out["loss"] - out["recon"], expected)


def test_beta_schedule_rises_from_zero_to_max_beta():
    assert beta_schedule(0, 0.2, 0.99) == 0.0
    assert beta_schedule(100, 0.2, 0.99) == pytest.approx(0.2 * (1 - 0.99**100))
    assert beta_schedule(10_000, 0.2, 0.99) == pytest.approx(0.2)
    values = [beta_schedule(s, 0.2, 0.99) for s in range(0, 1000, 50)]
    assert values == sorted(values)


def test_slerp_ends_are_the_inputs_and_the_path_stays_on_the_sphere():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(32, generator=g), torch.randn(32, generator=g)
    b = b * a.norm() / b.norm()  # equal norms: the classic slerp keeps the norm all the way
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), b)
    path = interpolate(a, b, 7)
    assert path.shape == (7, 32)
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)
    torch.testing.assert_close(path.norm(dim=-1), a.norm().expand(7))
    assert ((0.5 * a + 0.5 * b).norm() < 0.9 * a.norm()).item()  # where linear interpolation dips
    # equal angles between consecutive points: uniform speed along the great circle
    unit = path / path.norm(dim=-1, keepdim=True)
    angles = torch.acos((unit[1:] * unit[:-1]).sum(-1).clamp(-1, 1))
    torch.testing.assert_close(angles, angles[0].expand(6))


def test_slerp_norms_interpolate_between_vectors_of_different_length():
    a = torch.tensor([3.0, 0.0, 0.0])
    b = torch.tensor([0.0, 1.0, 0.0])
    path = interpolate(a, b, 5)
    torch.testing.assert_close(path.norm(dim=-1), torch.tensor([3.0, 2.5, 2.0, 1.5, 1.0]))
    torch.testing.assert_close(path[2] / path[2].norm(), torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2))


def test_slerp_of_parallel_or_opposite_vectors_is_linear():
    a = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]])
    b = torch.tensor([[2.0, 4.0], [-1.0, -2.0], [1.0, 1.0]])
    mid = slerp(a, b, 0.25)
    assert torch.isfinite(mid).all()
    torch.testing.assert_close(mid, 0.75 * a + 0.25 * b)
    with pytest.raises(ValueError):
        interpolate(a, b, 1)


def test_decode_with_a_seeded_generator_is_reproducible():
    model = tiny()
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(3))
    first = model.decode(z, temperature=1.0, generator=torch.Generator().manual_seed(11))
    again = model.decode(z, temperature=1.0, generator=torch.Generator().manual_seed(11))
    other = model.decode(z, temperature=1.0, generator=torch.Generator().manual_seed(12))
    torch.testing.assert_close(first, again)
    assert not torch.equal(first, other)
    torch.testing.assert_close(model.decode(z, temperature=0), model.decode(z, temperature=0))


def test_decode_leaves_the_training_mode_as_it_was():
    model = tiny(dropout=0.3, dec_layers=2)
    model.train()
    model.decode(torch.zeros(1, 16))
    assert model.training
    model.eval()
    model.decode(torch.zeros(1, 16))
    assert not model.training


@pytest.mark.parametrize("decoder", ["hierarchical", "flat"])
def test_a_small_model_overfits_eight_grooves_and_reconstructs_them(decoder):
    x = eight_grooves()
    flat = x.numpy()
    _, counts = np.unique(flat, return_counts=True)
    most_common = counts.max() / flat.size  # always the silent step: 0.5
    # the best a decoder that ignores z can do: the majority token of every step
    per_step = np.mean([np.unique(flat[:, s], return_counts=True)[1].max() / len(flat) for s in range(64)])
    assert most_common == 0.5 and per_step < 0.62

    model = tiny(decoder=decoder)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        out = model.loss(x, beta=0.01, free_bits=0.0, generator=g)
        opt.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    assert out["accuracy"].item() > 0.85  # teacher-forced
    recon = model.reconstruct(x)  # free-running from mu, argmax
    accuracy = (recon == x).float().mean().item()
    assert accuracy > 0.85 and accuracy > per_step + 0.2
    # z tells at least the cymbals apart (the kick on 2 and 4 takes the hierarchical decoder
    # ~500 steps to learn; too long for a unit test)
    assert len({tuple(r.tolist()) for r in recon}) >= 4
