"""The training run in-process on tiny data: determinism, resume, divergence, checkpoints, outputs."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config

from thesislab import files
from thesislab.errors import UserError
from thesislab.train import checkpoint, engine, runtime
from thesislab.train.assemble import RunPaths
from thesislab.train.run import train

TIMING = set(files.TIMING_KEYS)


def run_paths(tiny_data, out, schedule="static", seed=0):
    name = files.run_name(schedule, seed)
    return RunPaths(root=tiny_data / "raw", pathlist=tiny_data / "pathlist", stats=tiny_data / "stats.json",
                    cache=out / "cache", model=out / "models" / f"{name}.pt", weights=out / "weights",
                    work=out / "checkpoints" / name, run=out / "runs" / name, live=out / "live")


def run(tiny_data, out, schedule="static", seed=0, **over):
    paths = run_paths(tiny_data, out, schedule, seed)
    summary = train(tiny_config(**over), schedule, seed, paths, progress=False)
    return summary, paths


def without_timing(d):
    return {k: v for k, v in d.items() if k not in TIMING}


def log_without_timing(paths):
    return [without_timing(r) for r in files.read_epochs(paths.run)]


def weights(path):
    return checkpoint.load(path)["state_dict"]


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_outputs_and_metrics_keys(tiny_data, tmp_path):
    summary, paths = run(tiny_data, tmp_path)
    on_disk = json.loads((paths.run / "metrics.json").read_text())
    for key in ("test_acc", "best_test_acc", "epochs", "lr_reductions", "stop_reason", "train_seconds",
                "images_per_second"):
        assert key in on_disk
    assert 0 <= on_disk["test_acc"] <= 100 and on_disk["epochs"] == 3 and on_disk["stop_reason"] == "max_epochs"
    assert (on_disk["schedule"], on_disk["seed"]) == ("static", 0)
    rows = files.read_epochs(paths.run)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert list(rows[0]) == list(files.EPOCH_COLUMNS)
    # DVCLive's layout: one `step<TAB>value` file per column, a line per epoch, no timestamps.
    tsv = (paths.run / "plots" / "metrics" / "test_acc.tsv").read_text().splitlines()
    assert tsv[0] == "step\ttest_acc" and [line.split("\t")[0] for line in tsv[1:]] == ["1", "2", "3"]
    assert on_disk == {**summary, "step": 3}  # the summary, through DVCLive (step: the last epoch)
    # The summary's numbers are the log's: the last epoch's, and the best epoch's.
    assert on_disk["test_acc"] == pytest.approx(rows[-1]["test_acc"], abs=1e-4)
    assert on_disk["best_test_acc"] == pytest.approx(max(r["test_acc"] for r in rows), abs=1e-4)
    assert on_disk["train_loss"] == pytest.approx(rows[-1]["train_loss"], abs=1e-4)
    assert sorted(p.name for p in paths.run.iterdir()) == ["metrics.json", "plots", "predictions.csv"]
    predictions = (paths.run / "predictions.csv").read_text().splitlines()
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
    # Byte for byte, so that DVC caches identical models once; DVCLive's files too, but for wall times.
    assert pa.model.read_bytes() == pb.model.read_bytes()
    for tsv in (pa.run / "plots" / "metrics").glob("*.tsv"):
        if tsv.name != "seconds.tsv":
            assert tsv.read_bytes() == (pb.run / "plots" / "metrics" / tsv.name).read_bytes(), tsv.name
    assert (pa.run / "predictions.csv").read_bytes() == (pb.run / "predictions.csv").read_bytes()


def test_interrupted_run_resumes_to_the_same_result(tiny_data, tmp_path, monkeypatch):
    over = dict(epochs=4, augment=True, dynamic={"window": 2, "slope": 50.0})
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
    assert not paths.model.exists() and not paths.run.exists()

    monkeypatch.setattr(engine, "train_one_epoch", real)
    resumed, pr = run(tiny_data, tmp_path / "cut", "dynamic", **over)
    assert whole["lr_reductions"] >= 1  # the schedule's state crossed the checkpoint too
    assert without_timing(resumed) == without_timing(whole)
    assert log_without_timing(pr) == log_without_timing(pw)
    assert same_weights(weights(pr.model), weights(pw.model))
    assert not paths.checkpoint.exists()  # a finished run keeps no checkpoint
    # DVCLive's files hold each epoch once: the two epochs before the interruption were not logged twice.
    for tsv in (pr.run / "plots" / "metrics").glob("*.tsv"):
        assert [line.split("\t")[0] for line in tsv.read_text().splitlines()[1:]] == ["1", "2", "3", "4"], tsv.name


def interrupt_after(monkeypatch, epochs):
    """Make train_one_epoch raise KeyboardInterrupt when epoch `epochs + 1` starts."""
    real = engine.train_one_epoch
    calls = {"n": 0}

    def dies(*args, **kw):
        calls["n"] += 1
        if calls["n"] == epochs + 1:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(engine, "train_one_epoch", dies)
    return lambda: monkeypatch.setattr(engine, "train_one_epoch", real)


@pytest.mark.parametrize("change, named", [
    ({"lr": 0.02}, "other params or data"),
    ({"engine": {"eval_batch_size": 16}}, "another arithmetic (eval_batch_size: 16 then, 64 now)"),
    ({"engine": {"portable": False}}, "another arithmetic (cpu_kernels: native ("),
    ({"dynamic": {"window": 3}}, "other schedule params")])
def test_checkpoint_from_another_configuration_is_not_resumed(tiny_data, tmp_path, capsys, monkeypatch, change,
                                                              named):
    """Interrupted with one configuration, rerun with another: trains from the start, never a hybrid, and says
    what differs (the arithmetic named key by key, not "params, data or code")."""
    restore = interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_data, tmp_path / "x", "dynamic", epochs=4, **change)
    restore()
    assert checkpoint.load(run_paths(tiny_data, tmp_path / "x", "dynamic").checkpoint)["epoch"] == 2
    capsys.readouterr()
    fresh, _ = run(tiny_data, tmp_path / "fresh", "dynamic", epochs=4)
    again, _ = run(tiny_data, tmp_path / "x", "dynamic", epochs=4)
    out = capsys.readouterr().out
    assert f"last.pt: made with {named}" in out, out
    assert "not resuming, training from the start" in out and "resuming from" not in out
    assert without_timing(again) == without_timing(fresh)


def cpu(world=1):
    return runtime.Runtime(torch.device("cpu"), bf16=False, channels_last=True, rank=0, world=world)


def digest(rt, **engine):
    cfg = tiny_config(engine=engine)
    return checkpoint.config_digest(cfg, runtime.computation(rt, cfg.engine), [])


def test_settings_that_change_the_arithmetic_change_the_digest():
    """compile (other kernels) and processes (BatchNorm per share of a batch) make another computation, so
    neither a checkpoint nor a comparison mixes them; bf16 on a CPU is not in effect, auto is cpu here."""
    plain = digest(cpu())
    assert digest(cpu(), compile="default") != plain
    assert digest(cpu(world=2), nproc=2) != plain
    assert digest(cpu(), bf16=False) == plain
    assert digest(cpu(), device="cpu") == plain


def test_a_schedules_knobs_are_its_runs_own_not_the_comparisons():
    """dynamic.window is part of a dynamic run's checkpoint fingerprint, and not of the digest every run of a
    comparison shares: the static runs made before the window changed still pair with the new dynamic ones."""
    plain, other = tiny_config(), tiny_config(dynamic={"window": 4})
    comp = runtime.computation(cpu(), plain.engine)
    assert checkpoint.config_digest(plain, comp, []) == checkpoint.config_digest(other, comp, [])
    knobs = [checkpoint.schedule_knobs(c, "dynamic") for c in (plain, other)]
    assert knobs[1]["window"] == 4 and checkpoint.schedule_knobs(plain, "static") == {}
    assert checkpoint.fingerprint("d", "dynamic", 0, knobs[0]) != checkpoint.fingerprint("d", "dynamic", 0, knobs[1])


def test_another_torch_or_thread_count_is_another_computation(monkeypatch):
    plain = digest(cpu())
    assert digest(cpu(), threads=2) != plain
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    assert digest(cpu()) != plain


def test_portable_and_native_arithmetic_are_other_computations(monkeypatch):
    """A native run's kernels are the host's (and so are part of its digest); a portable run's are the same on
    every host: its digest does not depend on the CPU."""
    plain = digest(cpu())
    native = digest(cpu(), portable=False)
    assert native != plain
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert digest(cpu(), portable=False) != native
    assert digest(cpu()) == plain


def test_the_thread_count_is_the_param_not_the_machine():
    """A 32-core node and a laptop compute with engine.threads threads, so their runs are one computation:
    the digest follows the param, and setup makes torch use exactly that many."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 3)  # what another machine's default would be
        assert digest(cpu()) == digest(cpu(), threads=1)
        rt = runtime.setup(tiny_config(engine={"threads": 2, "device": "cpu"}).engine)
        assert torch.get_num_threads() == 2 and "2 threads" in runtime.describe(rt)
    finally:
        torch.set_num_threads(threads)


def test_a_worker_unlike_the_sweep_refuses_before_training(monkeypatch):
    engine_cfg = tiny_config(engine={"device": "cpu"}).engine
    monkeypatch.setenv(runtime.EXPECT_TORCH, "0.0.0")
    with pytest.raises(UserError, match=r"torch .* the sweep's runs use 0\.0\.0"):
        runtime.setup(engine_cfg)
    monkeypatch.setenv(runtime.EXPECT_TORCH, torch.__version__)
    monkeypatch.setenv(runtime.EXPECT_DEVICE, "cuda")
    with pytest.raises(UserError, match="would train on cpu, the sweep's runs train on cuda"):
        runtime.setup(engine_cfg)
    monkeypatch.setenv(runtime.EXPECT_DEVICE, "cpu")
    assert runtime.setup(engine_cfg).device.type == "cpu"


def test_checkpoint_from_other_code_is_not_resumed(tiny_data, tmp_path, capsys, monkeypatch):
    code = tmp_path / "model.py"
    code.write_text("version = 1\n")
    monkeypatch.setattr(checkpoint, "loaded_project_files", lambda: [code])
    restore = interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_data, tmp_path / "x", epochs=4)
    restore()
    capsys.readouterr()
    code.write_text("version = 2\n")
    run(tiny_data, tmp_path / "x", epochs=4)
    out = capsys.readouterr().out
    assert "made with other project code; not resuming, training from the start" in out and "resuming from" not in out


def test_a_finished_run_keeps_no_checkpoint_and_a_rerun_starts_over(tiny_data, tmp_path, capsys):
    first, paths = run(tiny_data, tmp_path, epochs=4)
    assert not paths.work.exists()  # checkpoint and scratch log gone: nothing for DVC or git to see
    capsys.readouterr()
    second, _ = run(tiny_data, tmp_path, epochs=4)
    assert "resuming" not in capsys.readouterr().out
    assert without_timing(second) == without_timing(first)


CUDA = torch.cuda.is_available()


@pytest.mark.parametrize("change", [{"engine": {"eval_batch_size": 5}}, {"checkpoint_every": 2},
                                    pytest.param({"engine": {"device": "cpu"}}, marks=pytest.mark.skipif(
                                        CUDA, reason="auto is cuda here: other kernels, other numbers")),
                                    {"engine": {"resident": False}},
                                    {"engine": {"resident": False}, "augment": True, "augmentation": {"flip": True}}])
def test_settings_said_not_to_change_results_do_not(tiny_data, tmp_path, capsys, change):
    """params.yaml and docs/reference.md say eval_batch_size, checkpoint_every, resident (streaming batches from the
    memory-mapped cache instead of holding them on the device) and device auto-vs-cpu (on a CPU) change no
    result: the same accuracies, LR and stop, epoch by epoch; evaluation losses summed over other batch
    sizes agree to float rounding."""
    same = {k: v for k, v in change.items() if k != "engine"}  # augmentation: on both sides
    base, pb = run(tiny_data, tmp_path / "base", "dynamic", epochs=4, dynamic={"window": 2, "slope": 50.0}, **same)
    capsys.readouterr()
    other, po = run(tiny_data, tmp_path / "other", "dynamic", epochs=4, dynamic={"window": 2, "slope": 50.0}, **change)
    streamed = "data: streamed from the decoded-image cache (engine.resident)" in capsys.readouterr().out
    assert streamed == (change.get("engine", {}).get("resident") is False)
    assert base["lr_reductions"] == 1  # the schedule acted, on the evaluations being compared
    unlike = {"config": None, "computation": None}  # device auto vs cpu: recorded as asked, computed alike
    assert without_timing({**base, **unlike}) == without_timing({**other, **unlike})
    for a, b in zip(log_without_timing(pb), log_without_timing(po)):
        assert {k: v for k, v in a.items() if "loss" not in k} == {k: v for k, v in b.items() if "loss" not in k}
        # bf16 autocast on CUDA: an evaluation's sums over other batch sizes round at bf16's 8 bits
        assert [a[k] for k in a if "loss" in k] == pytest.approx([b[k] for k in b if "loss" in k],
                                                                 rel=1e-4 if CUDA else 1e-5)


class RunsCode:
    """Pickles as a call that creates a file: proof of code run on load."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "pickle"])
def test_damaged_checkpoint_is_a_clear_error(tiny_data, tmp_path, monkeypatch, damage):
    restore = interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_data, tmp_path, epochs=4)
    restore()
    paths = run_paths(tiny_data, tmp_path)
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
    assert paths.model.exists() and (paths.run / "predictions.csv").exists()
    assert json.loads((paths.run / "metrics.json").read_text())["stop_reason"] == "diverged"
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
    assert all(r["val_acc"] is None for r in files.read_epochs(paths.run))


@pytest.mark.parametrize("model", ["vgg16", "simple_v3", "lenet", "mlp"])
def test_every_model_trains(tiny_data, tmp_path, model):
    summary, paths = run(tiny_data, tmp_path, model=model, epochs=1, normalize=False)
    assert summary["model"] == model
    net, meta = checkpoint.load_model(paths.model)
    assert meta["classes"] == list(files.read_classes(tiny_data / "pathlist")) and meta["normalization"] is None
    assert net(torch.zeros(2, 3, 16, 16)).shape == (2, 11)


def test_saved_model_reproduces_the_predictions(tiny_data, tmp_path):
    _, paths = run(tiny_data, tmp_path)
    net, meta = checkpoint.load_model(paths.model)
    from thesislab.data.dataset import PathListDataset

    ds = PathListDataset(tiny_data / "pathlist", "test", tiny_data / "raw", 11, 16)
    x = torch.from_numpy(np.array(ds.decoded(tmp_path / "cache", progress=False))).float() / 255
    mean, std = (torch.tensor(meta["normalization"][k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    predicted = net((x - mean) / std).argmax(1).tolist()
    rows = (paths.run / "predictions.csv").read_text().splitlines()[1:]
    assert [meta["classes"].index(r.split(",")[1]) for r in rows] == predicted


def test_the_chapter_4_dataset_gives_what_the_fast_path_caches(tiny_data, tmp_path):
    from thesislab.data.dataset import PathListDataset

    ds = PathListDataset(tiny_data / "pathlist", "test", tiny_data / "raw", 11, 16)
    images, labels = ds.decoded(tmp_path / "cache", progress=False), ds.labels
    loader = torch.utils.data.DataLoader(ds, batch_size=10)
    x, y = next(iter(loader))
    assert x.shape == (10, 3, 16, 16) and x.dtype == torch.float32
    assert torch.equal(x, torch.from_numpy(np.array(images[:10])).float() / 255)
    assert y.tolist() == labels[:10].tolist() and len(ds) == 44


def test_a_class_too_small_to_split_is_refused_not_scored_as_zero(tmp_path):
    from conftest import make_image_folder

    from thesislab.data import layout

    root = make_image_folder(tmp_path / "raw", classes=("cat", "dog"), per_split=(1, 2))
    found = layout.scan(root)
    files.write_pathlists(found.classes, found.files, tmp_path / "pl")
    files.write_stats(tmp_path / "stats.json", {"mean": [0.5] * 3, "std": [0.2] * 3, "count": 2, "pixels": 128})
    paths = RunPaths(root=root, pathlist=tmp_path / "pl", stats=tmp_path / "stats.json", cache=tmp_path / "c",
                     model=tmp_path / "m.pt", weights=tmp_path / "w", work=tmp_path / "ck",
                     run=tmp_path / "run", live=tmp_path / "live")
    with pytest.raises(UserError, match=r"val_fraction: class 'cat' has 1 training image\(s\).*monitor: test"):
        train(tiny_config(image_size=8), "dynamic", 0, paths, progress=False)
    assert not paths.run.exists() and not paths.model.exists()
    summary = train(tiny_config(image_size=8, monitor="test", batch_size=2), "dynamic", 0, paths, progress=False)
    assert summary["val_acc"] is None  # no validation split: undefined, not 0%


def test_stratified_split_is_disjoint_per_class_and_fixed_by_the_seed():
    from thesislab.train.assemble import stratified_split

    labels = np.repeat(np.arange(3), [10, 20, 5])
    train_idx, val_idx = stratified_split(labels, 0.1, seed=4, classes=("a", "b", "c"))
    assert not set(train_idx) & set(val_idx) and sorted([*train_idx, *val_idx]) == list(range(35))
    assert np.bincount(labels[val_idx]).tolist() == [1, 2, 1]  # round(10%), at least one image a class
    again, _ = stratified_split(labels, 0.1, seed=4, classes=("a", "b", "c"))
    other, _ = stratified_split(labels, 0.1, seed=5, classes=("a", "b", "c"))
    assert np.array_equal(train_idx, again) and not np.array_equal(train_idx, other)


def test_a_last_batch_of_one_image_is_merged_not_a_crash(tiny_data, tmp_path):
    # 132 train images - 11 held out = 121 = 15 x 8 + 1: the thesis's VGG16 (BatchNorm at 1x1 from 16 px) used
    # to fail on that last image.
    summary, _ = run(tiny_data, tmp_path, model="vgg16", batch_size=8, epochs=1)
    assert summary["epochs"] == 1


def test_batch_size_one_with_batchnorm_is_one_line(tiny_data, tmp_path):
    with pytest.raises(UserError, match=r"batch_size: must be at least 2 for a model with BatchNorm"):
        run(tiny_data, tmp_path, batch_size=1)
    summary, _ = run(tiny_data, tmp_path, model="mlp", batch_size=1, epochs=1)  # no BatchNorm: fine
    assert summary["epochs"] == 1


@pytest.mark.parametrize("monitor", ["val", "test"])
def test_the_dynamic_schedule_sees_the_monitored_split(tiny_data, tmp_path, monkeypatch, monitor):
    from thesislab.train import schedules

    seen = []
    real = schedules.Dynamic.after_epoch

    def spy(self, epoch, acc):
        seen.append(acc)
        return real(self, epoch, acc)

    monkeypatch.setattr(schedules.Dynamic, "after_epoch", spy)
    _, paths = run(tiny_data, tmp_path, "dynamic", epochs=3, monitor=monitor)
    rows = files.read_epochs(paths.run)
    assert seen == pytest.approx([r[f"{monitor}_acc"] for r in rows], abs=1e-4)
    if monitor == "val":
        assert seen != pytest.approx([r["test_acc"] for r in rows], abs=1e-4)


def test_batches_are_normalised_with_the_stats_file(tiny_data):
    """A batch is exactly (pixels / 255 - mean) / std with the stats stage's numbers (the test split's first batch:
    unshuffled, so its images are known; training batches go through the same gather-and-normalise code)."""
    from thesislab.data.dataset import PathListDataset
    from thesislab.train import assemble

    cfg = tiny_config()
    rt = runtime.Runtime(torch.device("cpu"), bf16=False, channels_last=False)
    paths = run_paths(tiny_data, tiny_data / "unused")
    data = assemble.load_data(paths, image_size=16, normalize=True, monitor="test", val_fraction=0.1, seed=0,
                              device=rt.device, progress=False, say=lambda *a: None)
    stats = json.loads((tiny_data / "stats.json").read_text())
    x, y, _ = next(assemble.batches(data, data.test, 7, rt).epoch())
    ds = PathListDataset(tiny_data / "pathlist", "test", tiny_data / "raw", 11, 16)
    images, labels = ds.decoded(tiny_data / "unused" / "cache", progress=False), ds.labels
    raw = torch.from_numpy(np.array(images[:7])).double() / 255
    mean, std = (torch.tensor(stats[k], dtype=torch.float64).view(1, 3, 1, 1) for k in ("mean", "std"))
    assert torch.allclose(x.double(), (raw - mean) / std, atol=1e-5)
    assert y.tolist() == labels[:7].tolist()
    assert cfg.normalize


def test_predict_gives_the_pipelines_own_test_predictions(tiny_data, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    from thesislab.predict import predict

    _, paths = run(tiny_data, tmp_path)
    entries = files.read_pathlist(tiny_data / "pathlist", "test", tiny_data / "raw", 11)
    got = predict(paths.model, [p for p, _ in entries], top=3)
    expected = [predicted for _, predicted in files.read_predictions(paths.run / "predictions.csv")]
    assert [r["class"] for r in got] == expected
    assert all(r["top"][0][1] >= r["top"][1][1] >= r["top"][2][1] and r["top"][0][0] == r["class"] for r in got)
    cli = subprocess.run([sys.executable, "-m", "thesislab.predict", str(paths.model), entries[0][0]],
                         capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert cli.stdout.startswith(f"{entries[0][0]}\t{expected[0]} ")
    missing = subprocess.run([sys.executable, "-m", "thesislab.predict", str(paths.model), "nope.png"],
                             capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "nope.png" in missing.stderr


def tampered(paths, tmp_path, **meta):
    state = torch.load(paths.model, weights_only=True)
    state.update(meta)
    out = tmp_path / "tampered.pt"
    torch.save(state, out)
    return out


@pytest.mark.parametrize("meta, says", [
    ({"normalization": {"mean": [0.5] * 3, "std": [0.0, 0.2, 0.2]}}, "3 positive stds"),
    ({"normalization": {"mean": [0.5] * 3, "std": [float("nan")] * 3}}, "3 positive stds"),
    ({"image_size": -5}, "image_size -5 is not an integer in [8, 1024]"),
    ({"image_size": 5000}, "image_size 5000"),
    ({"classes": ["only"]}, "class names"),
    ({"dropout": 1.5}, "dropout 1.5"),
    ({"model": "nosuchnet"}, "cannot rebuild its net: 'nosuchnet' is neither"),
])
def test_a_model_file_whose_metadata_cannot_be_right_is_refused(tiny_data, tmp_path, meta, says):
    from thesislab.predict import predict

    _, paths = run(tiny_data, tmp_path)
    image = files.read_pathlist(tiny_data / "pathlist", "test", tiny_data / "raw", 11)[0][0]
    with pytest.raises(UserError) as err:
        predict(tampered(paths, tmp_path, **meta), [image])
    assert says in str(err.value) and "params.yaml" not in str(err.value)


def test_predict_refuses_bad_arguments_in_one_line(tiny_data, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    _, paths = run(tiny_data, tmp_path)
    image = files.read_pathlist(tiny_data / "pathlist", "test", tiny_data / "raw", 11)[0][0]
    cases = [
        ([str(paths.model), image, "--top", "0"], "error: --top: must be at least 1 (got 0)"),
        ([str(paths.model), image, "--top", "-1"], "error: --top: must be at least 1 (got -1)"),
        ([str(paths.model), str(tmp_path)], f"error: {tmp_path}: is a folder, not an image file"),
        ([str(paths.model.parent), image], f"error: {paths.model.parent}: is a folder; give a model file"),
    ]
    for args, says in cases:
        cli = subprocess.run([sys.executable, "-m", "thesislab.predict", *args], capture_output=True, text=True,
                             env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        assert cli.returncode == 2 and cli.stderr.count("\n") == 1 and cli.stderr.startswith(says), (args, cli.stderr)


# --- transfer learning: starting weights, a new head, a frozen backbone ---------------------------------------


def test_weights_from_another_run_load_with_a_new_head_for_another_class_count(tiny_data, tmp_path):
    """A model trained on the 11 signs starts a 2-class run: every backbone tensor equal, the head new."""
    from conftest import make_image_folder

    from thesislab.data import layout
    from thesislab.train import assemble

    _, first = run(tiny_data, tmp_path / "first", epochs=1)
    (tmp_path / "weights").mkdir()
    start = tmp_path / "weights" / "signs.pt"
    shutil.copy(first.model, start)
    root = make_image_folder(tmp_path / "two", classes=("cat", "dog"), per_split=(4, 2), size=16)
    found = layout.scan(root)
    files.write_pathlists(found.classes, found.files, tmp_path / "pl2")
    cfg = tiny_config(weights=str(start))
    model = assemble.build_model(cfg, 2, seed=0, weights_dir=tmp_path / "weights", say=lambda *a: None)
    trained = checkpoint.load(first.model)["state_dict"]
    mine = model.state_dict()
    head = "head.2."
    assert [k for k in mine if k.startswith(head)] == ["head.2.weight", "head.2.bias"]
    for key, value in mine.items():
        if key.startswith(head):
            assert value.shape[0] == 2 and trained[key].shape[0] == 11
        else:
            assert torch.equal(value, trained[key]), key


def test_a_frozen_backbone_does_not_change_across_an_epoch(tiny_data, tmp_path):
    _, first = run(tiny_data, tmp_path / "first", epochs=1)
    weights = tmp_path / "again" / "weights"
    weights.mkdir(parents=True)
    shutil.copy(first.model, weights / "start.pt")
    _, frozen = run(tiny_data, tmp_path / "again", epochs=2, weights=str(weights / "start.pt"), freeze="backbone",
                    lr=0.1)
    before, after = checkpoint.load(first.model)["state_dict"], checkpoint.load(frozen.model)["state_dict"]
    params = dict(checkpoint.load_model(frozen.model)[0].named_parameters())
    assert set(k for k in params if not k.startswith("head.2.")) and "head.2.weight" in params
    for key in params:
        if key.startswith("head.2."):
            assert not torch.equal(before[key], after[key]), key  # the head trained
        else:
            assert torch.equal(before[key], after[key]), key  # every other parameter stayed


def wrong_conv():
    from thesislab.train import models

    state = models.build("signnet", 11, 16, 0.5).state_dict()
    return {**state, "features.0.weight": torch.zeros(16, 3, 5, 5)}


@pytest.mark.parametrize("make, message", [
    (lambda d: None, r"weights: .*missing.pt: no such file"),
    (lambda d: (d / "missing.pt").write_bytes(b"not a zip"), r"missing.pt: not a state_dict torch can load safely"),
    (lambda d: torch.save([1, 2], d / "missing.pt"), r"missing.pt: not a state_dict \(a mapping"),
    (lambda d: torch.save({"features.0.weight": torch.zeros(3)}, d / "missing.pt"),
     r"missing.pt does not fit this model: it lacks 'features.1.weight'"),
    (lambda d: torch.save({**wrong_conv(), "extra.bias": torch.zeros(1)}, d / "missing.pt"),
     r"missing.pt does not fit this model: it has 'extra.bias', which the model lacks"),
    (lambda d: torch.save(wrong_conv(), d / "missing.pt"),
     r"missing.pt does not fit this model: 'features.0.weight' is \(16, 3, 5, 5\) there, \(16, 3, 3, 3\) here"),
])
def test_bad_weights_files_are_one_line_naming_the_file_and_key(tmp_path, make, message):
    from thesislab.train import assemble

    make(tmp_path)
    with pytest.raises(UserError, match=message):
        assemble.build_model(tiny_config(weights=str(tmp_path / "missing.pt")), 11, 0, tmp_path, lambda *a: None)


def test_weights_outside_the_weights_folder_and_freeze_alone_are_refused(tmp_path):
    from thesislab.train import assemble

    with pytest.raises(UserError, match=r"weights: /etc/passwd.pth is outside .*where DVC watches weights"):
        assemble.build_model(tiny_config(weights="/etc/passwd.pth"), 11, 0, tmp_path, lambda *a: None)
    with pytest.raises(UserError, match=r"^params.yaml: freeze: backbone needs weights"):
        tiny_config(freeze="backbone")


def test_named_weights_out_of_reach_are_one_line(monkeypatch):
    import urllib.error

    from thesislab.train import transfer

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(UserError, match=r"weights: IMAGENET1K_V1 for resnet18 must be downloaded from https://.*"
                                        r"which this machine cannot reach"):
        transfer.named_weights("resnet18", "IMAGENET1K_V1")
    with pytest.raises(UserError, match=r"resnet18 has no weights named 'IMAGENET9K' \(it has: IMAGENET1K_V1, DEFAULT"):
        transfer.named_weights("resnet18", "IMAGENET9K")
    with pytest.raises(UserError, match=r"only torchvision models have; signnet is this project's net"):
        transfer.named_weights("signnet", "DEFAULT")


def test_a_torchvision_model_trains_by_name(tiny_data, tmp_path):
    summary, paths = run(tiny_data, tmp_path, model="resnet18", epochs=1)
    net, meta = checkpoint.load_model(paths.model)
    assert summary["model"] == "resnet18" and net(torch.zeros(2, 3, 16, 16)).shape == (2, 11)


def test_one_seed_gives_both_schedules_the_same_run_until_the_first_lr_cut(tiny_data, tmp_path):
    """The paired design: same initial weights, validation split, batches and dropout for every schedule."""
    over = dict(epochs=4, dynamic={"window": 2, "slope": 50.0})  # the dynamic rule cuts after epoch 2
    _, static = run(tiny_data, tmp_path / "s", "static", seed=5, **over)
    _, dynamic = run(tiny_data, tmp_path / "d", "dynamic", seed=5, **over)
    _, other_seed = run(tiny_data, tmp_path / "o", "static", seed=6, **over)
    a, b, c = (log_without_timing(p) for p in (static, dynamic, other_seed))
    assert a[:2] == b[:2]  # the cut changes the LR of epoch 3 on
    assert a[2]["lr"] == 0.01 and b[2]["lr"] == pytest.approx(0.001) and a[2] != b[2]
    assert a[0] != c[0]


def test_a_tiny_memory_budget_streams_and_says_why(tiny_data, tmp_path, capsys, monkeypatch):
    from thesislab.train import assemble

    monkeypatch.setattr(assemble, "CPU_RESIDENT_CAP", 1000)  # bytes: the tiny signs (11 x 16 x 768) do not fit
    cpu = {"device": "cpu"}  # the CPU's budget (a GPU's is its free memory)
    streamed, ps = run(tiny_data, tmp_path / "s", "dynamic", epochs=3, augment=True, engine=cpu)
    out = capsys.readouterr().out
    assert "data: streamed from the decoded-image cache (" in out and "budget 0 MiB" in out
    monkeypatch.undo()
    resident, pr = run(tiny_data, tmp_path / "r", "dynamic", epochs=3, augment=True, engine=cpu)
    assert "data: resident on cpu (" in capsys.readouterr().out
    assert without_timing({**streamed, "config": 0}) == without_timing({**resident, "config": 0})
    assert log_without_timing(ps) == log_without_timing(pr)


def test_freezing_a_model_without_a_linear_head_is_one_line_not_an_empty_optimizer():
    from thesislab.train import models, transfer

    squeezenet = models.build("squeezenet1_1", 3, 64, 0.5)  # its classifier is a 1x1 convolution
    with pytest.raises(UserError, match=r"^freeze: backbone: this model has no Linear classifier head"):
        transfer.freeze_backbone(squeezenet)
    net = models.build("signnet", 3, 32, 0.5)
    transfer.freeze_backbone(net)
    assert [n for n, p in net.named_parameters() if p.requires_grad] == ["head.2.weight", "head.2.bias"]


def test_an_edited_image_changes_what_a_checkpoint_must_match(tiny_data, tmp_path):
    """The path lists and stats can stay the same when one test image changes; the manifest (its md5) does not,
    so a checkpoint made before the edit is not resumed after it."""
    from thesislab.data import layout
    from thesislab.data.download import write_manifest
    from thesislab.train import assemble

    root = tmp_path / "raw"
    shutil.copytree(tiny_data / "raw", root)
    write_manifest(root, layout.scan(root), progress=False)
    paths = dataclasses.replace(run_paths(tiny_data, tmp_path), root=root)
    cfg = tiny_config()

    def digest_now():
        return checkpoint.config_digest(cfg, {}, assemble.data_files(paths))

    before = digest_now()
    image = next((root / "test").rglob("*.png"))
    image.write_bytes(image.read_bytes()[:-1] + b"\x00")  # same name, same size, other bytes
    write_manifest(root, layout.scan(root), progress=False)
    assert digest_now() != before


def test_every_run_folder_holds_the_same_files_whatever_the_monitor(tiny_data, tmp_path):
    """`dvc exp apply` leaves in place files the applied experiment lacks: a monitor: test run folder with no
    val_acc.tsv, applied over a monitor: val one, kept the stray file and DVC retrained the run."""
    def listing(paths):
        return sorted(str(p.relative_to(paths.run)) for p in paths.run.rglob("*") if p.is_file())

    _, val = run(tiny_data, tmp_path / "val", epochs=2, monitor="val")
    _, test = run(tiny_data, tmp_path / "test", epochs=2, monitor="test")
    assert listing(val) == listing(test)
    assert (test.run / files.EPOCHS / "val_acc.tsv").read_text() == "step\tval_acc\n"
    assert all(r["val_acc"] is None for r in files.read_epochs(test.run))


def test_evaluation_batches_hold_a_fixed_budget_of_pixels():
    """Evaluation memory must not grow with image_size: 1024 images at 32 px, a quarter per doubling."""
    from thesislab.train.assemble import eval_batch_size

    def at(size, configured=1024):
        return eval_batch_size(tiny_config(image_size=size, engine={"eval_batch_size": configured}))

    assert (at(32), at(64), at(128), at(16)) == (1024, 256, 64, 1024)
    assert at(32, configured=100) == 100 and at(1024) == 1


def test_a_full_disk_while_writing_the_run_folder_keeps_the_old_model_and_folder(tiny_data, tmp_path, monkeypatch):
    """The model and the run's folder are replaced together: a disk that fills up while the folder is copied
    leaves the previous run's model beside the previous run's folder, and says so in one line."""
    import errno

    first, paths = run(tiny_data, tmp_path, epochs=2)
    model, folder = paths.model.read_bytes(), {p: p.read_bytes() for p in paths.run.rglob("*") if p.is_file()}
    real = shutil.copy2

    def disk_full(src, dst, **kw):
        if str(src).endswith(".tsv"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst, **kw)

    monkeypatch.setattr(shutil, "copy2", disk_full)
    with pytest.raises(UserError, match=r"^no space left on .*runs \(writing static-0\); nothing was half-written$"):
        run(tiny_data, tmp_path, epochs=3)
    assert paths.model.read_bytes() == model
    assert {p: p.read_bytes() for p in paths.run.rglob("*") if p.is_file()} == folder
    assert sorted(p.name for p in paths.model.parent.iterdir()) == [paths.model.name]  # no temporary left


def test_a_run_already_training_elsewhere_is_refused(tiny_data, tmp_path):
    """Two processes must never write one run's checkpoint, model and folder (a sweep's retry while the lost task
    still runs): the working folder's lock says who trains it."""
    import fcntl

    paths = run_paths(tiny_data, tmp_path)
    paths.work.mkdir(parents=True)
    with open(paths.work / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(UserError, match=r"train@static-0 is already training in another process"):
            train(tiny_config(epochs=1), "static", 0, paths, progress=False)
    assert not paths.model.exists() and not paths.run.exists()
