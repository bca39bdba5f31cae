"""The evaluate stage for MusicVAE: how well held-out windows are reconstructed, how samples
compare with them, and how smoothly the latent space interpolates.

Numbers (metrics/eval.json):
- test_recon_accuracy: teacher-forced share of steps predicted right (z sampled from q(z|x));
  test_free_accuracy: the same for greedy reconstructions decoded from mu with no teacher;
  majority_accuracy: what always predicting the most common step scores on the same windows;
- test_kl (nats and bits), test_neg_elbo (recon + KL, nats per window) and
  test_neg_elbo_per_step, an upper bound on the model's NLL per grid step (the LSTM's test_nll is
  exact per token; the two are not comparable: different tokens);
- generated vs test: hits per bar, empty-beat rate, groove consistency, per-class hit rates
  (drums), and the set-distance overlap of the LSTM evaluation on the decoded notes;
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
from midigen.generation.generate import read_pieces
from midigen.generation.latent import INTERPOLATION_STEPS, endpoint_windows, interpolate_windows
from midigen.models.musicvae import MusicVAE, evaluate_vae
from midigen.representations import OutputContext
from midigen.representations.grid import GridRepresentation

#: held-out windows scored at most (evenly spread over the chosen pieces)
MAX_TEST_WINDOWS = 1024
#: interpolations between pairs of held-out windows whose smoothness is averaged
INTERPOLATION_PAIRS = 8


def _test_windows(data: SplitData, max_pieces: int) -> np.ndarray:
    """All windows of the chosen held-out pieces, at most MAX_TEST_WINDOWS spread evenly."""
    rep = data.store.representation
    pieces = data.pieces("test", fallbacks=("val", "train")).head(max_pieces)
    spans = zip(pieces["offset"], pieces["length"], strict=True)
    windows = np.concatenate([np.asarray(data.store.tokens[o : o + n], dtype=np.int64) for o, n in spans])
    windows = windows.reshape(-1, rep.seq_len)
    if windows.shape[0] > MAX_TEST_WINDOWS:
        windows = windows[np.linspace(0, windows.shape[0] - 1, MAX_TEST_WINDOWS).astype(np.int64)]
    return windows


def evaluate_musicvae(
    model: MusicVAE, rep: GridRepresentation, params: dict[str, Any], data: SplitData, generated: str | Path, dev
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """(metrics for eval.json, the set distance per feature)."""
    tp, ev = params["train"], params["evaluate"]
    test = _test_windows(data, ev["max_test_pieces"])
    firsts = endpoint_windows(data, 2 * INTERPOLATION_PAIRS)
    stats = evaluate_vae(model, test, 64, dev, tp["max_beta"], tp["free_bits"], seed=tp["seed"], free_running=True)
    rows = read_pieces(sorted(Path(generated).glob("sample_*.txt")), rep)
    samples = np.stack(rows) if rows else np.zeros((0, rep.seq_len), dtype=np.int64)

    smooth = []
    for a, b in zip(firsts[0 : 2 * INTERPOLATION_PAIRS : 2], firsts[1 : 2 * INTERPOLATION_PAIRS : 2], strict=False):
        seq = interpolate_windows(model, a, b, INTERPOLATION_STEPS, 0.0, tp["seed"], dev)
        smooth.append(grid_metrics.interpolation_smoothness(seq))

    tempo = params["generate"]["tempo"]
    # the set distance compares every pair within each set: evaluate.max_test_pieces windows are plenty
    reference = test[np.linspace(0, test.shape[0] - 1, min(test.shape[0], ev["max_test_pieces"])).astype(np.int64)]
    context = OutputContext(tempo_bpm=tempo)
    distance = metrics.set_distance(
        [rep.decode(w, context) for w in samples], [rep.decode(w, context) for w in reference]
    )
    nll_per_step = stats["elbo"] / rep.seq_len
    result: dict[str, Any] = {
        "test_recon_accuracy": round(stats["accuracy"], 5),
        "test_free_accuracy": round(stats["free_accuracy"], 5),
        "majority_accuracy": round(majority_accuracy(test), 5),
        "test_recon": round(stats["recon"], 4),
        "test_kl": round(stats["kl"], 4),
        "test_kl_bits": round(stats["kl"] / math.log(2.0), 4),
        "test_neg_elbo": round(stats["elbo"], 4),
        "test_neg_elbo_per_step": round(nll_per_step, 5),
        "generated": grid_metrics.window_metrics(samples, rep),
        "test": grid_metrics.window_metrics(test, rep),
        "distance": distance,
        "distribution_score": metrics.distribution_score(distance),
        "num_generated": int(samples.shape[0]),
        "num_test_windows": int(test.shape[0]),
    }
    if rep.class_names:
        result["class_hit_rate"] = {
            "generated": grid_metrics.class_hit_rates(samples, rep),
            "test": grid_metrics.class_hit_rates(test, rep),
        }
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
        g, t = result["generated"][key], result["test"][key]
        lines.append(f"  {key:20s} generated {g['mean']:.3f} ± {g['std']:.3f}   test {t['mean']:.3f} ± {t['std']:.3f}")
    i = result.get("interpolation")
    if i and i["pairs"]:
        lines.append(
            f"  interpolation: consecutive steps differ by {i['consecutive']:.3f}, the ends by {i['ends']:.3f}"
        )
    return lines
