import json

import numpy as np
import pytest
from PIL import Image

from thesislab import plots
from thesislab.errors import UserError
from thesislab.train import report


def fake_run(folder, schedule, lrs, accs, predictions):
    rows = [{"epoch": e, "lr": lr, "train_loss": 2.0 / e, "train_acc": a - 1, "val_loss": None, "val_acc": None,
             "test_loss": 2.1 / e, "test_acc": a, "seconds": 1.0, "train_seconds": 0.8, "images": 100}
            for e, (lr, a) in enumerate(zip(lrs, accs), 1)]
    d = folder / schedule
    report.write_log(d / "epochs.csv", rows)
    summary = report.summarize(rows, "max_epochs", schedule=schedule, model="m", device="cpu")
    (d / "metrics.json").write_text(json.dumps(summary))
    report.write_predictions(d / "predictions.csv", [a for a, _ in predictions], [p for _, p in predictions],
                             ["cat", "dog", "eel"])
    return summary


def test_figures_and_table_from_logs(tmp_path):
    m = tmp_path / "metrics"
    fake_run(m, "static", [0.1] * 4, [40, 50, 55, 56], [(0, 0), (1, 2), (2, 2)])
    dyn = fake_run(m, "dynamic", [0.1, 0.1, 0.01, 0.01], [40, 50, 60, 66.6666], [(0, 0), (1, 1), (2, 2)])
    assert dyn["lr_reductions"] == 1
    runs = plots.load_runs(m, ["static", "dynamic"])
    plots.draw_all(runs, tmp_path / "plots", "title")
    for name in ("overview", "accuracy", "loss", "lr", "confusion"):
        with Image.open(tmp_path / "plots" / f"{name}.png") as img:
            assert img.size[0] > 300
    table = plots.comparison_table(runs, "speedsigns")
    assert "| dynamic | 66.67 | 66.67 | 4 | 1 | max_epochs | 4.0 | 125 |" in table
    assert "95.1% test" in table
    assert plots.better(runs).schedule == "dynamic"


def test_confusion_counts(tmp_path):
    fake_run(tmp_path, "static", [0.1], [50], [(0, 0), (0, 1), (1, 1), (2, 0), (2, 2), (2, 2)])
    names, m = plots.confusion(tmp_path / "static" / "predictions.csv")
    assert names == ["cat", "dog", "eel"]
    assert np.array_equal(m, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])


def test_missing_logs_name_the_stage(tmp_path):
    with pytest.raises(UserError, match="run train@cosine first"):
        plots.load_runs(tmp_path, ["cosine"])
