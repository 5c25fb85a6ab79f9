"""The training run in-process on tiny data: determinism, resume, divergence, checkpoints, outputs."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from thesislab import io
from thesislab.data import layout, pathlist, speedsigns
from thesislab.data.stats import channel_stats
from thesislab.errors import UserError
from thesislab.train import checkpoint, engine, report
from thesislab.train.run import RunPaths, train

TIMING = set(report.TIMING_KEYS)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    speedsigns.generate(d / "raw", {"train": 12, "test": 4}, 16, seed=0, workers=1, progress=False)
    found = layout.scan(d / "raw")
    pathlist.write(found, d / "pathlist")
    io.write_json(d / "stats.json", channel_stats([d / "raw" / p for p, _ in found.files["train"]], 16, workers=1,
                                                  progress=False))
    return d


def run_paths(tiny_data, out, schedule="static"):
    return RunPaths(root=tiny_data / "raw", pathlist=tiny_data / "pathlist", stats=tiny_data / "stats.json",
                    cache=out / "cache", model=out / "models" / f"{schedule}.pt",
                    checkpoint=out / "checkpoints" / schedule / "last.pt", metrics=out / "metrics" / schedule)


def run(tiny_data, out, schedule="static", **over):
    paths = run_paths(tiny_data, out, schedule)
    summary = train(tiny_config(**over), schedule, paths, progress=False)
    return summary, paths


def without_timing(d):
    return {k: v for k, v in d.items() if k not in TIMING}


def log_without_timing(paths):
    return [without_timing(r) for r in report.read_log(paths.metrics / "epochs.csv")]


def weights(path):
    return checkpoint.load(path)["state_dict"]


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_outputs_and_metrics_keys(tiny_data, tmp_path):
    summary, paths = run(tiny_data, tmp_path)
    on_disk = json.loads((paths.metrics / "metrics.json").read_text())
    assert on_disk == summary
    for key in ("test_acc", "best_test_acc", "epochs", "lr_reductions", "stop_reason", "train_seconds",
                "images_per_second"):
        assert key in on_disk
    assert 0 <= on_disk["test_acc"] <= 100 and on_disk["epochs"] == 3 and on_disk["stop_reason"] == "max_epochs"
    rows = report.read_log(paths.metrics / "epochs.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert list(rows[0]) == list(report.LOG_COLUMNS)
    predictions = (paths.metrics / "predictions.csv").read_text().splitlines()
    assert predictions[0] == "actual,predicted" and len(predictions) == 1 + 44
    # The confusion matrix's diagonal is the final test accuracy.
    right = sum(a == p for a, p in (line.split(",") for line in predictions[1:]))
    assert 100 * right / 44 == pytest.approx(on_disk["test_acc"], abs=1e-3)


def test_cpu_runs_are_deterministic(tiny_data, tmp_path):
    a, pa = run(tiny_data, tmp_path / "a", "dynamic", augment=True)
    b, pb = run(tiny_data, tmp_path / "b", "dynamic", augment=True)
    assert without_timing(a) == without_timing(b)
    assert log_without_timing(pa) == log_without_timing(pb)
    assert same_weights(weights(pa.model), weights(pb.model))
    assert (pa.metrics / "predictions.csv").read_bytes() == (pb.metrics / "predictions.csv").read_bytes()


def test_interrupted_run_resumes_to_the_same_result(tiny_data, tmp_path, monkeypatch):
    over = dict(epochs=4, augment=True, schedules=["dynamic"], dynamic={"window": 2, "slope": 50.0})
    whole, pw = run(tiny_data, tmp_path / "whole", "dynamic", **over)

    real = engine.train_one_epoch
    calls = {"n": 0}

    def dies_in_epoch_3(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(engine, "train_one_epoch", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_data, tmp_path / "cut", "dynamic", **over)
    paths = run_paths(tiny_data, tmp_path / "cut", "dynamic")
    assert checkpoint.load(paths.checkpoint)["epoch"] == 2
    assert not paths.model.exists() and not (paths.metrics / "metrics.json").exists()

    monkeypatch.setattr(engine, "train_one_epoch", real)
    resumed, pr = run(tiny_data, tmp_path / "cut", "dynamic", **over)
    assert whole["lr_reductions"] >= 1  # the schedule's state crossed the checkpoint too
    assert without_timing(resumed) == without_timing(whole)
    assert log_without_timing(pr) == log_without_timing(pw)
    assert same_weights(weights(pr.model), weights(pw.model))


def test_checkpoint_from_other_params_is_not_resumed(tiny_data, tmp_path, capsys):
    _, paths = run(tiny_data, tmp_path / "x", epochs=4, lr=0.02)
    assert checkpoint.load(paths.checkpoint)["epoch"] == 3  # the last epoch is not checkpointed: it ends
    fresh, pf = run(tiny_data, tmp_path / "fresh", epochs=4)
    again, pa = run(tiny_data, tmp_path / "x", epochs=4)
    assert "made with different params, data or code; not resuming" in capsys.readouterr().out
    assert without_timing(again) == without_timing(fresh)


def test_checkpoint_from_other_code_is_not_resumed(tiny_data, tmp_path, capsys, monkeypatch):
    code = tmp_path / "code"
    code.mkdir()
    (code / "model.py").write_text("version = 1\n")
    monkeypatch.setattr(checkpoint, "PACKAGE", code)
    run(tiny_data, tmp_path / "x", epochs=4)
    capsys.readouterr()
    run(tiny_data, tmp_path / "x", epochs=4)
    assert "resuming from" in capsys.readouterr().out
    (code / "model.py").write_text("version = 2\n")
    run(tiny_data, tmp_path / "x", epochs=4)
    out = capsys.readouterr().out
    assert "made with different params, data or code; not resuming" in out and "resuming from" not in out


class RunsCode:
    """Pickles as a call that creates a file: proof of code run on load."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "pickle"])
def test_damaged_checkpoint_is_a_clear_error(tiny_data, tmp_path, damage):
    _, paths = run(tiny_data, tmp_path, epochs=4)
    data = paths.checkpoint.read_bytes()
    if damage == "truncate":
        paths.checkpoint.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        paths.checkpoint.write_bytes(b"\x00" * 100)
    else:  # a real torch checkpoint whose pickle would call a function on load
        torch.save({"fingerprint": "x", "payload": RunsCode(tmp_path / "ran")}, paths.checkpoint)
    with pytest.raises(UserError, match=r"last.pt: unreadable or tampered checkpoint"):
        run(tiny_data, tmp_path, epochs=4)
    assert not (tmp_path / "ran").exists()


def test_divergence_stops_at_once_and_still_writes_everything(tiny_data, tmp_path, capsys):
    summary, paths = run(tiny_data, tmp_path, lr=10.0, epochs=6, normalize=False)
    assert summary["stop_reason"] == "diverged"
    assert summary["epochs"] < 6
    assert paths.model.exists() and (paths.metrics / "predictions.csv").exists()
    assert json.loads((paths.metrics / "metrics.json").read_text())["stop_reason"] == "diverged"
    assert "diverged" in capsys.readouterr().err


def test_nan_loss_is_divergence(tiny_data, tmp_path, monkeypatch):
    import torch.nn.functional as F

    real = F.cross_entropy
    monkeypatch.setattr(F, "cross_entropy", lambda *a, **k: real(*a, **k) * float("nan"))
    summary, _ = run(tiny_data, tmp_path, epochs=3)
    assert summary["stop_reason"] == "diverged" and summary["epochs"] == 1


def test_loss_stop(tiny_data, tmp_path):
    summary, _ = run(tiny_data, tmp_path, loss_stop=100.0, epochs=5)
    assert summary["stop_reason"] == "loss_stop" and summary["epochs"] == 1


@pytest.mark.parametrize("schedule", ["step", "exp", "cosine", "onecycle", "plateau"])
def test_torch_schedules_train(tiny_data, tmp_path, schedule):
    summary, paths = run(tiny_data, tmp_path, schedule, epochs=2, monitor="test")
    assert summary["epochs"] == 2 and summary["schedule"] == schedule
    assert all(r["val_acc"] is None for r in report.read_log(paths.metrics / "epochs.csv"))


@pytest.mark.parametrize("model", ["vgg16", "simple_v3", "lenet", "mlp"])
def test_every_model_trains(tiny_data, tmp_path, model):
    summary, paths = run(tiny_data, tmp_path, model=model, epochs=1, normalize=False)
    assert summary["model"] == model
    net, meta = checkpoint.load_model(paths.model)
    assert meta["classes"] == list(speedsigns.CLASSES) and meta["normalization"] is None
    assert net(torch.zeros(2, 3, 16, 16)).shape == (2, 11)


def test_saved_model_reproduces_the_predictions(tiny_data, tmp_path):
    _, paths = run(tiny_data, tmp_path)
    net, meta = checkpoint.load_model(paths.model)
    from thesislab.data.dataset import PathListDataset

    ds = PathListDataset(tiny_data / "pathlist" / "test.txt", tiny_data / "raw", 11, 16)
    images, _ = ds.to_arrays(progress=False)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    mean, std = (torch.tensor(meta["normalization"][k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    predicted = net((x - mean) / std).argmax(1).tolist()
    rows = (paths.metrics / "predictions.csv").read_text().splitlines()[1:]
    assert [meta["classes"].index(r.split(",")[1]) for r in rows] == predicted


def test_decoded_images_are_cached_and_invalidated(tiny_data, tmp_path):
    from thesislab.data.dataset import PathListDataset

    data = tmp_path / "d"
    shutil.copytree(tiny_data, data)
    ds = lambda: PathListDataset(data / "pathlist" / "train.txt", data / "raw", 11, 16)  # noqa: E731
    a, _ = ds().to_arrays(tmp_path / "cache", progress=False)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    b, _ = ds().to_arrays(tmp_path / "cache", progress=False)
    assert (a == b).all()
    first = data / "raw" / "train" / "020kmh" / "00000.png"
    import numpy as np
    from PIL import Image

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(first)
    c, _ = ds().to_arrays(tmp_path / "cache", progress=False)
    assert c[0].max() == 0 and (c[1:] == a[1:]).all()
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


def test_the_chapter_4_dataset_gives_what_the_fast_path_caches(tiny_data):
    from thesislab.data.dataset import PathListDataset

    ds = PathListDataset(tiny_data / "pathlist" / "test.txt", tiny_data / "raw", 11, 16)
    images, labels = ds.to_arrays(progress=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=10)
    x, y = next(iter(loader))
    assert x.shape == (10, 3, 16, 16) and x.dtype == torch.float32
    assert torch.equal(x, torch.from_numpy(images[:10]).permute(0, 3, 1, 2).float() / 255)
    assert y.tolist() == labels[:10].tolist() and len(ds) == 44
