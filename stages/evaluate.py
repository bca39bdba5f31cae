"""Stage evaluate: test-set NLL of models/best.pt, and generated vs held-out pieces
-> metrics/eval.json, metrics/eval_features.csv."""

import sys
from pathlib import Path

import numpy as np

from midigen.data.dataset import load_split_data
from midigen.errors import run_main
from midigen.evaluation import metrics
from midigen.evaluation.lm_eval import compare_decoding, teacher_forced
from midigen.evaluation.vae_eval import evaluate_musicvae
from midigen.generation.generate import load_for_sampling
from midigen.jsonio import write_json
from midigen.params import load_params
from midigen.table import write_rows
from midigen.training.loop import perplexity

GENERATED = Path("outputs/generated")


def main() -> None:
    params = load_params()
    ev = params["evaluate"]
    data = load_split_data()
    if params["model"]["kind"] == "musicvae":
        return evaluate_vae_stage(params, data)
    model, rep, device = load_for_sampling("models/best.pt", params["train"]["device"])
    test_nll, test_accuracy = teacher_forced(
        model, data.stream("test", fallbacks=("val", "train")), params["train"]["seq_len"], 32, device
    )

    test_rows = data.pieces("test", fallbacks=("val", "train")).head(ev["max_test_pieces"])
    spans = zip(test_rows["offset"], test_rows["length"], strict=True)
    test_ids = [data.store.tokens[o : o + n].astype(np.int64) for o, n in spans]
    test_notes = [rep.decode(i) for i in test_ids]
    gen_ids = [
        rep.tokens_to_ids(p.read_text(encoding="utf-8").split()).astype(np.int64)
        for p in sorted(GENERATED.glob("*.txt"))
    ]
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
    write_results(result, distance)
    print(
        f"evaluate: test NLL {test_nll:.4f} nats/token (ppl {perplexity(test_nll):.2f}), "
        f"next-token accuracy {test_accuracy:.3f}, "
        f"distribution score {result['distribution_score']:.3f} (1 = like the test pieces)"
    )
    for key in ("pitch_class_entropy", "note_density", "ngram_repetition", "longest_run", "distinct_share"):
        g, t = result["generated"][key], result["test"][key]
        print(f"  {key:20s} generated {g['mean']:.3f} ± {g['std']:.3f}   test {t['mean']:.3f} ± {t['std']:.3f}")
    for mode in ("greedy", "sampled"):
        d = decoding[mode]
        print(
            f"  {mode:8s} decoding: longest run {d['longest_run']['mean']:.1f}, distinct share "
            f"{d['distinct_share']['mean']:.3f}, free-running accuracy {d['free_running_accuracy']['mean']:.3f}"
        )


def write_results(result: dict, distance: dict) -> None:
    write_json("metrics/eval.json", result)
    write_rows(
        "metrics/eval_features.csv",
        [{"feature": k, "overlap": v["overlap"], "kl": v["kl"]} for k, v in distance.items()],
        ["feature", "overlap", "kl"],
    )


def evaluate_vae_stage(params: dict, data) -> None:
    result, distance = evaluate_musicvae(params, data, "models/best.pt", GENERATED)
    write_results(result, distance)
    print(
        f"evaluate: reconstruction accuracy {result['test_recon_accuracy']:.3f} teacher-forced, "
        f"{result['test_free_accuracy']:.3f} free-running (always-the-most-common-step: "
        f"{result['majority_accuracy']:.3f}); KL {result['test_kl_bits']:.1f} bits; "
        f"distribution score {result['distribution_score']:.3f}"
    )
    for key in ("hits_per_bar", "empty_beat_rate", "groove_consistency"):
        g, t = result["generated"][key], result["test"][key]
        print(f"  {key:20s} generated {g['mean']:.3f} ± {g['std']:.3f}   test {t['mean']:.3f} ± {t['std']:.3f}")
    i = result.get("interpolation")
    if i and i["pairs"]:
        print(f"  interpolation: consecutive steps differ by {i['consecutive']:.3f}, the ends by {i['ends']:.3f}")


if __name__ == "__main__":
    sys.exit(run_main(main))
