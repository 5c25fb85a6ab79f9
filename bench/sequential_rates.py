"""How a sequential design behaves, by simulation: how often it says each thing, and the seeds it takes.

    python -m bench.sequential_rates --first 5 --every 5 --max-seeds 50 --sequences 100000

For each spending function, each true difference delta (in units of min_effect) and spread sigma of the
paired differences: the share of designs ending better / worse / equivalent / inconclusive and the mean seeds
used, with the naive fixed-n t-test repeated at every look beside them (its false-"better or worse" rate at
delta 0 is what the design exists to prevent). The same decide() as a real comparison; normal differences.
"""

import argparse
import time

import numpy as np
from scipy import stats

from thesislab.comparison import sequential as sq


def naive(looks, delta, sigma, sequences, rng):
    """The fixed-n t-test at every look, stopping at the first p < 0.05: how often it claims a difference."""
    x = rng.normal(delta, sigma, (sequences, looks[-1]))
    hit = np.zeros(sequences, dtype=bool)
    for n in looks:
        hit |= stats.ttest_1samp(x[:, :n], 0, axis=1).pvalue < 0.05
    return hit.mean()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--first", type=int, default=5)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--max-seeds", type=int, default=50)
    ap.add_argument("--min-effect", type=float, default=0.5)
    ap.add_argument("--sequences", type=int, default=100_000)
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.3, 1.0, 3.0])
    ap.add_argument("--deltas", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0], help="in units of min_effect")
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    print("| spending | sigma | delta | better | worse | equivalent | inconclusive | mean seeds | naive: any p < 0.05 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for spending in sq.SPENDING:
        start = time.perf_counter()
        design, _ = sq.make_design(args.first, args.every, args.max_seeds, 0.05, spending, args.min_effect, False)
        calibration = time.perf_counter() - start
        for sigma in args.sigmas:
            for units in args.deltas:
                delta = units * args.min_effect
                r = sq.simulate(design, delta, sigma, args.sequences, rng)
                n = naive(design.looks, delta, sigma, min(args.sequences, 20_000), rng)
                print(f"| {spending} | {sigma:g} | {delta:g} | {r['better']:.4f} | {r['worse']:.4f} | "
                      f"{r['equivalent']:.4f} | {r['inconclusive']:.4f} | {r['mean_seeds']:.1f} | {n:.3f} |")
        print(f"| {spending}: boundaries {', '.join(f'{c:.2f}' for c in design.boundaries)}; "
              f"calibrated in {calibration:.2f} s | | | | | | | | |")


if __name__ == "__main__":
    main()
