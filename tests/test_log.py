"""A run's summary, number by number, against hand arithmetic on made-up epochs."""

import math

import pytest

from thesislab.train.log import EpochLog, lr_cut_epochs, summarize

ROWS = [  # epoch, lr, train_loss, train_acc, val_acc, test_loss, test_acc
    (1, 0.1, 2.0, 30.0, 31.0, 1.9, 50.0),
    (2, 0.1, 1.0, 60.0, 62.0, 1.2, 70.0),
    (3, 0.01, 0.6, 75.0, 66.0, 1.3, 65.0),
    (4, 0.001, 0.5, 80.0, 81.0, 0.9, 80.00004),
]


def rows(data=ROWS):
    return [{"epoch": e, "lr": lr, "train_loss": tl, "train_acc": ta, "val_loss": 1.0, "val_acc": va,
             "test_loss": sl, "test_acc": sa, "seconds": 2.0 + e, "train_seconds": 1.5, "images": 100}
            for e, lr, tl, ta, va, sl, sa in data]


def summary(data=ROWS, stop="loss_stop"):
    return summarize(rows(data), stop, schedule="dynamic", seed=3, model="signnet", device="cpu", config="abc")


def test_every_number_of_a_summary():
    s = summary()
    assert s == {
        "test_acc": 80.0, "best_test_acc": 80.0, "best_epoch": 4, "test_loss": 0.9, "train_acc": 80.0,
        "train_loss": 0.5, "val_acc": 81.0, "epochs": 4, "lr_reductions": 2, "final_lr": 0.001,
        "stop_reason": "loss_stop", "train_seconds": 3.0 + 4.0 + 5.0 + 6.0,
        "images_per_second": round(400 / 6.0, 1), "schedule": "dynamic", "seed": 3, "model": "signnet",
        "device": "cpu", "config": "abc", "computation": {}, "schedule_params": {}, "test_set": None,
    }


def test_the_best_epoch_is_the_highest_test_accuracy_not_the_last():
    data = [r[:6] + (v,) for r, v in zip(ROWS, (50.0, 90.0, 65.0, 80.0))]
    s = summary(data)
    assert (s["test_acc"], s["best_test_acc"], s["best_epoch"]) == (80.0, 90.0, 2)


def test_undefined_numbers_are_null_never_nan_or_text():
    data = list(ROWS[:3]) + [(4, 0.001, math.nan, 80.0, 81.0, math.inf, math.nan)]
    s = summary(data, stop="diverged")
    assert s["test_acc"] is None and s["train_loss"] is None and s["test_loss"] is None
    assert (s["best_test_acc"], s["best_epoch"], s["stop_reason"]) == (70.0, 2, "diverged")
    assert summary([(1, 0.1, math.nan, 1.0, 1.0, math.nan, math.nan)])["best_epoch"] is None


def test_an_lr_cut_is_an_epoch_at_a_lower_rate_than_the_one_before():
    assert lr_cut_epochs(rows()) == [3, 4]
    same = [r[:1] + (0.1,) + r[2:] for r in ROWS]
    assert lr_cut_epochs(rows(same)) == []
    up = [r[:1] + (lr,) + r[2:] for r, lr in zip(ROWS, (0.1, 0.2, 0.2, 0.19999999999))]  # warm-up; float noise
    assert lr_cut_epochs(rows(up)) == []


def test_the_log_keeps_each_epoch_with_its_split_scores():
    log = EpochLog(rows()[:1])
    row = log.log(2, 0.05, {"loss": 1.0, "acc": 60.0, "seconds": 1.5, "images": 100},
                  {"val": None, "test": {"loss": 1.2, "acc": 70.0}}, seconds=2.5)
    assert log.epochs_done == 2 and log.rows[-1] is row
    assert (row["val_loss"], row["val_acc"], row["test_acc"], row["lr"]) == (None, None, 70.0, 0.05)
    assert log.summary("max_epochs", schedule="s", seed=0, model="m", device="d", config="c")["epochs"] == 2
    with pytest.raises(KeyError):
        log.log(3, 0.05, {"loss": 1.0, "acc": 60.0, "seconds": 1.5, "images": 100}, {"val": None}, seconds=1.0)


def test_validation_columns_come_from_the_validation_split_and_the_summary_keeps_the_stop_reason():
    log = EpochLog()
    row = log.log(1, 0.1, {"loss": 2.0, "acc": 30.0, "seconds": 1.0, "images": 10},
                  {"val": {"loss": 1.7, "acc": 41.0}, "test": {"loss": 1.9, "acc": 35.0}}, seconds=1.2)
    assert (row["val_loss"], row["val_acc"], row["test_loss"], row["test_acc"]) == (1.7, 41.0, 1.9, 35.0)
    s = log.summary("diverged", schedule="s", seed=0, model="m", device="d", config="c")
    assert (s["stop_reason"], s["val_acc"]) == ("diverged", 41.0)


def test_the_live_summary_is_replaced_whole_never_half_written(tmp_path, monkeypatch):
    """`dvc exp show` reads metrics/live/metrics.json while the run trains: a write that fails (or is caught)
    halfway must leave the previous epoch's summary readable, not a truncated file."""
    import builtins
    import io
    import json

    from thesislab.train.log import LiveLog

    log = LiveLog(tmp_path / "live", tmp_path / "view", "static-0", rows()[:1])
    summary_file = tmp_path / "live" / "metrics.json"
    assert json.loads(summary_file.read_text())["step"] == 1
    real_open = io.open

    class HalfWriter:  # writes half of what it is given, then the disk fails
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError("disk gone")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def failing_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return HalfWriter(f) if "metrics.json" in str(file) and "w" in mode else f

    monkeypatch.setattr(builtins, "open", failing_open)
    monkeypatch.setattr(io, "open", failing_open)
    with pytest.raises(OSError):
        log.append(rows()[1])
    monkeypatch.undo()
    after = json.loads(summary_file.read_text())
    assert (after["step"], after["run"], after["test_acc"]) == (1, "static-0", 50.0)
