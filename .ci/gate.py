"""CI gate: fail when the pipeline's key metrics got worse than the committed ones.

    python .ci/gate.py --baseline BASE.json --current metrics/eval.json

Tolerances: CPU training is deterministic, so the same machine reproduces the committed numbers
exactly; another CPU (other BLAS kernels, other thread counts) changes float rounding, which
training amplifies much like a different seed. Measured on the default pipeline (Bach chorales):
train.seed 42 vs 43 gave test NLL 1.311 vs 1.392 nats/token (0.08 apart), and 8 generation seeds
of one model gave distribution scores 0.726..0.794 (std 0.024). The gate allows about twice the
seed-to-seed NLL gap and four standard deviations of the score before calling it a regression.

c2st.accuracy (how well a logistic regression tells generated from held-out pieces, 0.5 = not at
all) is gated from above: 6 generation seeds of the events LSTM gave 0.891..0.944 (std 0.02), and
10 random halvings of the 41 held-out chorales, alike by construction, 0.37..0.58 (std 0.06), so
a rise of more than 0.10 is more than sampling noise. Since the distribution score became the
overlap times the classifier's indistinguishability, those 6 seeds gave scores 0.088..0.175
(std 0.03), inside its tolerance; a model the classifier separates less well spreads it more.
A key with a dot names a nested entry (c2st.accuracy = ev["c2st"]["accuracy"]); a null value (too
few pieces for the test) counts as missing.
"""

from __future__ import annotations

import argparse
import sys

from midigen.jsonio import read_json

#: metric -> (direction, tolerance): "lower" means lower is better
GATES = {
    "test_nll": ("lower", 0.15),
    "distribution_score": ("higher", 0.10),
    "c2st.accuracy": ("lower", 0.10),
}


def lookup(metrics: dict, key: str) -> float | None:
    """The number at a dotted key (nested dicts), None when any part is missing or null."""
    value = metrics
    for part in key.split("."):
        if not isinstance(value, dict) or value.get(part) is None:
            return None
        value = value[part]
    return float(value)


def check(baseline: dict, current: dict) -> list[str]:
    failures = []
    for key, (direction, tol) in GATES.items():
        b, c = lookup(baseline, key), lookup(current, key)
        missing = [name for name, v in (("committed", b), ("current", c)) if v is None]
        if missing:  # a renamed or dropped metric must not switch its gate off
            print(f"FAIL {key}: missing from the {' and the '.join(missing)} metrics")
            failures.append(key)
            continue
        worse = c - b if direction == "lower" else b - c
        status = "FAIL" if worse > tol else "ok"
        print(f"{status:4s} {key}: committed {b:.4f}, now {c:.4f} ({direction} is better, tolerance {tol})")
        if worse > tol:
            failures.append(key)
    return failures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True)
    ap.add_argument("--current", default="metrics/eval.json")
    args = ap.parse_args(argv)
    failures = check(read_json(args.baseline), read_json(args.current))
    if failures:
        print(f"metrics gate: {', '.join(failures)} got worse beyond tolerance", file=sys.stderr)
        return 1
    print("metrics gate: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
