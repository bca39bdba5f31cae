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
from midigen.generation.latent import INTERPOLATION_STEPS, endpoint_windows, interpolate_windows, load_vae, read_windows
from midigen.representations.grid import DrumGrid
from midigen.training.train_vae import evaluate_vae, majority_accuracy

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
    params: dict[str, Any], data: SplitData, checkpoint: str | Path, generated: str | Path
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """(metrics for eval.json, the set distance per feature)."""
    tp, ev = params["train"], params["evaluate"]
    model, rep, dev = load_vae(checkpoint, tp["device"])
    test = _test_windows(data, ev["max_test_pieces"])
    firsts = endpoint_windows(data, 2 * INTERPOLATION_PAIRS)
    stats = evaluate_vae(model, test, 64, dev, tp["max_beta"], tp["free_bits"], seed=tp["seed"], free_running=True)
    samples = read_windows(sorted(Path(generated).glob("sample_*.txt")), rep)

    smooth = []
    for a, b in zip(firsts[0 : 2 * INTERPOLATION_PAIRS : 2], firsts[1 : 2 * INTERPOLATION_PAIRS : 2], strict=False):
        seq = interpolate_windows(model, a, b, INTERPOLATION_STEPS, 0.0, tp["seed"], dev)
        smooth.append(grid_metrics.interpolation_smoothness(seq))

    tempo = params["generate"]["tempo"]
    # the set distance compares every pair within each set: evaluate.max_test_pieces windows are plenty
    reference = test[np.linspace(0, test.shape[0] - 1, min(test.shape[0], ev["max_test_pieces"])).astype(np.int64)]
    distance = metrics.set_distance([rep.decode(w, tempo) for w in samples], [rep.decode(w, tempo) for w in reference])
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
    if isinstance(rep, DrumGrid):
        result["class_hit_rate"] = {
            "generated": grid_metrics.class_hit_rates(samples),
            "test": grid_metrics.class_hit_rates(test),
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
