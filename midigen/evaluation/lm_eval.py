"""Judging a next-token model the two ways seed 003 does: one step at a time with the true
tokens as input (teacher forcing), and running free on its own output, greedy and sampled.

Greedy decoding is where seed 002's model failed (the same chord forever), so both decoding
modes continue the same primers and are scored with the same repetition metrics. Pieces sampled
as the generate stage samples them are compared with as many held-out pieces, also by ear
(midigen.evaluation.hearing: on their MIDI files, with a classifier two-sample test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from midigen.data.windows import eval_windows
from midigen.errors import DataError
from midigen.evaluation import hearing, metrics
from midigen.evaluation.metrics import repetition_metrics, summarize
from midigen.generation.sampling import generate_tokens
from midigen.representations import EOS, PAD, Representation
from midigen.table import iter_rows, one_line, text_to_path
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


#: where evaluate writes the pieces it samples to compare with the test pieces
EVAL_PIECES = Path("outputs/eval")
#: the ingest stage's list of the corpus's MIDI files (rel_path -> path)
MANIFEST = Path("data/raw/manifest.csv")


def source_files(rel_paths: list[str], manifest: Path = MANIFEST) -> list[Path]:
    """The original MIDI file of each piece (by rel_path) as the ingest manifest lists it, the
    first row winning as in preprocess; DataError naming the manifest when it or a row is missing."""
    if not manifest.exists():
        raise DataError(f"{manifest}: missing (run the ingest stage first: dvc repro ingest)")
    wanted, found = set(rel_paths), {}
    for row in iter_rows(manifest):
        if row["rel_path"] in wanted:
            found.setdefault(row["rel_path"], row["path"])
    missing = [r for r in rel_paths if r not in found]
    if missing:
        raise DataError(f"{manifest}: no row for {one_line(missing[0])} (the split names it; rerun ingest)")
    return [Path(text_to_path(found[r])) for r in rel_paths]


def sample_for_evaluation(
    family,
    model: nn.Module,
    rep: Representation,
    params: dict[str, Any],
    num: int,
    out_dir: Path,
    device,
    keys: list[list[int]] | None = None,
) -> tuple[list[np.ndarray], list[Path]]:
    """num pieces sampled in one batch as the generate params say (the family's own sampler,
    constraints included), written to out_dir as MIDI the way the generate stage writes them
    (moved to the corpus's keys with the checkpoint's `keys`). (id sequences, MIDI files)."""
    from midigen.generation.generate import write_pieces
    from midigen.models.base import context_from, request_from

    g = params["generate"]
    ids = family.sample(model, rep, request_from(g, num=num), device)
    return ids, write_pieces(ids, rep, out_dir, context=context_from(g), keys=keys, seed=g["seed"])


def evaluate_token_model(
    family,
    model: nn.Module,
    rep: Representation,
    data,
    params: dict[str, Any],
    generated: Path,
    device: torch.device,
    pieces_dir: Path = EVAL_PIECES,
    manifest: Path = MANIFEST,
    keys: list[list[int]] | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """The evaluate stage for next-token models (`family` samples): test NLL and accuracy, greedy vs sampled
    decoding, and as many freshly sampled pieces (written to pieces_dir) as held-out pieces
    they are compared with: the music metrics and set distance on the decoded notes, and what
    midigen.evaluation.hearing hears in the MIDI files of both (the test pieces' originals,
    found through the manifest). `generated` (the generate stage's folder, which the Family
    interface passes) is not read: its few pieces would be a smaller set than the test set.
    keys: the checkpoint's key shifts (a model trained in C): the sampled files are moved to the
    corpus's keys as the generate stage moves its pieces, the token metrics stay in C as the
    store's test pieces are.

    The distribution score is the MGEval overlap (kept as overlap_mean) times how far the
    classifier two-sample test is from telling the sets apart, so a set a classifier separates
    is never scored as like the test pieces. Returns (metrics for eval.json, the set distance)."""
    from midigen.training.loop import perplexity

    ev = params["evaluate"]
    test_nll, test_accuracy = teacher_forced(
        model, data.stream("test", fallbacks=("val", "train")), params["train"]["seq_len"], 32, device
    )
    test_rows = data.pieces("test", fallbacks=("val", "train")).head(ev["max_test_pieces"])
    spans = zip(test_rows["offset"], test_rows["length"], strict=True)
    test_ids = [data.store.tokens[o : o + n].astype(np.int64) for o, n in spans]
    test_notes = [rep.decode(i) for i in test_ids]
    gen_ids, gen_files = sample_for_evaluation(family, model, rep, params, len(test_ids), pieces_dir, device, keys)
    gen_notes = [rep.decode(i) for i in gen_ids]
    decoding = compare_decoding(
        model, rep, test_ids[: ev["decode_pieces"]], ev["primer_tokens"], ev["decode_steps"], params["generate"], device
    )
    distance = metrics.set_distance(gen_notes, test_notes)
    heard, c2st = hearing.hear(
        gen_files,
        source_files(test_rows["rel_path"].tolist(), manifest),
        ev["classifier_folds"],
        ev["classifier_resamples"],
        params["generate"]["seed"],
    )
    overlap = metrics.distribution_score(distance)
    alike = hearing.indistinguishability(c2st["accuracy"])
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
        "distribution_score": round(overlap * alike, 4),
        "overlap_mean": overlap,
        "indistinguishability": round(alike, 4),
        "hearing": heard,
        "c2st": c2st,
        "num_generated": len(gen_ids),
        "num_test": len(test_ids),
    }
    if rep.name == "voices" and ev["harmonize_pieces"]:  # the model harmonizes test chorales' sopranos
        from midigen.evaluation.harmonization import evaluate_harmonization

        pieces = test_ids[: ev["harmonize_pieces"]]
        result["harmonization"] = evaluate_harmonization(model, rep, pieces, params["generate"], device)
    return result, distance


def hearing_lines(result: dict[str, Any]) -> list[str]:
    """The classifier two-sample test and what hearing found, generated next to test."""
    c, h = result["c2st"], result["hearing"]
    if c["accuracy"] is None:
        verdict = f"  classifier two-sample test: not run ({c['n_per_class']} pieces per class, 2 needed)"
    else:
        verdict = (
            f"  a classifier tells generated from test pieces with accuracy {c['accuracy']:.3f} "
            f"(95% {c['ci_low']:.3f}..{c['ci_high']:.3f}; 0.5 = indistinguishable), {c['n_per_class']} pieces each"
        )
    g, t = h["generated"], h["test"]

    def share(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f}"

    return [
        verdict,
        f"  hanging notes: {share(h['hanging_note_share'])} of generated notes longer than the test set's longest "
        f"({t['longest_note_beats']:g} beats; generated longest {g['longest_note_beats']:g} beats, "
        f"{g['longest_note_s']:g} s)",
        f"  on the sixteenth grid: generated {share(g['on_grid_share'])}   test {share(t['on_grid_share'])}; "
        f"pitch in key: generated {share(g['pitch_in_key'])}   test {share(t['pitch_in_key'])}",
        "  total-variation distance (0 = the same): "
        + ", ".join(f"{name.replace('_', ' ')} {tv:.3f}" for name, tv in h["tv"].items()),
    ]


def summary_lines(result: dict[str, Any]) -> list[str]:
    """What the evaluate stage prints for a next-token model."""
    from midigen.training.loop import perplexity

    nll = result["test_nll"]
    lines = [
        f"evaluate: test NLL {nll:.4f} nats/token (ppl {perplexity(nll):.2f}), "
        f"next-token accuracy {result['test_accuracy']:.3f}, "
        f"distribution score {result['distribution_score']:.3f} (1 = like the test pieces: MGEval overlap "
        f"{result['overlap_mean']:.3f} x indistinguishability {result['indistinguishability']:.3f})",
        *hearing_lines(result),
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
    if "harmonization" in result:
        from midigen.evaluation.harmonization import summary_line

        lines.append(summary_line(result["harmonization"]))
    return lines
