"""What the comparison's assumptions cost, by simulation: futility stops, and differences far from normal.

    python -m bench.assumptions --sequences 20000

1. `compare.sequential.futility: true` (stop when the whole budget could not decide at the spread seen so far):
   the chance of "better" at a true difference of +min_effect, with and without it, for each spending function
   (the default design: looks at 5, 10, ... 50 seeds, alpha 0.05, min_effect 0.5).
2. Paired differences far from normal: the fixed-n t test's false-positive rate (true mean 0) and the sequential
   design's, for normal, skewed (exponential, lognormal) and heavy-tailed (t with 2 df) differences, each
   centred on 0; and how often the comparison's normality check (statistics.normality) flags such a sample.
"""

import argparse

import numpy as np
from scipy import stats

from thesislab.comparison import sequential as sq
from thesislab.comparison import statistics

SHAPES = {  # draws with mean 0 and spread 1 (the t(2) has no finite variance: scale 1)
    "normal": lambda rng, size: rng.normal(0.0, 1.0, size),
    "exponential": lambda rng, size: rng.exponential(1.0, size) - 1.0,
    "lognormal": lambda rng, size: (rng.lognormal(0.0, 1.0, size) - np.exp(0.5)) / np.sqrt((np.e - 1) * np.e),
    "t(2)": lambda rng, size: rng.standard_t(2, size),
}


class Shaped:
    """A generator whose normal() draws another shape (mean delta, spread sigma): sq.simulate's draws, reshaped."""

    def __init__(self, rng, shape):
        self.rng, self.shape = rng, shape

    def normal(self, delta, sigma, size):
        return delta + sigma * SHAPES[self.shape](self.rng, size)


def futility_cost(sequences, rng):
    print("| spending | sigma | P(better) at +min_effect, futility off | futility on | mean seeds off | on |")
    print("|---|---:|---:|---:|---:|---:|")
    for spending in sq.SPENDING:
        off, _ = sq.make_design(5, 5, 50, 0.05, spending, 0.5, False)
        on, _ = sq.make_design(5, 5, 50, 0.05, spending, 0.5, True)
        for sigma in (0.5, 1.0, 2.0):
            a = sq.simulate(off, 0.5, sigma, sequences, rng)
            b = sq.simulate(on, 0.5, sigma, sequences, rng)
            print(f"| {spending} | {sigma:g} | {a['better']:.3f} | {b['better']:.3f} | {a['mean_seeds']:.1f} | "
                  f"{b['mean_seeds']:.1f} |")


def shapes_cost(sequences, rng):
    design, _ = sq.make_design(5, 5, 50, 0.05, "obrien_fleming", 0.5, False)
    print("| differences | t test FPR, n=5 | n=10 | n=30 | sequential design FPR (5..50) | flagged, n=5 | n=10 | n=30 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for shape, draw in SHAPES.items():
        fpr, flagged = [], []
        for n in (5, 10, 30):
            x = draw(rng, (sequences, n))
            fpr.append(np.mean(stats.ttest_1samp(x, 0.0, axis=1).pvalue < 0.05))
            some = x[: min(sequences, 4000)]
            flagged.append(np.mean([statistics.normality(row, list(range(n)))["far_from_normal"] for row in some]))
        r = sq.simulate(design, 0.0, 1.0, sequences, Shaped(rng, shape))
        seq_fpr = r["better"] + r["worse"]
        print(f"| {shape} | {fpr[0]:.3f} | {fpr[1]:.3f} | {fpr[2]:.3f} | {seq_fpr:.3f} | {flagged[0]:.2f} | "
              f"{flagged[1]:.2f} | {flagged[2]:.2f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sequences", type=int, default=20_000)
    args = ap.parse_args()
    rng = np.random.default_rng(7)
    futility_cost(args.sequences, rng)
    print()
    shapes_cost(args.sequences, rng)


if __name__ == "__main__":
    main()
