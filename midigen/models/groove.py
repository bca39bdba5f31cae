"""GrooVAE's output head for MusicVAE (Gillick et al. 2019; Magenta's GrooveLstmDecoder): per
step and drum class a hit (sigmoid, log-loss), a velocity (sigmoid, squared error as in Magenta
or absolute error: model.velocity_loss) and a timing offset (tanh, squared error). The
reconstruction loss is their plain sum over classes and steps.

The model still reads and writes ids (the groove representation's cells, see
midigen.representations.groove); this module turns them into the 27 values per step Magenta
feeds its LSTMs, [hits | velocity / 127 | 2 x offset in steps], and back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from midigen.representations.groove import MAX_Q, N_Q, NO_HIT, OFFSET_RES, VELOCITIES


def features(ids: torch.Tensor, classes: int) -> torch.Tensor:
    """Cell ids (B, T * classes) -> (B, T, 3 * classes) floats: hits in {0, 1}, velocities in
    [0, 1], offsets x 2 in [-1, 1] (Magenta's scale); velocity and offset are 0 where no hit."""
    cells = ids.reshape(ids.shape[0], -1, classes).long()
    hit = (cells > NO_HIT) & (cells < 1 + VELOCITIES * N_Q)
    code = torch.where(hit, cells - 1, torch.zeros_like(cells))
    velocity = torch.where(hit, code // N_Q, 0).float() / (VELOCITIES - 1)
    offset = torch.where(hit, code % N_Q - MAX_Q, 0).float() * (2.0 / OFFSET_RES)
    return torch.cat([hit.float(), velocity, offset], dim=-1)


def to_ids(values: torch.Tensor, classes: int) -> torch.Tensor:
    """(B, T, 3 * classes) values as decode() produces them -> cell ids (B, T * classes): a hit
    where its value is above 0.5, at velocity round(v * 127) (at least 1: a played hit) and its
    offset to the nearest 1/64 step."""
    hits, velocity, offset = values.split(classes, dim=-1)
    hit = hits > 0.5
    v = torch.round(velocity * (VELOCITIES - 1)).clamp(1, VELOCITIES - 1).long()
    q = torch.round(offset * (OFFSET_RES / 2)).clamp(-MAX_Q, MAX_Q).long()
    ids = torch.where(hit, 1 + v * N_Q + q + MAX_Q, torch.zeros_like(v))
    return ids.reshape(values.shape[0], -1)


def hit_steps(ids: torch.Tensor, classes: int) -> torch.Tensor:
    """(B, T) ids of the hits of every step (classes as bits), what step accuracy compares."""
    hit = features(ids, classes)[..., :classes] > 0.5
    return (hit.long() << torch.arange(classes, device=ids.device)).sum(-1)


#: model.velocity_loss: squared (Magenta's; the output learns the mean velocity of a context) or
#: l1 (absolute error; it learns the median, what a mean absolute error rewards)
VELOCITY_LOSSES = ("squared", "l1")


def reconstruction_terms(
    x: torch.Tensor, out: torch.Tensor, classes: int, velocity_loss: str = "squared"
) -> dict[str, torch.Tensor]:
    """Per-window sums (averaged over the batch) of the three losses, their sum `recon`, and
    `accuracy`: the share of steps whose nine hits are all right (threshold 0.5)."""
    target = features(x, classes)
    t_hit, t_vel, t_off = target.split(classes, dim=-1)
    o_hit, o_vel, o_off = out.float().split(classes, dim=-1)
    b = x.shape[0]
    hit_loss = F.binary_cross_entropy_with_logits(o_hit, t_hit, reduction="sum") / b
    # errors where the target has a hit only (Magenta also scores the empty cells, whose targets
    # are 0: its velocity output then learns p(hit) x velocity, so a hit sampled where p(hit) is
    # small comes out nearly silent)
    error = torch.sigmoid(o_vel) - t_vel
    error = error.abs() if velocity_loss == "l1" else error.pow(2)
    velocity = (error * t_hit).sum() / b
    offset = ((torch.tanh(o_off) - t_off).pow(2) * t_hit).sum() / b
    accuracy = ((o_hit > 0) == (t_hit > 0.5)).all(dim=-1).float().mean()
    return {
        "recon": hit_loss + velocity + offset,
        "hit_loss": hit_loss,
        "velocity_loss": velocity,
        "offset_loss": offset,
        "accuracy": accuracy.detach(),
    }


def sample_step(
    out: torch.Tensor,
    classes: int,
    temperature: float,
    generator: torch.Generator | None = None,
    hits: torch.Tensor | None = None,
) -> torch.Tensor:
    """One step's outputs (B, 3 * classes) -> its values: hits drawn from Bernoulli(sigmoid(
    logit / temperature)) (temperature 0: logit > 0), or the given `hits` (B, classes) when the
    task fixes them; velocity and offset where there is a hit, 0 elsewhere (as in the data)."""
    o_hit, o_vel, o_off = out.float().split(classes, dim=-1)
    if hits is not None:
        hit = hits.float()
    elif temperature == 0:
        hit = (o_hit > 0).float()
    else:
        hit = torch.bernoulli(torch.sigmoid(o_hit / temperature), generator=generator)
    return torch.cat([hit, torch.sigmoid(o_vel) * hit, torch.tanh(o_off) * hit], dim=-1)
