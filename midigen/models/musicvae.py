"""MusicVAE (Roberts et al. 2018, arXiv:1803.05428): a bidirectional-LSTM encoder to a Gaussian
latent z, and a hierarchical ("conductor") or flat LSTM decoder back to one token per step.

Input is a batch of fixed-length windows of step ids (B, T) with T = bars * steps_per_bar, as cut
by midigen.representations.grid. Losses are in nats; KL is per example, summed over z dims.

The output head follows the representation: "categorical" (one id per step, softmax and
cross-entropy: drums, melody) or "groove" (GrooVAE, midigen.models.groove: per step and drum
class a hit, a velocity and an offset; windows are (B, T * drum_classes) cell ids).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from midigen.errors import DataError
from midigen.generation.sampling import sample_next
from midigen.models import groove
from midigen.models.base import Family, SampleRequest, StepOutput, Totals

#: keeps log(sigma) finite when softplus underflows
_MIN_SIGMA = 1e-6


@dataclass
class MusicVAEConfig:
    num_classes: int
    steps_per_bar: int = 16
    bars: int = 4
    z_dim: int = 256
    enc_hidden: int = 512
    enc_layers: int = 2
    conductor_hidden: int = 256
    conductor_layers: int = 2
    dec_hidden: int = 256
    dec_layers: int = 2
    #: input embedding size; 0 = one-hot inputs (what Magenta feeds), start token = zeros
    emb_dim: int = 64
    #: "hierarchical" (conductor + one decoder pass per bar) or "flat" (one LSTM over all steps)
    decoder: str = "hierarchical"
    #: between stacked LSTM layers
    dropout: float = 0.0
    #: "categorical" (one id of num_classes per step) or "groove" (hit, velocity, offset per
    #: step and drum class; see midigen.models.groove)
    head: str = "categorical"
    #: groove head: drum classes per step (3 values each)
    drum_classes: int = 9
    #: groove head: the velocities' error, squared (Magenta) or l1 (groove.VELOCITY_LOSSES)
    velocity_loss: str = "squared"
    #: latent attribute vectors, name -> z_dim floats, found after training from the training
    #: windows (midigen.generation.attributes); empty until then
    attributes: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self):
        if self.decoder not in ("hierarchical", "flat"):
            raise ValueError(f"decoder must be 'hierarchical' or 'flat', got {self.decoder!r}")
        if self.head not in ("categorical", "groove"):
            raise ValueError(f"head must be 'categorical' or 'groove', got {self.head!r}")

    @property
    def seq_len(self) -> int:
        """Steps per window."""
        return self.bars * self.steps_per_bar

    @property
    def cells_per_step(self) -> int:
        """Ids per step of a window: 1, or one per drum class (groove)."""
        return self.drum_classes if self.head == "groove" else 1


def _lstm(input_size: int, hidden: int, layers: int, dropout: float, bidirectional: bool = False) -> nn.LSTM:
    return nn.LSTM(
        input_size,
        hidden,
        num_layers=layers,
        batch_first=True,
        dropout=dropout if layers > 1 else 0.0,
        bidirectional=bidirectional,
    )


class _InitialState(nn.Module):
    """A vector -> tanh(Linear) -> (h, c) for every layer of an LSTM, each (layers, B, hidden)."""

    def __init__(self, in_dim: int, hidden: int, layers: int):
        super().__init__()
        self.hidden, self.layers = hidden, layers
        self.proj = nn.Linear(in_dim, 2 * layers * hidden)

    def forward(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = torch.tanh(self.proj(v)).view(v.shape[0], 2, self.layers, self.hidden)
        return s[:, 0].transpose(0, 1).contiguous(), s[:, 1].transpose(0, 1).contiguous()


class MusicVAE(nn.Module):
    def __init__(self, config: MusicVAEConfig):
        super().__init__()
        self.config = c = config
        n = c.num_classes
        if c.head == "groove":
            # 27 values per step, projected (emb_dim > 0) or fed as they are (Magenta); the start
            # input is all zeros
            n_out = 3 * c.drum_classes
            self.embed = nn.Linear(n_out, c.emb_dim) if c.emb_dim > 0 else nn.Identity()
            in_dim = c.emb_dim or n_out
        elif c.emb_dim > 0:
            # row n is the start token fed before the first step
            self.embed = nn.Embedding(n + 1, c.emb_dim)
            in_dim, n_out = c.emb_dim, n
        else:
            self.embed = nn.Embedding.from_pretrained(torch.cat([torch.eye(n), torch.zeros(1, n)]), freeze=True)
            in_dim, n_out = n, n
        self.start_id = n

        # dropout on every LSTM's inputs too (Magenta's DropoutWrapper), not only between layers:
        # one-layer LSTMs get some, and a decoder that cannot rely on every previous step leans
        # on z (Bowman et al. 2016's word dropout)
        self.input_dropout = nn.Dropout(c.dropout)
        self.encoder = _lstm(in_dim, c.enc_hidden, c.enc_layers, c.dropout, bidirectional=True)
        self.to_mu = nn.Linear(2 * c.enc_hidden, c.z_dim)
        self.to_sigma = nn.Linear(2 * c.enc_hidden, c.z_dim)

        if c.decoder == "hierarchical":
            self.conductor_init = _InitialState(c.z_dim, c.conductor_hidden, c.conductor_layers)
            # zero inputs: the conductor is driven by its initial state alone, as in Magenta
            self.conductor = _lstm(1, c.conductor_hidden, c.conductor_layers, c.dropout)
            cond_dim = c.conductor_hidden
        else:
            cond_dim = c.z_dim
        self.decoder_init = _InitialState(cond_dim, c.dec_hidden, c.dec_layers)
        self.decoder = _lstm(in_dim + cond_dim, c.dec_hidden, c.dec_layers, c.dropout)
        self.head = nn.Linear(c.dec_hidden, n_out)

    def config_dict(self) -> dict:
        return asdict(self.config)

    # -- encoder ----------------------------------------------------------------------------

    def _check(self, x: torch.Tensor) -> None:
        width = self.config.seq_len * self.config.cells_per_step
        if x.dim() != 2 or x.shape[1] != width:
            raise ValueError(f"expected ids of shape (batch, {width}), got {tuple(x.shape)}")

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        """ids (B, T * cells) -> what the LSTMs read at every step (B, T, input size)."""
        if self.config.head == "groove":
            return self.input_dropout(self.embed(groove.features(x, self.config.drum_classes)))
        return self.input_dropout(self.embed(x))

    def _start(self, b: int, device: torch.device) -> torch.Tensor:
        """The decoder's input before the first step (B, input size)."""
        if self.config.head == "groove":
            return self.embed(torch.zeros(b, 3 * self.config.drum_classes, device=device))
        return self.embed(torch.full((b,), self.start_id, dtype=torch.long, device=device))

    def step_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T): one id per step, what step accuracy compares (groove: the hits alone)."""
        if self.config.head == "groove":
            return groove.hit_steps(ids, self.config.drum_classes)
        return ids

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (B, T) -> (mu, sigma), each (B, z_dim): the posterior q(z|x) = N(mu, diag(sigma^2))."""
        self._check(x)
        _, (h, _) = self.encoder(self._inputs(x))
        # h: (layers * 2, B, H); the last two rows are the top layer's forward and backward states
        top = torch.cat([h[-2], h[-1]], dim=-1)
        return self.to_mu(top), F.softplus(self.to_sigma(top)) + _MIN_SIGMA

    # -- decoder ----------------------------------------------------------------------------

    def _bar_embeddings(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, z_dim) -> one conductor output per bar (B, bars, conductor_hidden)."""
        zeros = z.new_zeros(z.shape[0], self.config.bars, 1)
        out, _ = self.conductor(zeros, self.conductor_init(z))
        return out

    def _teacher_forced(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Outputs (B, T, num_classes logits; groove: 3 * drum_classes) with the true previous
        step as every input."""
        c = self.config
        b = x.shape[0]
        inp = torch.cat([self._start(b, x.device).unsqueeze(1), self._inputs(x)[:, :-1]], dim=1)
        if c.decoder == "flat":
            cond = z.unsqueeze(1).expand(b, c.seq_len, z.shape[-1])
            out, _ = self.decoder(torch.cat([inp, cond], dim=-1), self.decoder_init(z))
            return self.head(out)
        bar_emb = self._bar_embeddings(z)  # (B, bars, C)
        # fold bars into the batch: every bar is decoded in parallel from its own embedding; the
        # first input of a bar is the last token of the bar before, as when sampling
        bar_emb = bar_emb.reshape(b * c.bars, -1)
        inp = inp.reshape(b * c.bars, c.steps_per_bar, -1)
        cond = bar_emb.unsqueeze(1).expand(-1, c.steps_per_bar, -1)
        out, _ = self.decoder(torch.cat([inp, cond], dim=-1), self.decoder_init(bar_emb))
        return self.head(out).reshape(b, c.seq_len, -1)

    def sample_z(self, mu: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I) (reparameterised, so gradients reach mu and sigma)."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + sigma * eps

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None, x_in: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ids (B, T) -> (teacher-forced logits (B, T, num_classes), mu, sigma); z is sampled.
        x_in: what the encoder reads instead of x (a task's input transform; x stays the target)."""
        mu, sigma = self.encode(x if x_in is None else x_in)
        return self._teacher_forced(x, self.sample_z(mu, sigma, generator)), mu, sigma

    def loss(
        self,
        x: torch.Tensor,
        beta: float = 1.0,
        free_bits: float = 0.0,
        generator: torch.Generator | None = None,
        x_in: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The negative ELBO with Magenta's free bits, in nats (see elbo_terms)."""
        return self.terms(x, *self(x, generator, x_in), beta, free_bits)

    def terms(
        self, x: torch.Tensor, out: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, beta: float, free_bits: float
    ) -> dict[str, torch.Tensor]:
        """The loss terms of this model's head from a forward pass (elbo_terms, or the groove
        head's with its hit, velocity and offset losses)."""
        if self.config.head == "groove":
            c = self.config
            return groove_elbo_terms(x, out, mu, sigma, beta, free_bits, c.drum_classes, c.velocity_loss)
        return elbo_terms(x, out, mu, sigma, beta, free_bits)

    @torch.no_grad()
    def decode(
        self,
        z: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        hits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """z (B, z_dim) -> ids (B, T), sampled step by step from the model's own outputs.

        temperature 0 takes the argmax. The previous token is carried across bar lines. Runs in
        eval mode (no dropout) and restores the module's mode afterwards. Groove head: `hits`
        (B, T, drum_classes) fixes which cells are hit (humanize, groove transfer) and the
        model gives their velocities and offsets.
        """
        c = self.config
        was_training = self.training
        self.eval()
        try:
            b = z.shape[0]
            prev_in = self._start(b, z.device)
            if c.head == "groove":
                out = torch.empty(b, c.seq_len, 3 * c.drum_classes, device=z.device)
            else:
                out = torch.empty(b, c.seq_len, dtype=torch.long, device=z.device)
            if c.decoder == "flat":
                conds, span = z.unsqueeze(1), c.seq_len
            else:
                conds, span = self._bar_embeddings(z), c.steps_per_bar
            t = 0
            for k in range(conds.shape[1]):
                cond = conds[:, k]
                state = self.decoder_init(cond)
                for _ in range(span):
                    h, state = self.decoder(torch.cat([prev_in, cond], dim=-1).unsqueeze(1), state)
                    if c.head == "groove":
                        given = None if hits is None else hits[:, t]
                        step = self.head(h[:, 0])
                        out[:, t] = groove.sample_step(step, c.drum_classes, temperature, generator, given)
                    else:
                        out[:, t] = sample_next(self.head(h[:, 0]), temperature, generator=generator)
                    prev_in = self.embed(out[:, t])
                    t += 1
            return groove.to_ids(out, c.drum_classes) if c.head == "groove" else out
        finally:
            self.train(was_training)

    @torch.no_grad()
    def reconstruct(
        self,
        x: torch.Tensor,
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
        sample_z: bool = False,
    ) -> torch.Tensor:
        """ids (B, T) -> ids (B, T): encode, then decode free-running from mu (or a sampled z)."""
        mu, sigma = self.encode(x)
        z = self.sample_z(mu, sigma, generator) if sample_z else mu
        return self.decode(z, temperature, generator)


def elbo_terms(
    x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, beta: float, free_bits: float
) -> dict[str, torch.Tensor]:
    """The negative ELBO with Magenta's free bits, in nats, from a forward pass on windows x.

    recon: cross-entropy summed over steps, averaged over the batch.
    kl: KL(N(mu, sigma^2) || N(0, I)) summed over z dims, averaged over the batch.
    loss = recon + beta * mean over examples of max(kl_example - free_bits * ln 2, 0): the
    first free_bits bits of each example's KL cost nothing (Magenta's `free_bits` hparam).
    accuracy: fraction of steps whose teacher-forced argmax is the true token.
    """
    b = x.shape[0]
    recon = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x.reshape(-1), reduction="sum") / b
    kl, kl_cost = _kl(mu, sigma, free_bits)
    accuracy = (logits.argmax(-1) == x).float().mean()
    return {
        "loss": recon + beta * kl_cost,
        "recon": recon,
        "kl": kl,
        "accuracy": accuracy.detach(),
    }


def _kl(mu: torch.Tensor, sigma: torch.Tensor, free_bits: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean KL per example, mean of max(KL - free_bits * ln 2, 0)): what the loss pays."""
    kl_each = (0.5 * (mu.pow(2) + sigma.pow(2) - 1.0) - torch.log(sigma)).sum(-1)
    return kl_each.mean(), torch.clamp(kl_each - free_bits * math.log(2.0), min=0.0).mean()


def groove_elbo_terms(
    x: torch.Tensor,
    out: torch.Tensor,
    mu: torch.Tensor,
    sigma: torch.Tensor,
    beta: float,
    free_bits: float,
    classes: int,
    velocity_loss: str = "squared",
) -> dict[str, torch.Tensor]:
    """elbo_terms for the groove head: recon = hit log-loss + velocity error (squared or
    absolute) + offset squared error (each also on its own), summed over steps and classes and
    averaged over the batch; accuracy = share of steps whose hits are all right
    (midigen.models.groove)."""
    terms = groove.reconstruction_terms(x, out, classes, velocity_loss)
    kl, kl_cost = _kl(mu, sigma, free_bits)
    return {"loss": terms["recon"] + beta * kl_cost, "kl": kl, **terms}


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between a and b (..., D) at t in [0, 1] (t=0 gives a, t=1 gives b).

    The direction moves along the great circle and the norm changes linearly, so for vectors of
    equal norm this is the classic slerp (Shoemake 1985; Magenta's music_vae). Rows whose vectors
    are parallel, anti-parallel or zero fall back to linear interpolation.
    """
    t = float(t)
    na = a.norm(dim=-1, keepdim=True)
    nb = b.norm(dim=-1, keepdim=True)
    ua = a / na.clamp_min(1e-12)
    ub = b / nb.clamp_min(1e-12)
    cos = (ua * ub).sum(-1, keepdim=True)
    # the angle from atan2(sin, cos): acos loses float32 precision near parallel vectors
    so = (ub - cos * ua).norm(dim=-1, keepdim=True)
    omega = torch.atan2(so, cos)
    ok = (so > 1e-6) & (na > 1e-12) & (nb > 1e-12)
    so_safe = torch.where(ok, so, torch.ones_like(so))
    direction = (torch.sin((1.0 - t) * omega) * ua + torch.sin(t * omega) * ub) / so_safe
    spherical = ((1.0 - t) * na + t * nb) * direction
    linear = (1.0 - t) * a + t * b
    return torch.where(ok, spherical, linear)


def interpolate(mu_a: torch.Tensor, mu_b: torch.Tensor, steps: int) -> torch.Tensor:
    """`steps` points from mu_a to mu_b by slerp, both ends included: (steps, *mu_a.shape)."""
    if steps < 2:
        raise ValueError(f"steps must be >= 2 to include both ends, got {steps}")
    return torch.stack([slerp(mu_a, mu_b, i / (steps - 1)) for i in range(steps)])


def beta_schedule(step: int, max_beta: float, beta_rate: float) -> float:
    """KL weight at a training step: max_beta * (1 - beta_rate ** step), rising from 0 (Magenta)."""
    return max_beta * (1.0 - beta_rate**step)


# -- the family ---------------------------------------------------------------------------------


#: what the groove head adds to the loss terms (logged to MLflow per epoch)
GROOVE_TERMS = ("hit_loss", "velocity_loss", "offset_loss")


@torch.no_grad()
def evaluate_vae(
    model: MusicVAE,
    windows: np.ndarray,
    batch_size: int,
    device: torch.device,
    beta: float,
    free_bits: float,
    seed: int = 0,
    free_running: bool = False,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, float]:
    """Means per window over `windows` (n, T): loss, recon, kl, elbo (recon + kl, i.e. beta 1) in
    nats (groove: also its hit, velocity and offset losses); accuracy = teacher-forced share of
    steps whose argmax is right (groove: whose hits are all right); with free_running also
    free_accuracy = the same for reconstructions decoded greedily from mu. `transform` gives what
    the encoder reads (a task's input transform, train.input_transform). z is sampled from a
    generator seeded with `seed`, so repeated evaluations of one model agree."""
    from midigen.training.devices import autocast

    model.eval()
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    totals: dict[str, float] = {}
    n = 0
    for i in range(0, windows.shape[0], batch_size):
        w = np.asarray(windows[i : i + batch_size], dtype=np.int64)
        x = torch.as_tensor(w, device=device)
        x_in = None if transform is None else torch.as_tensor(transform(w), device=device)
        with autocast(device):
            out = model.loss(x, beta, free_bits, generator=gen, x_in=x_in)
        b = x.shape[0]
        for key in ("loss", "recon", "kl", "accuracy", *GROOVE_TERMS):
            if key in out:
                totals[key] = totals.get(key, 0.0) + float(out[key]) * b
        if free_running:
            again = model.reconstruct(x if x_in is None else x_in)
            right = float((model.step_ids(again) == model.step_ids(x)).float().mean())
            totals["free_accuracy"] = totals.get("free_accuracy", 0.0) + right * b
        n += b
    if n == 0:
        raise DataError("no windows to evaluate")
    result = {k: v / n for k, v in totals.items()}
    result["elbo"] = result["recon"] + result["kl"]
    return result


def _unwrap(net: nn.Module) -> MusicVAE:
    """The MusicVAE inside DDP and torch.compile wrappers."""
    while isinstance(getattr(net, "_orig_mod", None), nn.Module) or isinstance(getattr(net, "module", None), nn.Module):
        net = getattr(net, "_orig_mod", None) or net.module
    return net


class _TaskBatches:
    """Window batches as (target, encoder input): the encoder reads each window through a task's
    input transform (humanize, tapify) and the decoder must give back the window itself. Every
    other attribute (state, shares, batches per epoch) is the wrapped sampler's."""

    def __init__(self, inner, transform: Callable[[np.ndarray], np.ndarray]):
        self.inner, self.transform = inner, transform

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.inner.batch()
        return x, torch.from_numpy(np.asarray(self.transform(x.numpy()), dtype=np.int64))


def task_transform(name: str, head: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """The function of train.input_transform `name` (None for "none"); ParamsError when the
    model's head has no velocities and offsets to transform (only groove's has)."""
    from midigen.errors import ParamsError
    from midigen.representations.groove import input_transform

    if name != "none" and head != "groove":
        raise ParamsError(
            f"train.input_transform = {name!r} needs preprocess.representation = 'groove' (hits with velocities "
            "and offsets)"
        )
    return input_transform(name)


def decoder_for(decoder: str, head: str) -> str:
    """model.decoder made concrete: auto is flat for groove (Magenta's GrooVAE configs) and
    hierarchical otherwise (its drum and melody configs)."""
    if decoder != "auto":
        return decoder
    return "flat" if head == "groove" else "hierarchical"


class MusicVAEFamily(Family):
    """MusicVAE on the windows of a grid representation (drums, melody, groove).

    Per-epoch numbers are per step of the grid (nats/step) so their curves sit beside the token
    models': loss = (recon + beta * max(KL - free_bits, 0)) / steps, perplexity = exp(recon / steps)
    (groove: its recon is a sum of log-loss and squared errors, so that "perplexity" is only a
    scale). The best checkpoint is the one with the lowest validation loss at the final beta
    (max_beta), so an epoch early in the beta warm-up cannot win by paying less for its KL.
    After training, the attribute vectors of the best model are added to best.pt (finish)."""

    name = "musicvae"
    layout = "windows"
    # a MusicVAE decodes whole windows from z: max_steps, top-k/top-p and primers do not apply
    controls = frozenset({"temperature", "greedy", "attribute"})
    unit = "windows"
    has_latent = True

    def build(self, model_params: dict[str, Any], rep) -> MusicVAE:
        from midigen.params import DEFAULTS

        # keys added since (the groove losses) at their defaults, for callers' older dicts
        mp, layers = {**DEFAULTS["model"], **model_params}, model_params["num_layers"]
        dec_layers = mp["dec_layers"] or layers
        return MusicVAE(
            MusicVAEConfig(
                num_classes=len(rep.vocab),
                steps_per_bar=rep.steps_per_bar,
                bars=rep.bars,
                z_dim=mp["z_dim"],
                enc_hidden=mp["enc_hidden"],
                enc_layers=mp["enc_layers"] or layers,
                conductor_hidden=mp["conductor_hidden"],
                conductor_layers=dec_layers,
                dec_hidden=mp["dec_hidden"],
                dec_layers=dec_layers,
                emb_dim=mp["emb_dim"],
                decoder=decoder_for(mp["decoder"], rep.head),
                dropout=mp["dropout"],
                head=rep.head,
                drum_classes=rep.cells_per_step if rep.head == "groove" else 9,
                velocity_loss=mp["velocity_loss"],
            )
        )

    def from_config(self, config: dict[str, Any]) -> MusicVAE:
        return MusicVAE(MusicVAEConfig(**config))

    def vocab_size(self, config: dict[str, Any]) -> int:
        return int(config["num_classes"])

    def data(self, split_data) -> tuple[np.ndarray, np.ndarray]:
        return split_data.windows("train"), split_data.windows("val", fallbacks=("train",))

    def batches(self, train: np.ndarray, params: dict[str, Any], rep, shard: tuple[int, int]):
        from midigen.data.windows import WindowBatches

        tp = params["train"]
        transform = task_transform(tp["input_transform"], rep.head)
        batches = WindowBatches(train, tp["batch_size"], tp["seed"], tp["transpose"], rep, shard)
        return batches if transform is None else _TaskBatches(batches, transform)

    def train_step(self, net: nn.Module, batch, step: int, params: dict[str, Any]) -> StepOutput:
        from midigen.training.devices import autocast

        tp = params["train"]
        x, x_in = batch if isinstance(batch, tuple) else (batch, None)
        model = _unwrap(net)
        beta = beta_schedule(step, tp["max_beta"], tp["beta_rate"])
        with autocast(x.device):
            out = model.terms(x, *net(x, None, x_in), beta, tp["free_bits"])  # through DDP's forward
        b = x.shape[0]
        sums = {k: float(out[k].detach()) * b for k in ("loss", "recon", "kl", "accuracy", *GROOVE_TERMS) if k in out}
        return StepOutput(out["loss"], sums, b, b * model.config.seq_len)

    def validate(self, model: nn.Module, val: np.ndarray, params: dict[str, Any], device) -> dict[str, float]:
        tp = params["train"]
        transform = task_transform(tp["input_transform"], model.config.head)
        return evaluate_vae(
            model, val, tp["batch_size"] * 2, device, tp["max_beta"], tp["free_bits"], tp["seed"], transform=transform
        )

    def epoch_row(self, totals: Totals, val: dict[str, float], params: dict[str, Any]) -> dict[str, Any]:
        from midigen.training.loop import perplexity

        tp = params["train"]
        t = totals.tokens / max(1, totals.items)  # steps per window
        train = {k: v / max(1, totals.items) for k, v in totals.sums.items()}
        row = {
            "train_loss": round(train["loss"] / t, 5),
            "val_loss": round(val["loss"] / t, 5),
            "train_perplexity": round(perplexity(train["recon"] / t), 4),
            "val_perplexity": round(perplexity(val["recon"] / t), 4),
            "train_recon": round(train["recon"], 4),
            "val_recon": round(val["recon"], 4),
            "train_kl": round(train["kl"], 4),
            "val_kl": round(val["kl"], 4),
            # the beta of the epoch's last step
            "beta": round(beta_schedule(totals.step - 1, tp["max_beta"], tp["beta_rate"]), 6),
            "train_accuracy": round(train["accuracy"], 5),
            "val_accuracy": round(val["accuracy"], 5),
        }
        for key in GROOVE_TERMS:  # per window, like recon
            if key in train:
                row[f"train_{key}"], row[f"val_{key}"] = round(train[key], 4), round(val[key], 4)
        return row

    def postfix(self, totals: Totals, params: dict[str, Any]) -> dict[str, str]:
        n, tp = max(1, totals.items), params["train"]
        return {
            "loss": f"{totals.sums['loss'] / max(1, totals.tokens):.3f}",  # per step
            "acc": f"{totals.sums['accuracy'] / n:.3f}",
            "kl": f"{totals.sums['kl'] / n:.1f}",
            "beta": f"{beta_schedule(totals.step - 1, tp['max_beta'], tp['beta_rate']):.3f}",
        }

    def epoch_line(self, row: dict[str, Any]) -> str:
        line = (
            f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f}  "
            f"val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f} KL {row['val_kl']:.1f} "
            f"(beta {row['beta']:.3f})"
        )
        if "val_hit_loss" in row:
            line += (
                f"  val hits {row['val_hit_loss']:.2f} velocity {row['val_velocity_loss']:.3f} "
                f"offset {row['val_offset_loss']:.3f}"
            )
        return line

    def checkpoint_extra(self, params: dict[str, Any]) -> dict[str, Any]:
        tp = params["train"]
        return {
            "loss": {"max_beta": tp["max_beta"], "beta_rate": tp["beta_rate"], "free_bits": tp["free_bits"]},
            "input_transform": tp["input_transform"],
        }

    def finish(self, model: MusicVAE, rep, train: np.ndarray, params: dict[str, Any], device) -> bool:
        """The attribute vectors of the best model, from its posterior means of the training
        windows (midigen.generation.attributes), into its config: best.pt carries them."""
        from midigen.generation.attributes import attribute_vectors

        transform = task_transform(params["train"]["input_transform"], model.config.head)
        model.config.attributes = attribute_vectors(model, rep, train, transform, device, params["train"]["seed"])
        return True

    def sample(self, model: MusicVAE, rep, request: SampleRequest, device: torch.device) -> list[np.ndarray]:
        """request.num windows decoded from z ~ N(0, I), as one batch (greedy: the most likely
        step), moved along the attribute vectors request.attributes asks for."""
        from midigen.generation.attributes import attribute_shift
        from midigen.generation.latent import sample

        temperature = 0.0 if request.greedy else request.temperature
        shift = attribute_shift(model, request.attributes) if request.attributes else None
        return list(sample(model, request.num, temperature, request.seed, device, shift)[0])

    def stage_outputs(self, model: MusicVAE, rep, params: dict[str, Any], split_data, device) -> list:
        """What generate.mode asks for (midigen.generation.latent.stage_outputs): samples and an
        interpolation, an interpolation alone, or a task (humanize, tap2drum) on held-out
        windows beside their originals."""
        from midigen.generation.latent import stage_outputs

        return stage_outputs(self, model, rep, params, split_data, device)

    def summary_line(self, count: dict[str, int]) -> str:
        return ", ".join(f"{n} {prefix}" for prefix, n in count.items())

    def evaluate(self, model: MusicVAE, rep, split_data, params: dict[str, Any], generated, device, keys=None):
        from midigen.evaluation.vae_eval import evaluate_musicvae

        return evaluate_musicvae(model, rep, params, split_data, generated, device)

    def summary_lines(self, result: dict[str, Any]) -> list[str]:
        from midigen.evaluation.vae_eval import summary_lines

        return summary_lines(result)


FAMILY = MusicVAEFamily()
