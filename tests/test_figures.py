"""The figures show what they claim: data read back from the matplotlib artists, not the PNGs' sizes."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import fake_run
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.text import Annotation

from thesislab.comparison import compare as cmp
from thesislab.comparison import curves, figures


def make_run(tmp_path, schedule, seed, accs, lrs, val=None, predictions=((0, 0), (1, 1), (1, 0))):
    rows = [{"lr": lr, "train_loss": 2.0 / e, "train_acc": a - 1, "val_acc": None if val is None else val[e - 1],
             "test_acc": a} for e, (a, lr) in enumerate(zip(accs, lrs), 1)]
    return fake_run(tmp_path / "runs", schedule, seed, rows, predictions=predictions)


@pytest.fixture
def runs(tmp_path):
    return {
        "static": [make_run(tmp_path, "static", 0, [50, 60, 70], [0.1] * 3, val=[51, 61, 71]),
                   make_run(tmp_path, "static", 1, [40, 50], [0.1] * 2, val=[41, 49])],  # stopped after 2
        "dynamic": [make_run(tmp_path, "dynamic", 0, [50, 65, 80, 81], [0.1, 0.1, 0.01, 0.01], val=[50, 66, 79, 80]),
                    make_run(tmp_path, "dynamic", 1, [52, 66, 70, 79], [0.1, 0.01, 0.01, 0.001],
                             val=[53, 60, 70, 78])],
    }


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_mean_curve_band_and_seeds(runs):
    fig, ax = plt.subplots()
    figures.draw_curves(ax, runs, "test_acc", "t", "y")
    mean = lines_by_label(ax)["static (mean of 2)"]
    assert "a run that stopped counts at its last value" in lines_by_label(ax)
    # Seed 1 stopped after epoch 2 and keeps its last value: epoch 3's mean is (70 + 50) / 2.
    assert list(mean.get_xdata()) == [1, 2, 3] and list(mean.get_ydata()) == [45, 55, 60]
    band = [c for c in ax.collections if isinstance(c, PolyCollection)][0]
    ys = band.get_paths()[0].vertices[:, 1]
    std3 = np.std([70, 50], ddof=1)
    assert ys.max() == pytest.approx(60 + std3) and ys.min() == pytest.approx(45 - np.std([50, 40], ddof=1))
    thin = [line for line in ax.get_lines() if line.get_linewidth() < 1]
    assert sorted(len(line.get_xdata()) for line in thin) == [2, 3, 4, 4]  # each seed ends where it stopped
    plt.close(fig)


def test_a_schedule_hidden_under_another_until_its_first_cut_is_said(tmp_path):
    same = {"static": [make_run(tmp_path, "static", 0, [50, 60, 70, 72], [0.1] * 4)],
            "dynamic": [make_run(tmp_path, "dynamic", 0, [50, 60, 70, 75], [0.1, 0.1, 0.1, 0.01])]}
    fig, ax = plt.subplots()
    figures.draw_curves(ax, same, "test_acc", "t", "y")
    assert "dynamic = static until epoch 3 (one hides the other)" in lines_by_label(ax)
    assert "a run that stopped counts at its last value" not in lines_by_label(ax)  # both ran 4 epochs
    (inset,) = ax.child_axes  # accuracies end close together: the epochs from where they part, zoomed
    assert inset.get_title() == "means from epoch 2, zoomed" and inset.get_ylim()[0] > 55
    apart = {"static": same["static"], "dynamic": [make_run(tmp_path, "dynamic", 1, [51, 60, 70, 75], [0.1] * 4)]}
    fig2, ax2 = plt.subplots()
    figures.draw_curves(ax2, apart, "test_acc", "t", "y")
    assert not [k for k in lines_by_label(ax2) if "hides" in k]  # apart from epoch 1: nothing to say
    plt.close(fig)
    plt.close(fig2)


def test_the_monitored_validation_accuracy_is_drawn(runs):
    fig, ax = plt.subplots()
    figures.PANELS["val_accuracy"](ax, runs)
    assert list(lines_by_label(ax)["dynamic (mean of 2)"].get_ydata()) == [51.5, 63, 74.5, 79]
    plt.close(fig)


def test_end_labels_never_overlap(tmp_path):
    close = {"a": [make_run(tmp_path, "a", 0, [50, 90.0], [0.1] * 2)],
             "b": [make_run(tmp_path, "b", 0, [50, 90.1], [0.1] * 2)],
             "c": [make_run(tmp_path, "c", 0, [50, 89.9], [0.1] * 2)]}
    fig, ax = plt.subplots()
    figures.draw_curves(ax, close, "test_acc", "t", "y")
    labels = {a.get_text(): a.xy[1] for a in ax.texts if isinstance(a, Annotation)}
    assert set(labels) == {"90.0%", "90.1%", "89.9%"}
    ys = sorted(labels.values())
    low, high = ax.get_ylim()
    assert min(np.diff(ys)) >= figures.LABEL_GAP * (high - low) - 1e-9
    # Outside the plot, right of the axes: no legend or zoomed inset can hide one.
    fig.canvas.draw()
    right = ax.get_window_extent().x1
    assert all(a.get_window_extent().x0 >= right for a in ax.texts if isinstance(a, Annotation))
    plt.close(fig)


def test_lr_steps_end_at_the_last_epoch_and_cuts_are_marked(runs):
    fig, ax = plt.subplots()
    figures.draw_lr(ax, runs)
    dyn = [line for line in ax.get_lines() if line.get_color() == figures.COLORS["dynamic"]]
    assert [list(line.get_xdata()) for line in dyn] == [[1, 2, 3, 4], [1, 2, 3, 4]]  # the last epoch, not +1
    assert list(dyn[1].get_ydata()) == [0.1, 0.01, 0.01, 0.001]
    assert all(line.get_drawstyle() == "steps-post" for line in ax.get_lines())
    # Each seed's own LR and nothing else: no mean of steps (0.055 is an LR no run used), no band.
    assert sorted(tuple(line.get_ydata()) for line in ax.get_lines()) == sorted(
        [(0.1, 0.1, 0.1), (0.1, 0.1), (0.1, 0.1, 0.01, 0.01), (0.1, 0.01, 0.01, 0.001)])
    assert not [c for c in ax.collections if isinstance(c, PolyCollection)]
    markers = [c for c in ax.collections if isinstance(c, PathCollection)]
    points = sorted(tuple(p) for c in markers for p in c.get_offsets())
    assert points == sorted([(3, 0.01), (2, 0.01), (4, 0.001)])  # the epochs trained at a lower LR
    plt.close(fig)


def test_paired_dots_join_each_seed(tmp_path):
    fig, ax = plt.subplots()
    figures.draw_paired(ax, {"static": {0: 90.0, 1: 92.0, 2: None}, "dynamic": {0: 93.0, 1: 91.0, 2: 95.0}})
    joined = sorted((list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines())
    assert joined == [([0, 1], [90.0, 93.0]), ([0, 1], [92.0, 91.0]), ([1], [95.0])]
    assert {a.get_text() for a in ax.texts} == {"91.00%", "93.00%"}
    plt.close(fig)


def test_confusion_counts_and_the_median_run(runs, tmp_path):
    run = make_run(tmp_path, "x", 0, [50], [0.1], predictions=((0, 0), (0, 1), (1, 1), (1, 1), (1, 0)))
    names, m = figures.confusion(run.predictions)
    assert names == ["cat", "dog"] and m.tolist() == [[1, 1], [1, 2]]
    fig, ax = plt.subplots()
    figures.draw_confusion(ax, run, 1)
    assert np.allclose(ax.images[0].get_array(), [[0.5, 0.5], [1 / 3, 2 / 3]])
    assert "60.0% test" in ax.get_title()
    plt.close(fig)
    three = [make_run(tmp_path, "y", s, [a], [0.1]) for s, a in enumerate([70, 90, 80])]
    assert figures.median_run(three).name == "y-2"


def test_curve_csv_carries_stopped_runs_forward(runs, tmp_path):
    curves.write_csvs(tmp_path / "c", runs)
    rows = (tmp_path / "c" / "test_acc.csv").read_text().splitlines()
    assert "3,static,60,14.1421,45.8579,74.1421,1" in rows  # one of two seeds still running at epoch 3
    # The LR: each seed's own steps over the epochs it trained, never a mean of steps or a carried value.
    lr = (tmp_path / "c" / "lr.csv").read_text().splitlines()
    assert lr == ["epoch,schedule,seed,lr", "1,static,0,0.1", "2,static,0,0.1", "3,static,0,0.1", "1,static,1,0.1",
                  "2,static,1,0.1", "1,dynamic,0,0.1", "2,dynamic,0,0.1", "3,dynamic,0,0.01", "4,dynamic,0,0.01",
                  "1,dynamic,1,0.1", "2,dynamic,1,0.01", "3,dynamic,1,0.01", "4,dynamic,1,0.001"]


def test_a_stopped_run_holds_its_last_value_and_one_seed_has_no_spread(tmp_path):
    a = make_run(tmp_path, "x", 0, [40, 50, 55], [0.1] * 3)  # stopped after 3 epochs
    b = make_run(tmp_path, "x", 1, [41, 51, 61, 71, 81], [0.1] * 5)
    epochs, values, last = curves.over_seeds([a, b], "test_acc")
    assert list(epochs) == [1, 2, 3, 4, 5] and last == [3, 5]
    assert values[0].tolist() == [40, 50, 55, 55, 55] and values[1].tolist() == [41, 51, 61, 71, 81]
    mean, std = curves.mean_and_std(values[:1])
    assert mean.tolist() == [40, 50, 55, 55, 55] and std.tolist() == [0.0] * 5


def test_a_run_without_validation_leaves_its_csv_cells_empty(tmp_path):
    curves.write_csvs(tmp_path / "c", {"static": [make_run(tmp_path, "static", 0, [50, 60], [0.1] * 2)]})
    rows = (tmp_path / "c" / "val_acc.csv").read_text().splitlines()
    assert rows[1:] == ["1,static,,,,,1", "2,static,,,,,1"]


def plain_comparison(runs):
    settings = cmp.Settings("static", 0.5, 90, "test", 10)
    arms = {a: {r.summary["seed"]: cmp.run_numbers(r, settings) for r in rs} for a, rs in runs.items()}
    return cmp.with_history(cmp.compare(arms, settings), {"runs": "k", "seeds": []}, None)


def test_draw_all_writes_every_figure(runs, tmp_path):
    final = {a: {r.summary["seed"]: r.summary["test_acc"] for r in rs} for a, rs in runs.items()}
    figures.draw_all(runs, final, "dynamic", tmp_path / "plots", "title", plain_comparison(runs))
    for name in ("overview", "accuracy", "val_accuracy", "loss", "lr", "paired", "confusion", "looks"):
        assert (tmp_path / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    from PIL import Image

    width = Image.open(tmp_path / "plots" / "overview.png").size[0]
    assert 1000 < width <= 1400  # the six panels fit a 1,400-pixel page (dvc plots, a browser window)


def interval_lines(ax):
    return [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 2 and ln.get_xdata()[0] == ln.get_xdata()[1]]


def test_a_plain_comparison_draws_its_one_ci_against_the_equivalence_band(runs):
    comparison = plain_comparison(runs)
    fig, ax = plt.subplots()
    figures.draw_looks(ax, comparison)
    pair = comparison["paired"]["dynamic"]["test_acc"]
    (bar,) = interval_lines(ax)
    assert list(bar.get_ydata()) == pytest.approx([pair["ci95_low"], pair["ci95_high"]])
    band = [p for p in ax.patches if p.get_label().startswith("+-0.5")]
    assert len(band) == 1 and ax.get_title() == "Paired difference, 95% CI (2 seeds)"
    assert list(bar.get_xdata()) == [0, 0] and [t.get_text() for t in ax.get_xticklabels()] == ["dynamic"]
    plt.close(fig)


def test_a_sequential_design_draws_each_look_and_arrows_for_intervals_off_the_axis():
    from conftest import tiny_config

    from thesislab.comparison import looks

    cfg = tiny_config(seeds=list(range(5)), schedules=["static", "dynamic"],
                      compare={"sequential": {"max_seeds": 15, "every": 5}})
    runs = {"static": [], "dynamic": []}
    diffs = {"dynamic": dict(enumerate([0.9, 1.3, 1.1, 0.8, 1.2, 1.0, 0.7, 1.4, 1.1, 0.9]))}
    record, _ = looks.advance({}, cfg, runs, diffs)
    cfg10 = tiny_config(seeds=list(range(10)), schedules=["static", "dynamic"],
                        compare={"sequential": {"max_seeds": 15, "every": 5}})
    record, _ = looks.advance({"sequential": record}, cfg10, runs, diffs)
    comparison = {"method": "sequential", "sequential": record, "settings": {"min_effect": 0.5, "baseline": "static"}}
    fig, ax = plt.subplots()
    figures.draw_looks(ax, comparison)
    bars = interval_lines(ax)
    assert len(bars) == len(record["looks"]) == 2
    assert record["looks"][0]["challengers"]["dynamic"]["high"] > ax.get_ylim()[1]  # O'Brien-Fleming's first look
    assert any(ln.get_marker() == "^" for ln in ax.get_lines())
    decided = record["decisions"]["dynamic"]["decision"]
    assert decided == "better" and any(a.get_text() == "better" for a in ax.texts)
    plt.close(fig)
