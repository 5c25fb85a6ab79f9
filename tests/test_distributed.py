"""DistributedDataParallel on the CPU: two gloo processes under torchrun against one process.

Each rank takes its half of every global batch and the loss is scaled so that the averaged gradient is
the single-process one. Without BatchNorm or dropout the two runs do the same arithmetic up to the order
of float additions, so the weights agree to 1e-4 (relative); with BatchNorm each rank normalises its own
half-batch, so the runs differ and the check is that both train to a comparable accuracy.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT, TINY_PARAMS, default_params, merge
from PIL import Image

from thesislab import files
from thesislab.data import layout
from thesislab.data.stats import channel_stats
from thesislab.train import checkpoint

# Slow as a whole (its tests share one project, each step a DVC run): make test-slow and CI run it after make test.
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def colour_classes(root, per_split=(32, 8), size=16):
    """Three classes of noisy images, each tinted towards one channel: learnable in a few epochs."""
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "test"), per_split):
        for label, name in enumerate(("blue", "green", "red")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                px = rng.normal(110, 40, (size, size, 3))
                px[..., 2 - label] += 40
                Image.fromarray(np.clip(px, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp")
    colour_classes(d / "raw")
    found = layout.scan(d / "raw")
    files.write_pathlists(found.classes, found.files, d / "pathlist")
    files.write_stats(d / "stats.json", channel_stats([d / "raw" / p for p, _ in found.files["train"]], 16,
                                                      workers=1, progress=False))
    return d


def train_stage(data, workdir, **params):
    workdir.mkdir()
    raw = merge(default_params(), merge(TINY_PARAMS, params))
    (workdir / "params.yaml").write_text(yaml.safe_dump(raw))
    cmd = [sys.executable, "-m", "stages.train", "--schedule", "static", "--seed", "0", "--root", str(data / "raw"),
           "--pathlist", str(data / "pathlist"), "--stats", str(data / "stats.json"),
           "--cache", str(workdir / "cache"), "--model", str(workdir / "model.pt"), "--weights", str(workdir),
           "--checkpoints", str(workdir / "ckpt"), "--out", str(workdir / "m"),
           "--live", str(workdir / "live")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((workdir / "m" / "metrics.json").read_text()), checkpoint.load(workdir / "model.pt")["state_dict"]


def relative_difference(a, b):
    num = sum(float((a[k].double() - b[k].double()).norm() ** 2) for k in a)
    den = sum(float(a[k].double().norm() ** 2) for k in a)
    return (num / den) ** 0.5


def test_two_processes_match_one_without_batchnorm(data, tmp_path):
    common = dict(model="mlp", dropout=0.0, epochs=4, batch_size=16, lr=0.05)
    one, w1 = train_stage(data, tmp_path / "one", **common)
    two, w2 = train_stage(data, tmp_path / "two", engine={"nproc": 2}, **common)
    assert "2 processes" in two["device"] and "processes" not in one["device"]
    assert relative_difference(w1, w2) < 1e-4
    assert abs(one["test_acc"] - two["test_acc"]) <= 100 / 24 + 1e-9  # at most one test image of 24 flips
    assert one["train_loss"] == pytest.approx(two["train_loss"], rel=1e-3)


def first_epoch_loss(workdir):
    rows = files.read_epochs(workdir / "m")
    # Only rank 0 logs: every DVCLive file has each epoch once.
    assert all(len(tsv.read_text().splitlines()) == 1 + len(rows) for tsv in (workdir / "live").rglob("*.tsv"))
    return rows[0]["train_loss"]


def test_two_processes_train_a_batchnorm_model(data, tmp_path):
    common = dict(model="signnet", epochs=4, batch_size=16, dropout=0.0, lr=0.02)
    one, _ = train_stage(data, tmp_path / "one", **common)
    two, w2 = train_stage(data, tmp_path / "two", engine={"nproc": 2}, **common)
    assert all(torch.isfinite(v).all() for v in w2.values() if v.is_floating_point())
    assert two["train_loss"] < 0.5 * first_epoch_loss(tmp_path / "two")
    assert two["test_acc"] >= 90 and one["test_acc"] >= 90
