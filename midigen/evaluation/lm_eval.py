"""Judging a next-token model the two ways seed 003 does: one step at a time with the true
tokens as input (teacher forcing), and running free on its own output, greedy and sampled.

Greedy decoding is where seed 002's model failed (the same chord forever), so both decoding
modes continue the same primers and are scored with the same repetition metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from midigen.data.windows import eval_windows
from midigen.evaluation import metrics
from midigen.evaluation.metrics import repetition_metrics, summarize
from midigen.generation.sampling import generate_tokens
from midigen.representations import EOS, PAD, Representation
from midigen.training.devices import autocast


@torch.no_grad()
def evaluate_loss(model: nn.Module, stream: np.ndarray, seq_len: int, batch_size: int, device: torch.device) -> float:
    """Mean cross-entropy (nats/token) over every position of a stream, <PAD> targets ignored."""
    return teacher_forced(model, stream, seq_len, batch_size, device)[0]


@torch.no_grad()
def teacher_forced(
    model: nn.Module, stream: np.ndarray, seq_len: int, batch_size: int, device: torch.device
) -> tuple[float, float]:
    """(mean cross-entropy in nats/token, next-token accuracy) over every position of a stream,
    <PAD> targets ignored; the same windows as train.evaluate_loss, so the loss is identical.
    Accuracy counts a position right when the most likely token is the true next one."""
    model.eval()
    total, right, count = 0.0, 0, 0
    for x, y in eval_windows(stream, seq_len, batch_size):
        x, y = x.to(device), y.to(device)
        with autocast(device):
            logits, _ = model(x)
        logits = logits.float()
        total += nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=PAD, reduction="sum"
        ).item()
        real = y != PAD
        right += int(((logits.argmax(-1) == y) & real).sum())
        count += int(real.sum())
    return total / max(1, count), right / max(1, count)


def free_running_accuracy(continuation: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true continuation's tokens that the generated one has at the same position
    (seed 003's "full song" prediction: one early mistake can derail everything after it)."""
    n = min(len(continuation), len(truth))
    return float((np.asarray(continuation[:n]) == np.asarray(truth[:n])).sum() / len(truth)) if len(truth) else 0.0


def compare_decoding(
    model: nn.Module,
    rep: Representation,
    pieces: list[np.ndarray],
    primer_tokens: int,
    steps: int,
    sampling: dict[str, Any],
    device: torch.device,
) -> dict[str, Any]:
    """Continue the first primer_tokens ids of each piece for up to `steps` ids, once greedily
    and once sampled (sampling: temperature, top_k, top_p, seed as in the generate params), all
    pieces in one batch per mode. Per mode: longest_run and distinct_share of the continuations'
    repetition units, their free-running accuracy against the true continuation, and length."""
    prompts = [p[: max(1, min(primer_tokens, len(p) - 1))].astype(np.int64).tolist() for p in pieces]
    truths = [np.asarray(p[len(q) : len(q) + steps], dtype=np.int64) for p, q in zip(pieces, prompts, strict=True)]
    out: dict[str, Any] = {"pieces": len(prompts), "primer_tokens": primer_tokens, "steps": steps}
    for mode, greedy in (("greedy", True), ("sampled", False)):
        gen = torch.Generator(device=device)
        gen.manual_seed(sampling["seed"])
        seqs = generate_tokens(
            model,
            prompts,
            steps,
            EOS,
            sampling["temperature"],
            sampling["top_k"],
            sampling["top_p"],
            generator=gen,
            greedy=greedy,
        )
        conts = [np.asarray(s[len(q) :], dtype=np.int64) for s, q in zip(seqs, prompts, strict=True)]
        out[mode] = {
            **repetition_metrics([rep.repetition_units(c) for c in conts]),
            "free_running_accuracy": summarize(
                [free_running_accuracy(c, t) for c, t in zip(conts, truths, strict=True) if len(t)]
            ),
            "tokens": summarize([len(c) for c in conts]),
        }
    return out


def evaluate_token_model(
    model: nn.Module, rep: Representation, data, params: dict[str, Any], generated: Path, device: torch.device
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """The evaluate stage for next-token models: test NLL and accuracy, greedy vs sampled
    decoding, and the generated pieces (generated/*.txt) against held-out ones.
    Returns (metrics for eval.json, the set distance per feature)."""
    from midigen.generation.generate import read_pieces
    from midigen.training.loop import perplexity

    ev = params["evaluate"]
    test_nll, test_accuracy = teacher_forced(
        model, data.stream("test", fallbacks=("val", "train")), params["train"]["seq_len"], 32, device
    )
    test_rows = data.pieces("test", fallbacks=("val", "train")).head(ev["max_test_pieces"])
    spans = zip(test_rows["offset"], test_rows["length"], strict=True)
    test_ids = [data.store.tokens[o : o + n].astype(np.int64) for o, n in spans]
    test_notes = [rep.decode(i) for i in test_ids]
    gen_ids = read_pieces(sorted(Path(generated).glob("*.txt")), rep)
    gen_notes = [rep.decode(i) for i in gen_ids]
    decoding = compare_decoding(
        model, rep, test_ids[: ev["decode_pieces"]], ev["primer_tokens"], ev["decode_steps"], params["generate"], device
    )
    distance = metrics.set_distance(gen_notes, test_notes)
    result = {
        "test_nll": round(test_nll, 5),
        "test_perplexity": round(perplexity(test_nll), 4),
        "test_accuracy": round(test_accuracy, 5),
        "generated": {
            **metrics.piece_metrics(gen_notes, gen_ids, ev["ngram"]),
            **metrics.repetition_metrics([rep.repetition_units(i) for i in gen_ids]),
        },
        "test": {
            **metrics.piece_metrics(test_notes, test_ids, ev["ngram"]),
            **metrics.repetition_metrics([rep.repetition_units(i) for i in test_ids]),
        },
        "decoding": decoding,
        "distance": distance,
        "distribution_score": metrics.distribution_score(distance),
        "num_generated": len(gen_ids),
        "num_test": len(test_ids),
    }
    return result, distance


def summary_lines(result: dict[str, Any]) -> list[str]:
    """What the evaluate stage prints for a next-token model."""
    from midigen.training.loop import perplexity

    nll = result["test_nll"]
    lines = [
        f"evaluate: test NLL {nll:.4f} nats/token (ppl {perplexity(nll):.2f}), "
        f"next-token accuracy {result['test_accuracy']:.3f}, "
        f"distribution score {result['distribution_score']:.3f} (1 = like the test pieces)"
    ]
    for key in ("pitch_class_entropy", "note_density", "ngram_repetition", "longest_run", "distinct_share"):
        g, t = result["generated"][key], result["test"][key]
        lines.append(f"  {key:20s} generated {g['mean']:.3f} ± {g['std']:.3f}   test {t['mean']:.3f} ± {t['std']:.3f}")
    for mode in ("greedy", "sampled"):
        d = result["decoding"][mode]
        lines.append(
            f"  {mode:8s} decoding: longest run {d['longest_run']['mean']:.1f}, distinct share "
            f"{d['distinct_share']['mean']:.3f}, free-running accuracy {d['free_running_accuracy']['mean']:.3f}"
        )
    return lines
