"""Time to accuracy, from the per-epoch logs a training run writes.

    python -m bench.time_to_accuracy metrics/runs/* --target 93

For each log: the first epoch whose test accuracy reaches the target, the wall time to the end of that
epoch (training and evaluation, summed from the log), the median epoch time, and the best accuracy.
"""

import argparse
import statistics

from thesislab import files


def time_to(rows, target):
    elapsed = 0.0
    for r in rows:
        elapsed += r["seconds"]
        if r["test_acc"] >= target:
            return int(r["epoch"]), elapsed
    return None, None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run folders (metrics/runs/<schedule>-<seed>)")
    ap.add_argument("--target", type=float, required=True, help="test accuracy, percent")
    args = ap.parse_args()
    print(f"{'log':<45} {'epoch':>6} {'seconds':>8} {'s/epoch':>8} {'best %':>7}")
    for path in args.runs:
        rows = files.read_epochs(path)
        epoch, seconds = time_to(rows, args.target)
        median = statistics.median(r["seconds"] for r in rows)
        best = max(r["test_acc"] for r in rows)
        reached = f"{epoch:>6} {seconds:>8.1f}" if epoch else f"{'-':>6} {'-':>8}"
        print(f"{path:<45} {reached} {median:>8.2f} {best:>7.2f}")


if __name__ == "__main__":
    main()
