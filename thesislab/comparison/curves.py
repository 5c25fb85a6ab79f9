"""Per-epoch curves over seeds: each schedule's mean and spread, epoch by epoch, as arrays and as small CSVs.

Runs stop at different epochs (loss_stop, plateau). A run that has stopped keeps its last value in the mean
of later epochs (its model no longer changes), so the mean does not jump when the first seed stops;
`running` says how many seeds were still training at each epoch.

The learning rate is the exception: each seed's own steps, as it trained them (a mean of step functions is an
LR no run ever used).
"""

import csv
import io as _io

import numpy as np

from thesislab import io

# The curves written for `dvc plots`: <folder>/<quantity>.csv. dvc.yaml's top-level plots name these files.
QUANTITIES = ("test_acc", "val_acc", "train_loss", "lr")
CSV_COLUMNS = ("epoch", "schedule", "mean", "std", "low", "high", "running")
PER_SEED = {"lr"}  # a row per (epoch, schedule, seed): PER_SEED_COLUMNS, then the seed's own value (column <key>)
PER_SEED_COLUMNS = ("epoch", "schedule", "seed")


def over_seeds(runs, key):
    """(epochs 1..E, values (seeds x E) with stopped runs carried forward, last epoch of each run).

    Undefined cells (no validation split) stay NaN."""
    last = [len(r.rows) for r in runs]
    epochs = np.arange(1, max(last) + 1)
    values = np.full((len(runs), len(epochs)), np.nan)
    for i, run in enumerate(runs):
        column = [np.nan if row[key] is None else row[key] for row in run.rows]
        values[i, : len(column)] = column
        values[i, len(column):] = column[-1]
    return epochs, values, last


def mean_and_std(values):
    """Per-epoch mean and sample std over seeds (std 0 for a single seed, NaN where undefined)."""
    with np.errstate(invalid="ignore"):
        mean = values.mean(axis=0)
        std = values.std(axis=0, ddof=1) if values.shape[0] > 1 else np.where(np.isfinite(mean), 0.0, np.nan)
    return mean, std


def write_csvs(folder, runs_by_arm):
    """<folder>/<quantity>.csv, long format: a row per (epoch, schedule) with the mean, std and mean +- std;
    for PER_SEED quantities a row per (epoch, schedule, seed) over the epochs that seed trained."""
    for key in QUANTITIES:
        buf = _io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        if key in PER_SEED:
            writer.writerow([*PER_SEED_COLUMNS, key])
            for arm, runs in runs_by_arm.items():
                for run in runs:
                    for e, row in enumerate(run.rows, 1):
                        writer.writerow([e, arm, run.summary["seed"], "" if row[key] is None else f"{row[key]:.6g}"])
        else:
            writer.writerow(CSV_COLUMNS)
            for arm, runs in runs_by_arm.items():
                epochs, values, last = over_seeds(runs, key)
                mean, std = mean_and_std(values)
                for j, e in enumerate(epochs):
                    running = sum(end >= e for end in last)
                    writer.writerow([int(e), arm, *(_cell(v) for v in (mean[j], std[j], mean[j] - std[j],
                                                                        mean[j] + std[j])), running])
        io.write_text(f"{folder}/{key}.csv", buf.getvalue())


def _cell(v):
    return "" if not np.isfinite(v) else f"{v:.6g}"
