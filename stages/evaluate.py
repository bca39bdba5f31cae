"""Stage evaluate: test-set numbers of models/best.pt and generated vs held-out pieces
-> metrics/eval.json, metrics/eval_features.csv (next-token models: the pieces they sample for
the comparison -> outputs/eval/)."""

import sys
from pathlib import Path

from midigen.data.dataset import load_split_data
from midigen.data.keys import of_checkpoint
from midigen.errors import run_main
from midigen.evaluation.results import write_results
from midigen.params import load_params
from midigen.training.checkpoint import load_model

GENERATED = Path("outputs/generated")
#: the stage's output folder (dvc.yaml): the pieces a next-token model samples for the
#: comparison; MusicVAE's evaluation samples from its prior in memory and leaves it empty
EVAL_PIECES = Path("outputs/eval")


def main() -> None:
    params = load_params()
    EVAL_PIECES.mkdir(parents=True, exist_ok=True)
    data = load_split_data()
    loaded = load_model("models/best.pt", params["train"]["device"], data.store.representation)
    keys = of_checkpoint(loaded.ckpt)
    result, distance = loaded.family.evaluate(loaded.model, loaded.rep, data, params, GENERATED, loaded.device, keys)
    write_results(result, distance)
    for line in loaded.family.summary_lines(result):
        print(line)


if __name__ == "__main__":
    sys.exit(run_main(main))
