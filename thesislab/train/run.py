"""One schedule's training run, start to finish: the train stage's one call.

Load the path lists into uint8 tensors on the device, build the model, resume from a matching
checkpoint if there is one, train epoch by epoch until a stop rule fires, then write the model, the
per-epoch log, the summary metrics and the test predictions.
"""

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from thesislab import io
from thesislab.data import pathlist
from thesislab.data.dataset import PathListDataset
from thesislab.errors import UserError
from thesislab.train import checkpoint, engine, models, report, runtime, schedules
from thesislab.train.batches import Batches, Split, epoch_seed

DIVERGED_LOSS_FACTOR = 100


@dataclass(frozen=True)
class RunPaths:
    root: Path  # dataset folder the path lists are relative to
    pathlist: Path  # folder with train.txt, test.txt, classes.txt
    stats: Path  # stats.json
    cache: Path  # decoded-image cache folder
    model: Path  # models/<schedule>.pt
    checkpoint: Path  # checkpoints/<schedule>/last.pt
    metrics: Path  # folder for metrics.json, epochs.csv, predictions.csv


@dataclass
class Data:
    classes: tuple
    train: Split
    val: Split  # None when monitor is test
    test: Split
    normalization: dict  # {"mean", "std"} or None


@dataclass
class Run:
    """What one schedule's training loop works with, built once by _prepare."""

    cfg: object
    name: str  # the schedule
    rt: runtime.Runtime
    data: Data
    model: torch.nn.Module  # the plain module: its state_dict is what is saved
    net: torch.nn.Module  # what is called: the model, possibly under DDP and torch.compile
    optimizer: torch.optim.Optimizer
    schedule: schedules.Schedule
    train_batches: Batches
    eval_batches: dict  # "val" (if monitored) and "test"
    paths: RunPaths
    fingerprint: str
    say: object


def train(cfg, schedule, paths: RunPaths, progress=True) -> dict:
    rt = runtime.setup(cfg.engine)
    try:
        return _train(cfg, schedule, paths, rt, progress and rt.main)
    finally:
        runtime.teardown(rt)


def _train(cfg, schedule_name, paths, rt, progress):
    say = print if rt.main else (lambda *a, **k: None)
    say(f"train@{schedule_name}: {cfg.model} on {runtime.describe(rt)}")
    run = _prepare(cfg, schedule_name, paths, rt, load_data(cfg, paths, rt, progress), say)
    rows = _resume(run)
    paths.checkpoint.parent.mkdir(parents=True, exist_ok=True)  # the stage's output, even if never filled
    stop_reason = _loop(run, rows, progress)
    summary = report.summarize(rows, stop_reason, schedule=schedule_name, model=cfg.model,
                               device=runtime.describe(rt))
    if rt.main:
        _write_outputs(run, rows, summary)
        _say_summary(schedule_name, summary, say)
    return summary


def _prepare(cfg, name, paths, rt, data, say) -> Run:
    torch.manual_seed(cfg.seed)
    model = models.build(cfg.model, len(data.classes), cfg.image_size, cfg.dropout).to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg, rt)
    augment = (cfg.augmentation.crop_padding, cfg.augmentation.flip) if cfg.augment else None
    train_batches = _batches(data.train, cfg.batch_size, data, rt, augment)
    eval_batches = {name: _batches(split, cfg.engine.eval_batch_size, data, rt)
                    for name, split in (("val", data.val), ("test", data.test)) if split is not None}
    data_files = [paths.pathlist / n for n in ("train.txt", "test.txt", "classes.txt")] + [paths.stats]
    return Run(cfg=cfg, name=name, rt=rt, data=data, model=model, net=_wrap(model, cfg, rt), optimizer=optimizer,
               schedule=schedules.make(name, optimizer, cfg, len(train_batches)), train_batches=train_batches,
               eval_batches=eval_batches, paths=paths, fingerprint=checkpoint.fingerprint(cfg, name, data_files),
               say=say)


def _batches(split, batch_size, data, rt, augment=None, shard=True):
    norm = data.normalization or {}
    return Batches(split, batch_size, norm.get("mean"), norm.get("std"), augment, rt.channels_last,
                   rt.rank if shard else 0, rt.world if shard else 1)


def load_data(cfg, paths, rt, progress) -> Data:
    classes = pathlist.read_classes(paths.pathlist / "classes.txt")
    splits = {}
    for split in ("train", "test"):
        ds = PathListDataset(paths.pathlist / f"{split}.txt", paths.root, len(classes), cfg.image_size)
        splits[split] = ds.to_arrays(paths.cache, progress=progress)
    images, labels = splits["train"]
    val = None
    if cfg.monitor == "val":
        train_idx, val_idx = stratified_split(labels, cfg.val_fraction, cfg.seed)
        val = _to_split(images[val_idx], labels[val_idx], rt.device)
        images, labels = images[train_idx], labels[train_idx]
    return Data(
        classes=classes,
        train=_to_split(images, labels, rt.device),
        val=val,
        test=_to_split(*splits["test"], rt.device),
        normalization=_read_stats(paths.stats) if cfg.normalize else None,
    )


def stratified_split(labels, fraction, seed):
    """(train indices, val indices): `fraction` of each class, at least one image, chosen by `seed`."""
    rng = np.random.default_rng([seed, 7])
    train_idx, val_idx = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = min(max(1, round(fraction * len(idx))), len(idx) - 1)
        val_idx.append(idx[:k])
        train_idx.append(idx[k:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def _to_split(images, labels, device):
    # (N, H, W, 3) -> (N, 3, H, W): the layout convolutions read; still uint8, a quarter of float32.
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()
    return Split(x.to(device), torch.from_numpy(labels).to(device))


def _read_stats(path):
    try:
        stats = json.loads(Path(path).read_text())
        mean, std = [float(v) for v in stats["mean"]], [float(v) for v in stats["std"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path}: unreadable stats ({err}); rerun the stats stage") from None
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise UserError(f"{path}: stats need 3 means and 3 positive stds")
    return {"mean": mean, "std": std}


def make_optimizer(model, cfg, rt):
    # Fused SGD on CUDA: one kernel for all parameters; foreach (a few kernels) elsewhere.
    kwargs = {"fused": True} if rt.cuda else {"foreach": True}
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           **kwargs)


def _wrap(model, cfg, rt):
    net = model
    if rt.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[rt.device.index] if rt.cuda else None)
    if cfg.engine.compile:
        net = torch.compile(net, mode=cfg.engine.compile)
    return net


def _resume(run):
    """The epoch rows of a matching checkpoint, with model, optimizer and schedule restored; else []."""
    path = run.paths.checkpoint
    state = checkpoint.resume_state(path, run.fingerprint, log=run.say)
    if state is None:
        return []
    try:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.schedule.load_state_dict(state["schedule"])
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        first = str(err).splitlines()[0]
        raise UserError(f"{path}: does not fit this model or optimizer ({first}); delete it") from None
    run.say(f"resuming from {path} after epoch {state['epoch']}")
    return list(state["log"])


def _loop(run, rows, progress):
    """Train epochs after the resumed ones until a stop rule fires; return its name."""
    cfg = run.cfg
    # A mean loss 100x that of guessing (ln classes) means the weights blew up: BatchNorm can keep such a
    # loss finite for many epochs, so waiting for NaN is not enough.
    max_loss = DIVERGED_LOSS_FACTOR * math.log(len(run.data.classes))
    for epoch in range(len(rows) + 1, cfg.epochs + 1):
        row, diverged = _epoch(run, epoch, max_loss, progress)
        rows.append(row)
        monitored = row["val_acc"] if cfg.monitor == "val" else row["test_acc"]
        stop = "diverged" if diverged else _stop_reason(cfg, row, run.schedule, epoch, monitored)
        if run.rt.main:
            report.write_log(run.paths.metrics / "epochs.csv", rows)
            run.say(_epoch_line(run.name, cfg.epochs, row))
            if cfg.checkpoint_every and epoch % cfg.checkpoint_every == 0 and not stop:
                _save_checkpoint(run, epoch, rows)
        if stop:
            return stop
    return "max_epochs"


def _epoch(run, epoch, max_loss, progress):
    """Train one epoch and evaluate: (the log row, whether training diverged)."""
    cfg, rt = run.cfg, run.rt
    t0 = time.perf_counter()
    lr = run.optimizer.param_groups[0]["lr"]
    torch.manual_seed(epoch_seed(cfg.seed, epoch, "dropout"))
    with tqdm(total=len(run.train_batches), desc=f"{run.name} epoch {epoch}/{cfg.epochs}", unit="step",
              leave=False, disable=None if progress else True) as bar:
        tr = engine.train_one_epoch(run.net, run.train_batches, run.optimizer, run.schedule,
                                    epoch_seed(cfg.seed, epoch, "batches"), rt, bar, max_loss)
    _sync_buffers(run.model, rt)
    nothing = {"loss": None, "acc": None}
    val = engine.evaluate(run.net, run.eval_batches["val"], rt) if "val" in run.eval_batches else nothing
    test = engine.evaluate(run.net, run.eval_batches["test"], rt)
    row = {
        "epoch": epoch, "lr": lr, "train_loss": tr["loss"], "train_acc": tr["acc"],
        "val_loss": val["loss"], "val_acc": val["acc"], "test_loss": test["loss"], "test_acc": test["acc"],
        "seconds": time.perf_counter() - t0, "train_seconds": tr["seconds"], "images": tr["images"],
    }
    return row, tr["diverged"]


def _save_checkpoint(run, epoch, rows):
    checkpoint.save(run.paths.checkpoint, {
        "fingerprint": run.fingerprint, "epoch": epoch, "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(), "schedule": run.schedule.state_dict(), "log": rows,
    })


def _stop_reason(cfg, row, schedule, epoch, monitored_acc):
    plateau = schedule.after_epoch(epoch, monitored_acc)  # every epoch: the schedule keeps its own window
    if row["train_loss"] < cfg.loss_stop:
        return "loss_stop"
    if plateau:
        return "plateau"
    return "max_epochs" if epoch >= cfg.epochs else None


def _sync_buffers(model, rt):
    """Under DDP, give every rank rank 0's BatchNorm statistics before evaluating."""
    if rt.world > 1:
        for buf in model.buffers():
            torch.distributed.broadcast(buf, 0)


def _epoch_line(name, epochs, r):
    val = f"  val {r['val_acc']:5.1f}%" if r["val_acc"] is not None else ""
    return (f"{name} epoch {int(r['epoch']):>3}/{epochs}  lr {r['lr']:.3g}  train loss {r['train_loss']:.4f} "
            f"acc {r['train_acc']:5.1f}%{val}  test {r['test_acc']:5.1f}%  {r['seconds']:.1f}s")


def _write_outputs(run, rows, summary):
    cfg, data = run.cfg, run.data
    # Predictions of the whole test split by this process alone (rank 0 under DDP).
    single = runtime.Runtime(run.rt.device, run.rt.bf16, run.rt.channels_last)
    predictions = engine.predict(run.model, _batches(data.test, cfg.engine.eval_batch_size, data, run.rt,
                                                     shard=False), single)
    checkpoint.save_model(run.paths.model, run.model, name=cfg.model, classes=data.classes,
                          image_size=cfg.image_size, dropout=cfg.dropout, normalization=data.normalization)
    metrics = run.paths.metrics
    report.write_predictions(metrics / "predictions.csv", data.test.labels.cpu().tolist(), predictions.tolist(),
                             data.classes)
    report.write_log(metrics / "epochs.csv", rows)
    io.write_json(metrics / "metrics.json", summary)


def _say_summary(name, s, say):
    say(f"train@{name}: stopped by {s['stop_reason']} after {s['epochs']} epochs: test {s['test_acc']}% "
        f"(best {s['best_test_acc']}%), {s['lr_reductions']} LR reductions, {s['train_seconds']}s, "
        f"{s['images_per_second']:,.0f} images/s")
    if s["stop_reason"] == "diverged":
        print(f"warning: train@{name} diverged (the loss became NaN, infinite or over {DIVERGED_LOSS_FACTOR}x "
              "that of guessing); metrics and plots are written, exit status 0; try a smaller lr",
              file=sys.stderr)
