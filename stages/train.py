"""Stage train: token store + split -> models/best.pt, models/last.pt, metrics/train.json,
metrics/train_curve.csv; one MLflow run with per-epoch loss and perplexity."""

import sys
from pathlib import Path

import pandas as pd

from midigen.errors import run_main
from midigen.experiment import load_split_data
from midigen.jsonio import write_json
from midigen.params import load_params
from midigen.tracking import start_run
from midigen.train import train_model

MODELS = Path("models")


def main() -> None:
    params = load_params()
    data = load_split_data()
    rep = data.store.representation
    train_stream, val_stream = data.stream("train"), data.stream("val", fallbacks=("train",))
    data_fp = data.fingerprint()
    print(f"train: {len(train_stream):,} tokens, val: {len(val_stream):,} tokens, vocab {len(rep.vocab)}")
    tags = {"dataset_fingerprint": data_fp, "data_source": params["data"]["source"]}
    logged = {k: params[k] for k in ("data", "preprocess", "split", "model", "train")}
    with start_run(logged, tags) as run:
        result = train_model(
            rep,
            train_stream,
            val_stream,
            params,
            MODELS,
            data_fp,
            on_epoch=lambda row: run.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"]),
        )
        best = result.history.best()
        summary = {
            "best_epoch": best["epoch"],
            "best_val_loss": best["val_loss"],
            "best_val_perplexity": best["val_perplexity"],
            "epochs": len(result.history.rows),
            "tokens_per_s": round(result.tokens_per_s, 1),
            "wall_s": round(result.wall_s, 1),
        }
        run.log_metrics({"best_val_loss": best["val_loss"], "best_val_perplexity": best["val_perplexity"]})
        run.set_tags({"device": result.device})
        run.log_artifact(result.best_path)
    write_json("metrics/train.json", summary)
    curve = pd.DataFrame(result.history.rows)[["epoch", "train_loss", "val_loss", "train_perplexity", "val_perplexity"]]
    curve.to_csv("metrics/train_curve.csv", index=False)
    print(f"train: best val loss {best['val_loss']:.4f} (ppl {best['val_perplexity']:.2f}) at epoch {best['epoch']}")


if __name__ == "__main__":
    sys.exit(run_main(main))
