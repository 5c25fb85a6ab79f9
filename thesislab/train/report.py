"""What a training run writes: the per-epoch log, the summary metrics, the test predictions."""

import csv
import io as _io
import math

from thesislab import io

LOG_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "seconds")
TIMING_KEYS = ("train_seconds", "images_per_second", "seconds")


def _cell(v):
    if v is None:
        return ""
    return f"{v:.6g}" if isinstance(v, float) and math.isfinite(v) else str(v)


def write_log(path, rows):
    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(LOG_COLUMNS)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in LOG_COLUMNS])
    io.write_text(path, buf.getvalue())


def read_log(path):
    with open(path, newline="") as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in row.items()} for row in csv.DictReader(f)]


def lr_cut_indices(rows):
    """Indices of the rows whose LR is lower than the row before's."""
    return [i for i in range(1, len(rows)) if rows[i]["lr"] < rows[i - 1]["lr"] * (1 - 1e-9)]


def lr_reductions(rows):
    return len(lr_cut_indices(rows))


def summarize(rows, stop_reason, *, schedule, model, device):
    last = rows[-1]
    train_seconds = sum(r["seconds"] for r in rows)
    step_seconds = sum(r["train_seconds"] for r in rows)
    best = max(rows, key=lambda r: r["test_acc"] if math.isfinite(r["test_acc"]) else -1)
    return {
        "test_acc": _round(last["test_acc"]),
        "best_test_acc": _round(best["test_acc"]),
        "best_epoch": int(best["epoch"]),
        "test_loss": _round(last["test_loss"]),
        "train_acc": _round(last["train_acc"]),
        "train_loss": _round(last["train_loss"]),
        "val_acc": _round(last["val_acc"]),
        "epochs": int(last["epoch"]),
        "lr_reductions": lr_reductions(rows),
        "final_lr": last["lr"],
        "stop_reason": stop_reason,
        "train_seconds": round(train_seconds, 2),
        # Training steps only (no evaluation): the number to compare with the model's compute-only speed.
        "images_per_second": round(sum(r["images"] for r in rows) / max(step_seconds, 1e-9), 1),
        "schedule": schedule,
        "model": model,
        "device": device,
    }


def _round(v):
    if v is None:
        return None
    return round(v, 4) if math.isfinite(v) else str(v)  # JSON has no NaN: "nan" keeps it readable


def write_predictions(path, labels, predictions, classes):
    """actual,predicted class names per test image: DVC's confusion template reads this."""
    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("actual", "predicted"))
    writer.writerows((classes[a], classes[p]) for a, p in zip(labels, predictions))
    io.write_text(path, buf.getvalue())
