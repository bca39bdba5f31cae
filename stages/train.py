"""Stage train: token store + split -> models/best.pt, models/last.pt, metrics/train.json,
metrics/train_curve.csv; one MLflow run with per-epoch loss and perplexity. With train.nproc > 1
it re-runs itself under torchrun (DDP); rank 0 alone logs, checkpoints and writes metrics.
The MLflow store is checked first, before data is read or workers are launched (tracking.on_error)."""

import os
import sys
from pathlib import Path

import pandas as pd

from midigen import models
from midigen.data import keys
from midigen.data.dataset import load_split_data
from midigen.errors import run_main
from midigen.jsonio import write_json
from midigen.params import load_params
from midigen.training import distributed
from midigen.training.devices import pick_device
from midigen.training.loop import train_model, training_summary
from midigen.training.tracking import no_run, preflight

MODELS = Path("models")


def main() -> int | None:
    params = load_params()
    # a store that does not answer or cannot be written fails (or is given up) in seconds, not
    # after the training; of torchrun's workers only rank 0 logs (the launcher checked already)
    tracker = preflight(params["tracking"]["on_error"]) if os.environ.get("RANK", "0") == "0" else None
    data = load_split_data()
    device_type = pick_device(params["train"]["device"]).type  # no CUDA: one error, before launching
    code = distributed.launch(params["train"]["nproc"], params["train"]["threads"], device_type)
    if code is not None:  # the processes under torchrun did the work
        return code
    world = distributed.init(device_type)
    rep = data.store.representation
    family = models.family(params["model"]["kind"])
    train_data, val_data = family.data(data)
    data_fp = data.fingerprint()
    if world.is_main:
        print(f"train: {len(train_data):,} {family.unit}, val: {len(val_data):,} {family.unit}, vocab {len(rep.vocab)}")
    tags = {"dataset_fingerprint": data_fp, "data_source": params["data"]["source"]}
    logged = {k: params[k] for k in ("data", "preprocess", "split", "model", "train")}
    with tracker.start_run(logged, tags) if world.is_main and tracker else no_run() as run:
        result = train_model(
            rep,
            train_data,
            val_data,
            params,
            MODELS,
            data_fp,
            extra=keys.checkpoint_entry(data.pieces("train")),
            on_epoch=lambda row: run.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"]),
        )
        best = result.history.best()
        summary = training_summary(result)
        run.log_metrics({"best_val_loss": best["val_loss"], "best_val_perplexity": best["val_perplexity"]})
        run.set_tags({"device": result.device})
        run.log_artifact(result.best_path)
    if not world.is_main:
        return
    write_json("metrics/train.json", summary)
    curve = pd.DataFrame(result.history.rows).drop(columns=["tokens_per_s", "lr"])
    curve.to_csv("metrics/train_curve.csv", index=False)
    print(f"train: best val loss {best['val_loss']:.4f} (ppl {best['val_perplexity']:.2f}) at epoch {best['epoch']}")


if __name__ == "__main__":
    sys.exit(run_main(main))
