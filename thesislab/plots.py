"""The thesis's figures from the training logs: schedules overlaid, LR reductions marked, a confusion matrix.

Every figure is drawn on matplotlib axes by a small function, so the same drawing makes the single
figures and the overview the README shows.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from thesislab import io  # noqa: E402
from thesislab.errors import UserError  # noqa: E402
from thesislab.train import report  # noqa: E402

COLORS = {"static": "#d55e00", "dynamic": "#0072b2"}  # colour-blind-safe pair; others take the cycle
OTHER_COLORS = ("#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000")
THESIS = {  # the thesis's own numbers, for the comparison table
    "speedsigns": "thesis (real signs): 97.6% train, 95.1% test",
    "cifar10": "thesis (VGG16, CIFAR-10): static plateaus at 60-70% test, dynamic > 85%",
}


@dataclass
class Run:
    schedule: str
    rows: list
    summary: dict
    predictions: Path


def load_runs(metrics_dir, schedules):
    runs = []
    for s in schedules:
        folder = Path(metrics_dir) / s
        try:
            rows = report.read_log(folder / "epochs.csv")
            summary = json.loads((folder / "metrics.json").read_text())
        except (OSError, ValueError) as err:
            raise UserError(f"{folder}: missing or unreadable training outputs ({err}); run train@{s} first") from None
        runs.append(Run(s, rows, summary, folder / "predictions.csv"))
    return runs


def color(schedule, i):
    return COLORS.get(schedule, OTHER_COLORS[i % len(OTHER_COLORS)])


def width(i):
    """Line width of the i-th run: wider first, so a later run drawn over an identical stretch leaves
    the earlier one visible around it (static and dynamic agree until the first LR cut)."""
    return max(3.4 - 1.2 * i, 1.2)


def column(rows, key):
    return np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float)


def draw_accuracy(ax, runs):
    for i, run in enumerate(runs):
        ep, c = column(run.rows, "epoch"), color(run.schedule, i)
        ax.plot(ep, column(run.rows, "test_acc"), color=c, lw=width(i), label=f"{run.schedule} test")
        ax.plot(ep, column(run.rows, "train_acc"), color=c, lw=1, ls="--", alpha=0.8, label=f"{run.schedule} train")
        final = run.summary["test_acc"]
        if isinstance(final, (int, float)):
            ax.annotate(f"{final:.1f}%", (ep[-1], final), xytext=(4, 0), textcoords="offset points", color=c,
                        va="center", fontsize=9, fontweight="bold")
    ax.set(title="Accuracy", xlabel="epoch", ylabel="accuracy (%)")
    ax.set_ylim(bottom=max(0, ax.get_ylim()[0]), top=min(101, ax.get_ylim()[1] + 2))
    ax.legend(fontsize=8, ncol=2, loc="lower right")


def draw_loss(ax, runs):
    for i, run in enumerate(runs):
        ep, c = column(run.rows, "epoch"), color(run.schedule, i)
        ax.plot(ep, column(run.rows, "train_loss"), color=c, lw=1, ls="--", label=f"{run.schedule} train")
        ax.plot(ep, column(run.rows, "test_loss"), color=c, lw=width(i), label=f"{run.schedule} test")
    ax.set(title="Loss (cross-entropy)", xlabel="epoch", ylabel="loss")
    if all(np.all(column(r.rows, "train_loss")[np.isfinite(column(r.rows, "train_loss"))] > 0) for r in runs):
        ax.set_yscale("log")
    ax.legend(fontsize=8, ncol=2)


def draw_lr(ax, runs):
    for i, run in enumerate(runs):
        ep, lr, c = column(run.rows, "epoch"), column(run.rows, "lr"), color(run.schedule, i)
        # Each epoch's LR holds from its start to the next epoch's: draw the last one to its end too.
        ax.step(np.append(ep, ep[-1] + 1), np.append(lr, lr[-1]), where="post", color=c, lw=width(i),
                label=run.schedule)
        cut = report.lr_cut_indices(run.rows)
        if cut and run.schedule in ("dynamic", "plateau", "step"):
            ax.scatter(ep[cut], lr[cut], marker="v", s=60, color=c, zorder=3,
                       label=f"{run.schedule}: LR cut ({len(cut)})")
    ax.set(title="Learning rate", xlabel="epoch", ylabel="LR", yscale="log")
    ax.legend(fontsize=8)


def confusion(predictions_csv):
    import csv

    with open(predictions_csv, newline="") as f:
        pairs = [(r["actual"], r["predicted"]) for r in csv.DictReader(f)]
    names = sorted({a for a, _ in pairs} | {p for _, p in pairs})
    index = {n: i for i, n in enumerate(names)}
    m = np.zeros((len(names), len(names)), dtype=int)
    for a, p in pairs:
        m[index[a], index[p]] += 1
    return names, m


def draw_confusion(ax, run):
    names, m = confusion(run.predictions)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if len(names) <= 20:
        for i in range(len(names)):
            for j in range(len(names)):
                if m[i, j]:
                    ax.text(j, i, m[i, j], ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.5 else "black")
    ticks = range(len(names))
    ax.set_xticks(ticks, names, rotation=90, fontsize=7)
    ax.set_yticks(ticks, names, fontsize=7)
    acc = 100 * np.trace(m) / max(m.sum(), 1)
    ax.set(title=f"Confusion: {run.schedule} ({acc:.1f}% test)", xlabel="predicted", ylabel="actual")


def better(runs):
    def key(run):
        v = run.summary.get("test_acc")
        return v if isinstance(v, (int, float)) and math.isfinite(v) else -1

    return max(runs, key=key)


def save(fig, path):
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def draw_all(runs, out_dir, title):
    out_dir = Path(out_dir)
    for name, draw in (("accuracy", draw_accuracy), ("loss", draw_loss), ("lr", draw_lr)):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        draw(ax, runs)
        ax.grid(alpha=0.3)
        save(fig, out_dir / f"{name}.png")
    best = better(runs)
    fig, ax = plt.subplots(figsize=(6, 5.4))
    draw_confusion(ax, best)
    save(fig, out_dir / "confusion.png")
    fig, axes = plt.subplots(2, 2, figsize=(12, 9.5))
    for ax, draw in zip(axes.flat, (draw_accuracy, draw_loss, draw_lr)):
        draw(ax, runs)
        ax.grid(alpha=0.3)
    draw_confusion(axes[1, 1], best)
    fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    save(fig, out_dir / "overview.png")


def comparison_table(runs, dataset) -> str:
    head = ("| schedule | test acc (%) | best test acc (%) | epochs | LR reductions | stopped by | train s "
            "| images/s |\n"
            "|---|---:|---:|---:|---:|---|---:|---:|\n")
    body = "".join(
        f"| {r.schedule} | {_pct(s['test_acc'])} | {_pct(s['best_test_acc'])} | {s['epochs']} | {s['lr_reductions']} | "
        f"{s['stop_reason']} | {s['train_seconds']:.1f} | {s['images_per_second']:,.0f} |\n"
        for r in runs for s in [r.summary]
    )
    note = f"\nReference: {THESIS[dataset]}.\n" if dataset in THESIS else "\n"
    return head + body + note


def _pct(v):
    return f"{v:.2f}" if isinstance(v, (int, float)) else str(v)
