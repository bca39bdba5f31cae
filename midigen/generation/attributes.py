"""Latent attribute vectors (MusicVAE paper, Roberts et al. 2018, section 5.3; never released by
Magenta): for each attribute of a window, the mean posterior mean z of the training windows in
its top quartile minus that of its bottom quartile. Adding a multiple of a vector to z moves
that attribute of the decoded pattern; evaluate checks that it does, monotonically.

Attributes, per window (in the window's own units):
- density: hits (class x step) per bar; density_<class>: the same for one drum class;
- syncopation: share of hits on the off-beat sixteenths (the 2nd and 4th of every beat);
- groove only: velocity, the mean MIDI velocity of the hits; laid_back, their mean offset in
  steps (> 0: behind the beat); swing, the mean offset of off-beat-sixteenth hits minus that of
  the on-beat ones (> 0: swung).
"""

from __future__ import annotations

import numpy as np
import torch

from midigen.errors import ParamsError
from midigen.models.musicvae import MusicVAE
from midigen.representations.grid import GridRepresentation

#: training windows whose posterior means make the vectors, at most (spread evenly)
MAX_WINDOWS = 4096
#: multiples of a vector the monotonicity check decodes at
SCALES = np.linspace(-2.0, 2.0, 9)
#: prior samples moved in that check (enough that sampling noise rarely swaps two scales)
PROBES = 256
#: sampled, not argmax: a rare class (toms) rarely wins an argmax, so decoded by argmax its
#: density would stay 0 over most scales however far z moves
PROBE_TEMPERATURE = 1.0
#: what an attribute vector needs: windows with the attribute defined, at least
MIN_WINDOWS = 8
#: attributes of how hits are placed or played, not of how many there are: their vectors are
#: made orthogonal to density's (in real drumming the syncopated and the loud windows are also
#: the busy ones, so their raw vectors mostly add or remove hits, and a window moved far enough
#: the other way has too few hits left to carry the attribute at all)
PER_HIT = ("syncopation", "velocity", "laid_back", "swing")


def window_attributes(windows: np.ndarray, rep: GridRepresentation) -> dict[str, np.ndarray]:
    """Every attribute of every window (n,) (NaN where a window has no hit to average over)."""
    hits = rep.class_hits(windows)
    bars = hits.shape[1] / rep.steps_per_bar
    total = hits.sum(axis=(1, 2)).astype(np.float64)
    off = np.arange(hits.shape[1]) % 2 == 1
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"density": total / bars, "syncopation": hits[:, off].sum(axis=(1, 2)) / total}
        if rep.head == "groove":
            hit, velocity, shift = rep.features(windows)
            out["velocity"] = (velocity * hit).sum(axis=(1, 2)) / total
            out["laid_back"] = (shift * hit).sum(axis=(1, 2)) / total
            late = (shift * hit)[:, off].sum(axis=(1, 2)) / hit[:, off].sum(axis=(1, 2))
            early = (shift * hit)[:, ~off].sum(axis=(1, 2)) / hit[:, ~off].sum(axis=(1, 2))
            out["swing"] = late - early
    for c, name in enumerate(rep.class_names):
        out[f"density_{name}"] = hits[..., c].sum(axis=1) / bars
    return out


@torch.no_grad()
def posterior_means(model: MusicVAE, windows: np.ndarray, device, transform=None, batch: int = 256) -> np.ndarray:
    """mu of q(z|x) for windows (n, T), read through `transform` (a task's input): (n, z_dim)."""
    model.eval()
    out = []
    for i in range(0, windows.shape[0], batch):
        w = np.asarray(windows[i : i + batch], dtype=np.int64)
        x = torch.as_tensor(w if transform is None else transform(w), device=device)
        out.append(model.encode(x)[0].float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.z_dim), dtype=np.float32)


def attribute_vectors(
    model: MusicVAE, rep: GridRepresentation, windows: np.ndarray, transform, device, seed: int = 0
) -> dict[str, list[float]]:
    """name -> top-quartile minus bottom-quartile mean of the posterior means of `windows`
    (at most MAX_WINDOWS of them). An attribute defined on fewer than MIN_WINDOWS windows, or
    equal in both quartiles (a class never hit), gets no vector.

    Ties are broken at random (seeded): most windows have no tom or no offset at all, and
    breaking such ties by position would fill one quartile with the first pieces and the other
    with the last, so the vector would point from one set of songs to another. The PER_HIT
    vectors lose their component along density's."""
    windows = np.asarray(windows)
    if windows.shape[0] > MAX_WINDOWS:
        windows = windows[np.linspace(0, windows.shape[0] - 1, MAX_WINDOWS).astype(np.int64)]
    mu = posterior_means(model, windows, device, transform)
    shuffled = np.random.default_rng(seed).permutation(windows.shape[0])
    vectors = {}
    for name, values in window_attributes(windows, rep).items():
        defined = shuffled[np.isfinite(values[shuffled])]
        if defined.size < MIN_WINDOWS:
            continue
        order = defined[np.argsort(values[defined], kind="stable")]
        quarter = order.size // 4
        low, high = order[:quarter], order[-quarter:]
        if values[high].mean() <= values[low].mean():
            continue
        vectors[name] = mu[high].mean(axis=0) - mu[low].mean(axis=0)
    if "density" in vectors:
        d = vectors["density"] / np.linalg.norm(vectors["density"])
        for name in PER_HIT:
            if name in vectors:
                vectors[name] = vectors[name] - (vectors[name] @ d) * d
    return {name: [round(float(x), 6) for x in v] for name, v in vectors.items()}


def parse_attributes(texts: list[str]) -> tuple[tuple[str, float], ...]:
    """`--attribute name=+1.5` flags -> ((name, 1.5), ...); ParamsError for a malformed one."""
    out = []
    for text in texts:
        name, sep, amount = text.partition("=")
        try:
            value = float(amount)
        except ValueError:
            value = float("nan")
        if not sep or not name.strip() or not np.isfinite(value):
            raise ParamsError(f"--attribute {text!r}: expected NAME=AMOUNT, e.g. density=+1.5")
        out.append((name.strip(), value))
    return tuple(out)


def attribute_shift(model: MusicVAE, amounts: tuple[tuple[str, float], ...]) -> torch.Tensor:
    """The z_dim vector sum(amount x vector) for (name, amount) pairs; ParamsError naming the
    attributes the checkpoint has when one is unknown."""
    vectors = model.config.attributes
    shift = torch.zeros(model.config.z_dim)
    for name, amount in amounts:
        if name not in vectors:
            known = ", ".join(sorted(vectors)) or "none (trained before attribute vectors existed: retrain)"
            raise ParamsError(f"--attribute {name}: not an attribute of this checkpoint; it has: {known}")
        shift += amount * torch.tensor(vectors[name])
    return shift


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rank correlation (ties: mean ranks); None when y is constant or undefined."""
    y = np.asarray(y, dtype=np.float64)
    if not np.isfinite(y).all() or np.ptp(y) == 0:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


@torch.no_grad()
def monotonicity(model: MusicVAE, rep: GridRepresentation, seed: int, device) -> dict[str, dict]:
    """For every attribute vector: the attribute of windows decoded (sampled) from PROBES prior
    samples, as `sample --attribute` moves them, each moved by SCALES x the vector, averaged
    per scale; and Spearman's correlation of those means with the scale (1 = the attribute
    rises with every step along the vector)."""
    vectors = model.config.attributes
    if not vectors:
        return {}
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    z = torch.randn(PROBES, model.config.z_dim, generator=gen, device=device)
    probes = z.shape[0]
    names = sorted(vectors)
    v = torch.tensor([vectors[n] for n in names], device=device)  # (A, z_dim)
    per_scale = []
    for scale in SCALES:
        # the same seed at every scale: each window meets the same random draws, so what differs
        # between scales is the move along the vector, not the sampling noise
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
        zs = (z[None] + float(scale) * v[:, None, :]).reshape(-1, model.config.z_dim)  # (A * P, z_dim)
        per_scale.append(model.decode(zs, PROBE_TEMPERATURE, gen).cpu().numpy().reshape(len(names), probes, -1))
    ids = np.stack(per_scale, axis=1).reshape(len(names), SCALES.shape[0] * probes, -1)
    out = {}
    for a, name in enumerate(names):
        values = window_attributes(ids[a], rep)[name].reshape(SCALES.shape[0], probes)
        with np.errstate(invalid="ignore"):
            means = np.array([np.nanmean(row) if np.isfinite(row).any() else np.nan for row in values])
        rho = spearman(SCALES, means)
        out[name] = {"spearman": None if rho is None else round(rho, 4), "values": [round(float(m), 4) for m in means]}
    return out
