"""The comparison's figures: per schedule, the mean curve over seeds with a +-1 std band and each seed as a
thin line; the LR with its cuts marked; final test accuracy paired by seed; the confusion matrix of the median
run. Each is drawn on matplotlib axes by a small function, so the single figures and the overview share them.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from thesislab import files, io  # noqa: E402
from thesislab.comparison import curves  # noqa: E402
from thesislab.train.log import lr_cut_epochs  # noqa: E402

COLORS = {"static": "#d55e00", "dynamic": "#0072b2"}  # colour-blind-safe pair; others take the cycle
OTHER_COLORS = ("#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000")
LABEL_GAP = 0.045  # end labels at least this share of the axis height apart
MAX_CUT_MARKERS = 12  # a schedule that lowers the LR every epoch (cosine, exp) gets no markers


def color(arm, i):
    return COLORS.get(arm, OTHER_COLORS[i % len(OTHER_COLORS)])


def draw_curves(ax, runs_by_arm, key, title, ylabel, fmt="{:.1f}%", log=False):
    """Mean +- std band and thin seed lines of one per-epoch quantity, a label at the end of each mean. The LR
    is drawn in steps (it holds through an epoch), the rest as lines."""
    plot = (lambda *a, **k: ax.step(*a, where="post", **k)) if key == "lr" else ax.plot
    ends, means, held = [], {}, False
    for i, (arm, runs) in enumerate(runs_by_arm.items()):
        c = color(arm, i)
        epochs, values, last = curves.over_seeds(runs, key)
        if np.all(np.isnan(values)):
            continue
        for j, end in enumerate(last):
            plot(epochs[:end], values[j, :end], color=c, lw=0.7, alpha=0.35)
        mean, std = curves.mean_and_std(values)
        low = np.maximum(mean - std, np.nanmin(values, axis=0)) if log else mean - std  # a log axis has no 0
        ax.fill_between(epochs, low, mean + std, color=c, alpha=0.18, lw=0, step="post" if key == "lr" else None)
        held = held or min(last) < max(last)
        plot(epochs, mean, color=c, lw=2.2, label=f"{arm} (mean of {len(runs)})")
        ends.append((epochs[-1], mean[-1], fmt.format(mean[-1]), c))
        means[arm] = mean
    ax.set(title=title, xlabel="epoch", ylabel=ylabel)
    if not ends:
        ax.text(0.5, 0.5, f"no {key} in these runs\n(monitor: test holds out no validation split)",
                transform=ax.transAxes, ha="center", va="center", color="0.4")
        return
    if log:
        ax.set_yscale("log")
    _end_labels(ax, ends, log)
    zoomed = key.endswith("_acc") and _zoom_where_they_differ(ax, means)
    notes = _where_curves_coincide(means) + (["a run that stopped counts at its last value"] if held else [])
    for note in notes:  # in the legend, which the plot keeps clear of the curves
        ax.plot([], [], " ", label=note)
    ax.legend(fontsize=8, loc="lower right" if zoomed else "best")  # below the zoomed inset


def _zoom_where_they_differ(ax, means) -> bool:
    """The accuracies end a point or two apart near the top of a 0-100 axis: an inset shows the epochs from
    where the schedules' means part to the end, on the range they span there (means only)."""
    if len(means) < 2:
        return False
    n = min(len(m) for m in means.values())
    stacked = np.array([m[:n] for m in means.values()])
    apart = np.flatnonzero(np.ptp(stacked, axis=0) > 1e-9)
    if not len(apart):
        return False
    start = max(0, int(apart[0]) - 2)
    tail = np.concatenate([m[start:] for m in means.values()])
    tail = tail[np.isfinite(tail)]
    low, high = float(tail.min()), float(tail.max())
    pad = max(0.1 * (high - low), 0.2)
    inset = ax.inset_axes([0.42, 0.4, 0.55, 0.34])
    for i, (arm, mean) in enumerate(means.items()):
        epochs = np.arange(1, len(mean) + 1)
        inset.plot(epochs[start:], mean[start:], color=color(arm, i), lw=1.8)
    inset.set_ylim(low - pad, high + pad)
    inset.set_title(f"means from epoch {start + 1}, zoomed", fontsize=7.5)
    inset.tick_params(labelsize=7)
    inset.grid(alpha=0.3)
    return True


def _where_curves_coincide(means) -> list:
    """Two schedules train identically until one first changes its LR, so one mean curve hides the other there:
    say so, rather than leave a reader looking for the hidden one."""
    names = list(means)
    notes = []
    for other in names[1:]:
        a, b = means[names[0]], means[other]
        n = min(len(a), len(b))
        differ = np.flatnonzero(~np.isclose(a[:n], b[:n], rtol=0, atol=1e-9, equal_nan=True))
        same_until = int(differ[0]) if len(differ) else n
        if same_until >= 2:
            notes.append(f"{other} = {names[0]} " + (f"until epoch {same_until}" if len(differ) else "throughout") +
                         " (one hides the other)")
    return notes


def _end_labels(ax, ends, log):
    """Label each curve's last value at its end, nudged apart so labels never overlap."""
    if not ends:
        return
    to_axis = (lambda y: np.log10(y)) if log else (lambda y: y)
    from_axis = (lambda y: 10**y) if log else (lambda y: y)
    low, high = (to_axis(v) for v in ax.get_ylim())
    gap = LABEL_GAP * (high - low)
    order = sorted(range(len(ends)), key=lambda i: ends[i][1])
    placed = []
    for i in order:
        y = to_axis(ends[i][1])
        if placed and y < placed[-1] + gap:
            y = placed[-1] + gap
        placed.append(y)
    for i, y in zip(order, placed):
        _, _, text, c = ends[i]
        # Just right of the axes, at the curve's last value: outside the plot, where no legend, inset or curve can
        # hide a label (a run that stopped early ends inside the plot; the colour ties the label to its curve).
        ax.annotate(text, (1.0, from_axis(y)), xycoords=("axes fraction", "data"), xytext=(4, 0),
                    textcoords="offset points", color=c, va="center", fontsize=9, fontweight="bold",
                    annotation_clip=False)


def draw_lr(ax, runs_by_arm):
    """The LR of each run as its own step line to its last epoch (log scale), cuts marked. No mean over seeds: a
    mean of step functions is an LR no run used."""
    for i, (arm, runs) in enumerate(runs_by_arm.items()):
        c = color(arm, i)
        for j, run in enumerate(runs):
            lr = [r["lr"] for r in run.rows]
            epochs = np.arange(1, len(lr) + 1)
            ax.step(epochs, lr, where="post", color=c, lw=1.6, alpha=0.75,
                    label=f"{arm} ({len(runs)} seeds, a line each)" if j == 0 else None)
            cuts = lr_cut_epochs(run.rows)
            if 0 < len(cuts) <= MAX_CUT_MARKERS:
                ax.scatter(cuts, [lr[e - 1] for e in cuts], marker="v", s=40, color=c, zorder=3,
                           label=f"{arm}: LR cut" if j == 0 else None)
    ax.set_yscale("log")
    ax.set(title="Learning rate, each seed (cuts marked)", xlabel="epoch", ylabel="LR")
    ax.legend(fontsize=8)


def draw_paired(ax, final_by_arm):
    """Final test accuracy: a dot per (arm, seed), a grey line joining each seed's dots, each arm's mean marked
    (the difference's interval is in looks.png and comparison.md)."""
    arms = list(final_by_arm)
    seeds = sorted({s for values in final_by_arm.values() for s in values})
    for s in seeds:
        xs = [i for i, a in enumerate(arms) if final_by_arm[a].get(s) is not None]
        ax.plot(xs, [final_by_arm[arms[i]][s] for i in xs], color="0.6", lw=1, marker="o", ms=5, zorder=1)
    for i, a in enumerate(arms):
        values = [v for v in final_by_arm[a].values() if v is not None]
        if not values:
            continue
        mean = float(np.mean(values))
        ax.scatter([i], [mean], s=140, marker="_", color=color(a, i), linewidths=3, zorder=3)
        ax.annotate(f"{mean:.2f}%", (i, mean), xytext=(12, 0), textcoords="offset points", va="center",
                    color=color(a, i), fontweight="bold", fontsize=9)
    ax.set_xticks(range(len(arms)), arms)
    ax.set_xlim(-0.5, len(arms) - 0.5)
    ax.set(title=f"Final test accuracy, paired by seed ({len(seeds)} seeds)", ylabel="test accuracy (%)")


def intervals(comparison) -> dict:
    """{challenger: [(seeds, mean, low, high, decision)]}: a sequential design's repeated CI at each look, or the
    one 95% CI of a plain comparison."""
    if comparison.get("method") == "sequential":
        record = comparison["sequential"]
        out = {}
        for look in record["looks"]:
            for name, e in look["challengers"].items():
                out.setdefault(name, []).append((look["n"], e["mean"], e["low"], e["high"], e["decision"]))
        return out
    return {name: [(pair["test_acc"]["n"], pair["test_acc"]["mean"], pair["test_acc"]["ci95_low"],
                    pair["test_acc"]["ci95_high"], None)] for name, pair in comparison["paired"].items()
            if pair["test_acc"]["ci95_low"] is not None}


def draw_looks(ax, comparison):
    """The paired difference's interval at each look (a sequential design) or its 95% CI (a plain comparison),
    against 0 and the +-min_effect band: inside the band is equivalent, clear of 0 is a difference."""
    margin = comparison["settings"]["min_effect"]
    by_name = intervals(comparison)
    ax.axhspan(-margin, margin, color="#009e73", alpha=0.12, lw=0, label=f"+-{margin:g}: equivalent")
    ax.axhline(0, color="0.3", lw=1)
    # The axis fits the last look and every mean: early looks' intervals (wide by design) end in an arrow.
    ends = [abs(v) for rows in by_name.values() for v in (rows[-1][2], rows[-1][3], *[r[1] for r in rows])]
    span = 1.25 * max([2 * margin] + [e for e in ends if np.isfinite(e)])
    sequential = comparison.get("method") == "sequential"
    for i, (name, rows) in enumerate(by_name.items()):
        c = color(name, i + 1)
        xs = np.array([r[0] for r in rows], dtype=float) + 0.25 * i if sequential else np.array([float(i)])
        for x, mean, low, high, decision in zip(xs, *zip(*[r[1:] for r in rows])):
            ax.plot([x, x], [max(low, -span), min(high, span)], color=c, lw=2.4, solid_capstyle="butt")
            for end, marker in ((high, "^"), (low, "v")):
                if abs(end) > span:  # an early look's interval runs off the axis: an arrow says so
                    ax.plot([x], [np.sign(end) * span], marker=marker, color=c, ms=6)
            ax.plot([x], [mean], "o", color=c, ms=5)
            if decision and decision != "continue":
                ax.annotate(decision, (x, min(high, span)), xytext=(0, 6), textcoords="offset points",
                            ha="center", color=c, fontweight="bold", fontsize=9)
        ax.plot([], [], color=c, lw=2.4, label=name)
    ax.set_ylim(-span, span)
    ax.margins(x=0.12)  # room for the decision's label beside the last look
    ylabel = f"test accuracy - {comparison['settings']['baseline']} (points)"
    if sequential:
        ax.set(title="Repeated CI per look (sequential design)", xlabel="seeds", ylabel=ylabel)
    else:
        ax.set_xticks(range(len(by_name)), list(by_name))
        ax.set_xlim(-0.75, len(by_name) - 0.25)
        seeds = comparison.get("seeds")
        ax.set(title=f"Paired difference, 95% CI ({seeds} seeds)" if seeds else "Paired difference, 95% CI",
               ylabel=ylabel)
        if not by_name:
            ax.text(0.5, 0.5, "no interval: too few seeds", transform=ax.transAxes, ha="center", color="0.4")
    ax.legend(fontsize=8, loc="best")


def confusion(predictions_csv):
    pairs = files.read_predictions(predictions_csv)
    names = sorted({a for a, _ in pairs} | {p for _, p in pairs})
    index = {n: i for i, n in enumerate(names)}
    m = np.zeros((len(names), len(names)), dtype=int)
    for a, p in pairs:
        m[index[a], index[p]] += 1
    return names, m


def median_run(runs):
    """The run whose final test accuracy is the median (the lower middle for an even count)."""
    ranked = sorted(runs, key=lambda r: (r.summary["test_acc"] if r.summary["test_acc"] is not None else -1))
    return ranked[(len(ranked) - 1) // 2]


def draw_confusion(ax, run, of):
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
    ax.set(title=f"Confusion: {run.name}, the median of {of} ({acc:.1f}% test)\n"
                 "test images counted; shade: share of the actual class", xlabel="predicted", ylabel="actual")


OVERVIEW_DPI = 80  # the six panels at 17 inches: about 1,370 pixels wide, inside a 1,400-pixel page (dvc plots)


def save(fig, path, dpi=110):
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)


PANELS = {  # file name -> how to draw it
    "accuracy": lambda ax, r: draw_curves(ax, r, "test_acc", "Test accuracy (mean +- std over seeds)", "accuracy (%)"),
    "val_accuracy": lambda ax, r: draw_curves(ax, r, "val_acc", "Validation accuracy: what the schedule monitors",
                                              "accuracy (%)"),
    "loss": lambda ax, r: draw_curves(ax, r, "train_loss", "Train loss (mean +- std over seeds)", "cross-entropy",
                                      fmt="{:.3f}", log=True),
    "lr": draw_lr,
}


def draw_all(runs_by_arm, final_by_arm, confusion_arm, out_dir, title, comparison):
    """plots/{accuracy,val_accuracy,loss,lr,paired,confusion,looks,overview}.png"""
    out_dir = Path(out_dir)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    draw_looks(ax, comparison)
    ax.grid(alpha=0.3, axis="y")
    save(fig, out_dir / "looks.png")
    for name, draw in PANELS.items():
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        draw(ax, runs_by_arm)
        ax.grid(alpha=0.3)
        save(fig, out_dir / f"{name}.png")
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    draw_paired(ax, final_by_arm)
    ax.grid(alpha=0.3, axis="y")
    save(fig, out_dir / "paired.png")
    median = median_run(runs_by_arm[confusion_arm])
    fig, ax = plt.subplots(figsize=(6, 5.4))
    draw_confusion(ax, median, len(runs_by_arm[confusion_arm]))
    save(fig, out_dir / "confusion.png")

    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    for ax, draw in zip(axes.flat, PANELS.values()):
        draw(ax, runs_by_arm)
        ax.grid(alpha=0.3)
    draw_paired(axes[1, 1], final_by_arm)
    axes[1, 1].grid(alpha=0.3, axis="y")
    draw_confusion(axes[1, 2], median, len(runs_by_arm[confusion_arm]))
    fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    save(fig, out_dir / "overview.png", dpi=OVERVIEW_DPI)
