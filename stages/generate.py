"""Stage generate: models/best.pt -> outputs/generated/sample_NN.mid (+ .txt tokens)."""

import sys
import time

from midigen.errors import run_main
from midigen.generation.generate import sample_ids, write_pieces
from midigen.generation.latent import generate_vae
from midigen.params import load_params

OUT = "outputs/generated"


def main() -> None:
    params = load_params()
    g = params["generate"]
    t0 = time.perf_counter()
    if params["model"]["kind"] == "musicvae":
        counts = generate_vae("models/best.pt", params, OUT)
        print(f"generate: {counts['samples']} samples, {counts['interpolation_steps']} interpolation steps -> {OUT}/")
        return
    seqs, rep = sample_ids(
        "models/best.pt",
        g["num_files"],
        g["max_steps"],
        g["temperature"],
        g["top_k"],
        g["top_p"],
        g["seed"],
        params["train"]["device"],
    )
    paths = write_pieces(seqs, rep, OUT, tempo_bpm=g["tempo"], key=g["key"], program=g["program"])
    n_tok = sum(len(s) for s in seqs)
    print(f"generate: {len(paths)} pieces, {n_tok:,} tokens in {time.perf_counter() - t0:.1f} s -> {OUT}/")


if __name__ == "__main__":
    sys.exit(run_main(main))
