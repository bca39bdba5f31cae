"""Stage generate: models/best.pt -> outputs/generated/<prefix>_NN.mid (+ .txt tokens)."""

import sys
import time

from midigen.data.dataset import load_split_data
from midigen.errors import run_main
from midigen.generation.generate import generate
from midigen.models import family
from midigen.params import load_params

OUT = "outputs/generated"


def main() -> None:
    params = load_params()
    t0 = time.perf_counter()
    counts = generate("models/best.pt", params, OUT, load_split_data())
    line = family(params["model"]["kind"]).summary_line(counts)
    print(f"generate: {line} in {time.perf_counter() - t0:.1f} s -> {OUT}/")


if __name__ == "__main__":
    sys.exit(run_main(main))
