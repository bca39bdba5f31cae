"""The evaluate stage for MusicVAE: how well held-out windows are reconstructed, how samples
compare with them, and how smoothly the latent space interpolates.

Numbers (metrics/eval.json):
- test_recon_accuracy: teacher-forced share of steps predicted right (z sampled from q(z|x));
  test_free_accuracy: the same for greedy reconstructions decoded from mu with no teacher;
  majority_accuracy: what always predicting the most common step scores on the same windows
  (groove: a step is right when all its hits are; velocities and offsets are scored apart);
- test_kl (nats and bits), test_neg_elbo (recon + KL, nats per window) and
  test_neg_elbo_per_step, an upper bound on the model's NLL per grid step (the LSTM's test_nll is
  exact per token; the two are not comparable: different tokens); groove also its test hit,
  velocity and offset losses;
- generated vs test: hits per bar, empty-beat rate, groove consistency, per-class hit rates
  (drums), and the set-distance overlap of the LSTM evaluation on the decoded notes; `sampled`:
  the rhythm metrics of MANY_SAMPLES prior samples, a steadier estimate than the few files;
- groove: `expressive` (velocity histogram, per-class velocity, offsets, swing ratio of samples
  and test windows); with train.input_transform humanize, `humanize` (velocity and offset MAE on
  the held-out hits against the real performance, beside per-class mean and median velocity
  and zero offset); with tapify, `tap2drum` (classes the drums from taps use, their onsets' accuracy);
- attributes: per latent attribute vector, Spearman's correlation between how far z moves
  along it (-2 .. +2) and the attribute of the decoded windows (midigen.generation.attributes);
- interpolation: mean Hamming distance between consecutive points of slerp interpolations
  between pairs of held-out windows, against the distance between their ends.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from midigen.data.dataset import SplitData
from midigen.evaluation import grid_metrics, metrics
from midigen.evaluation.grid_metrics import majority_accuracy
from midigen.generation.attributes import monotonicity
from midigen.generation.generate import read_pieces
from midigen.generation.latent import (
    INTERPOLATION_STEPS,
    endpoint_windows,
    held_out_windows,
    humanize,
    interpolate_windows,
    tap2drum,
)
from midigen.models.base import request_from
from midigen.models.musicvae import FAMILY, GROOVE_TERMS, MusicVAE, evaluate_vae, task_transform
from midigen.representations import OutputContext
from midigen.representations.grid import GridRepresentation

#: interpolations between pairs of held-out windows whose smoothness is averaged
INTERPOLATION_PAIRS = 8
#: a window is performed (humanize scores it apart) when its hits have more distinct velocities
PLAYED = 2
#: a Spearman correlation at least this high counts as moving the attribute monotonically
MONOTONIC = 0.9
#: prior samples (at generate.temperature) whose rhythm metrics are compared with the test
#: windows' besides the generate stage's few files: 8 windows give a groove consistency only
#: to about +-0.05
MANY_SAMPLES = 256


def _samples(model: MusicVAE, rep: GridRepresentation, params: dict[str, Any], generated: Path, dev) -> np.ndarray:
    """The generate stage's samples (sample_NN.txt); when its mode wrote none (a task or an
    interpolation), the ones it would have written, drawn here from the same seed."""
    rows = read_pieces(sorted(Path(generated).glob("sample_*.txt")), rep)
    if not rows:
        rows = FAMILY.sample(model, rep, request_from(params["generate"]), dev)
    return np.stack(rows) if rows else np.zeros((0, rep.seq_len), dtype=np.int64)


def humanize_scores(
    model: MusicVAE, rep: GridRepresentation, test: np.ndarray, train: np.ndarray, seed: int, dev
) -> dict[str, Any]:
    """Velocity and offset mean absolute errors over the hits of held-out windows humanized by
    the model (hits fixed, velocities and offsets predicted) against the real performance, and
    the same for the two baselines: every hit at its class's mean training velocity, every
    offset 0; and a third, stronger for an absolute error: every hit at its class's median
    training velocity. `played`: the same over the windows that are performed (more than
    PLAYED distinct velocities): a pattern programmed at one velocity has no performance to find."""
    test = test[rep.hit_counts(test).sum(axis=1) > 0]
    t_hit, t_velocity, _ = rep.features(train)

    def per_class(statistic) -> np.ndarray:
        own = [t_velocity[..., c][t_hit[..., c]] for c in range(t_hit.shape[-1])]
        return np.array([statistic(v) if v.size else 0.0 for v in own])

    class_mean, class_median = per_class(np.mean), per_class(np.median)
    played = humanize(model, rep, test, 0.0, seed, dev)
    hit, velocity, shift = rep.features(test)
    _, p_velocity, p_shift = rep.features(played)
    performed = np.array([np.unique(v[h]).size > PLAYED for v, h in zip(velocity, hit, strict=True)])

    def scores(keep: np.ndarray) -> dict[str, Any]:
        h = hit & keep[:, None, None]
        truth_v, truth_o = velocity[h].astype(np.float64), shift[h].astype(np.float64)
        if truth_v.size == 0:
            return {"windows": 0}

        def mae(predicted: np.ndarray) -> float:
            return round(float(np.abs(predicted - truth_v).mean()), 3)

        return {
            "windows": int(keep.sum()),
            "hits": int(h.sum()),
            "velocity_mae": mae(p_velocity[h]),
            "velocity_mae_class_mean": mae(np.broadcast_to(class_mean, h.shape)[h]),
            "velocity_mae_class_median": mae(np.broadcast_to(class_median, h.shape)[h]),
            "offset_mae": round(float(np.abs(p_shift[h] - truth_o).mean()), 5),
            "offset_mae_zero": round(float(np.abs(truth_o).mean()), 5),
        }

    return {**scores(np.ones(test.shape[0], dtype=bool)), "played": scores(performed)}


def tap2drum_scores(model: MusicVAE, rep: GridRepresentation, test: np.ndarray, seed: int, dev) -> dict[str, Any]:
    """What the drums decoded from the held-out windows' taps look like: the drum classes they
    use, hits per bar against the real windows', and the share of steps whose having-a-hit
    matches the real window (the rhythm kept)."""
    test = test[rep.hit_counts(test).sum(axis=1) > 0]
    drums = tap2drum(model, test, 0.0, seed, dev)
    hits = rep.class_hits(drums)
    return {
        "windows": int(test.shape[0]),
        "classes_used": [name for c, name in enumerate(rep.class_names) if hits[..., c].any()],
        "classes_per_window": round(float(hits.any(axis=1).sum(axis=-1).mean()), 3),
        "hits_per_bar": round(float(grid_metrics.hits_per_bar(drums, rep).mean()), 3),
        "test_hits_per_bar": round(float(grid_metrics.hits_per_bar(test, rep).mean()), 3),
        "onset_accuracy": round(float((rep.onsets(drums) == rep.onsets(test)).mean()), 5),
    }


def evaluate_musicvae(
    model: MusicVAE, rep: GridRepresentation, params: dict[str, Any], data: SplitData, generated: str | Path, dev
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """(metrics for eval.json, the set distance per feature)."""
    tp, ev, g = params["train"], params["evaluate"], params["generate"]
    name = tp["input_transform"]
    transform = task_transform(name, model.config.head)
    test = held_out_windows(data, ev["max_test_pieces"])
    firsts = endpoint_windows(data, 2 * INTERPOLATION_PAIRS, g["min_hits"])
    stats = evaluate_vae(
        model, test, 64, dev, tp["max_beta"], tp["free_bits"], seed=tp["seed"], free_running=True, transform=transform
    )
    samples = _samples(model, rep, params, Path(generated), dev)
    many = np.stack(FAMILY.sample(model, rep, request_from(g, num=MANY_SAMPLES), dev))

    smooth = []
    for a, b in zip(firsts[0 : 2 * INTERPOLATION_PAIRS : 2], firsts[1 : 2 * INTERPOLATION_PAIRS : 2], strict=False):
        seq = interpolate_windows(model, a, b, INTERPOLATION_STEPS, 0.0, tp["seed"], dev)
        smooth.append(grid_metrics.interpolation_smoothness(rep.step_ids(seq)))

    tempo = g["tempo"]
    # the set distance compares every pair within each set: evaluate.max_test_pieces windows are plenty
    reference = test[np.linspace(0, test.shape[0] - 1, min(test.shape[0], ev["max_test_pieces"])).astype(np.int64)]
    context = OutputContext(tempo_bpm=tempo)
    distance = metrics.set_distance(
        [rep.decode(w, context) for w in samples], [rep.decode(w, context) for w in reference]
    )
    nll_per_step = stats["elbo"] / rep.steps
    result: dict[str, Any] = {
        "test_recon_accuracy": round(stats["accuracy"], 5),
        "test_free_accuracy": round(stats["free_accuracy"], 5),
        "majority_accuracy": round(majority_accuracy(rep.step_ids(test)), 5),
        "test_recon": round(stats["recon"], 4),
        "test_kl": round(stats["kl"], 4),
        "test_kl_bits": round(stats["kl"] / math.log(2.0), 4),
        "test_neg_elbo": round(stats["elbo"], 4),
        "test_neg_elbo_per_step": round(nll_per_step, 5),
        "generated": grid_metrics.window_metrics(samples, rep),
        "sampled": grid_metrics.window_metrics(many, rep),
        "test": grid_metrics.window_metrics(test, rep),
        "distance": distance,
        "distribution_score": metrics.distribution_score(distance),
        "num_generated": int(samples.shape[0]),
        "num_test_windows": int(test.shape[0]),
    }
    result.update({f"test_{k}": round(stats[k], 4) for k in GROOVE_TERMS if k in stats})
    if rep.class_names:
        result["class_hit_rate"] = {
            "generated": grid_metrics.class_hit_rates(samples, rep),
            "test": grid_metrics.class_hit_rates(test, rep),
        }
    if rep.head == "groove":
        result["input_transform"] = name
        result["expressive"] = {
            "generated": grid_metrics.expressive_metrics(samples, rep),
            "test": grid_metrics.expressive_metrics(test, rep),
        }
        if name == "humanize":
            result["humanize"] = humanize_scores(model, rep, test, data.windows("train"), tp["seed"], dev)
        elif name == "tapify":
            result["tap2drum"] = tap2drum_scores(model, rep, test, tp["seed"], dev)
    attributes = monotonicity(model, rep, tp["seed"], dev)
    if attributes:
        result["attributes"] = attributes
        rhos = [a["spearman"] for a in attributes.values()]
        result["attributes_monotonic"] = sum(r is not None and r >= MONOTONIC for r in rhos)
    informative = [x for x in smooth if x["ends"] > 0]
    if smooth:
        result["interpolation"] = {
            key: round(float(np.mean([x[key] for x in informative])), 5) if informative else None
            for key in ("consecutive", "largest_step", "ends", "ratio")
        }
        result["interpolation"]["pairs"] = len(informative)
        # pairs whose ends decode alike (a sign of posterior collapse) are counted, not averaged
        result["interpolation"]["identical_ends"] = len(smooth) - len(informative)
    return result, distance


def summary_lines(result: dict[str, Any]) -> list[str]:
    """What the evaluate stage prints for a MusicVAE."""
    lines = [
        f"evaluate: reconstruction accuracy {result['test_recon_accuracy']:.3f} teacher-forced, "
        f"{result['test_free_accuracy']:.3f} free-running (always-the-most-common-step: "
        f"{result['majority_accuracy']:.3f}); KL {result['test_kl_bits']:.1f} bits; "
        f"distribution score {result['distribution_score']:.3f}"
    ]
    for key in ("hits_per_bar", "empty_beat_rate", "groove_consistency"):
        g, t, m = result["generated"][key], result["test"][key], result["sampled"][key]
        lines.append(
            f"  {key:20s} generated {g['mean']:.3f} ± {g['std']:.3f}   test {t['mean']:.3f} ± {t['std']:.3f}   "
            f"({MANY_SAMPLES} samples: {m['mean']:.3f})"
        )
    x = result.get("expressive")
    if x and x["generated"].get("hits") and x["test"].get("hits"):
        gx, tx = x["generated"], x["test"]
        lines.append(
            f"  velocity             generated {gx['velocity_mean']:.1f} ± {gx['velocity_std']:.1f}   "
            f"test {tx['velocity_mean']:.1f} ± {tx['velocity_std']:.1f}"
        )
        lines.append(
            f"  offset (steps)       generated {gx['offset_mean']:+.3f} ± {gx['offset_std']:.3f}   "
            f"test {tx['offset_mean']:+.3f} ± {tx['offset_std']:.3f}"
        )
    h = result.get("humanize")
    for what, x in (("humanize", h), ("  played windows", h and h["played"])):
        if x and x.get("hits"):
            lines.append(
                f"  {what}: velocity MAE {x['velocity_mae']:.2f} (class means {x['velocity_mae_class_mean']:.2f}, "
                f"medians {x['velocity_mae_class_median']:.2f}), "
                f"offset MAE {x['offset_mae']:.4f} (zero offset {x['offset_mae_zero']:.4f}) steps, "
                f"{x['windows']} windows"
            )
    t = result.get("tap2drum")
    if t:
        lines.append(f"  tap2drum: {len(t['classes_used'])} classes used, {t['hits_per_bar']:.1f} hits per bar")
    a = result.get("attributes")
    if a:
        rhos = ", ".join(f"{k} {v['spearman']}" for k, v in a.items())
        lines.append(f"  attributes ({result['attributes_monotonic']}/{len(a)} monotonic): Spearman {rhos}")
    i = result.get("interpolation")
    if i and i["pairs"]:
        lines.append(
            f"  interpolation: consecutive steps differ by {i['consecutive']:.3f}, the ends by {i['ends']:.3f}"
        )
    return lines
