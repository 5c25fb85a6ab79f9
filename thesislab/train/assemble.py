"""Assembling one (schedule, seed) run: its data on the device, its model, optimizer and LR schedule, and the
state of an interrupted run to resume. Nothing here trains: loop.fit does.

The seed decides the initial weights, the validation split, and (through trainer.py) every epoch's batches
and dropout masks. It is the same for every schedule: runs with one seed differ only by their schedule (a
paired design), and their curves coincide until the first LR change.
"""

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from thesislab import files
from thesislab.data.dataset import PathListDataset
from thesislab.errors import UserError
from thesislab.train import checkpoint, models, schedules, transfer
from thesislab.train.batches import Batches, Split
from thesislab.train.trainer import Member

# Evaluation runs without gradients, but its activations grow with batch x pixels: at 128 px a batch of 1024
# images holds 1 GiB per feature map of 16 channels. Capped at 1024 images of 32x32 worth of pixels.
EVAL_BATCH_PIXELS = 1024 * 32 * 32
DIVERGED_LOSS_FACTOR = 100  # an epoch's mean loss this many times that of guessing means the weights blew up


@dataclass(frozen=True)
class RunPaths:
    root: Path  # dataset folder the path lists are relative to
    pathlist: Path  # folder of the path lists (files.py names what is inside)
    stats: Path  # stats.json
    cache: Path  # decoded-image cache folder
    model: Path  # the model file to write
    weights: Path  # the folder a `weights` file must lie in
    work: Path  # this run's working folder (its checkpoint and DVCLive's files), kept only while it is unfinished
    run: Path  # this run's output folder (files.py names what is inside)
    live: Path  # the live view: the files of the run that last finished an epoch (dvc exp show reads them)

    @property
    def checkpoint(self) -> Path:
        return files.checkpoint_file(self.work)

    @property
    def log(self) -> Path:
        return files.run_log_folder(self.work)


@dataclass
class Data:
    classes: tuple
    train: Split
    val: Split  # None when monitor is test
    test: Split
    normalization: dict  # {"mean", "std"} or None


@dataclass
class Images:
    """Both splits' decoded images, once: a uint8 tensor on the device each (resident) or the memory-mapped cache
    (streamed). Every run of a pack makes its splits from these (split_for): never a second copy of an image."""

    classes: tuple
    arrays: dict  # split -> (M, 3, H, W) uint8: a tensor on the device, or the memory map
    labels: dict  # split -> (M,) int labels (numpy)
    device: torch.device
    normalization: dict  # {"mean", "std"} or None


def load_images(paths, *, image_size, normalize, device, resident="auto", progress=True, say=print) -> Images:
    """The images of the path lists, from the memory-mapped cache of decoded images: copied to the device if they
    fit the memory budget (`resident`), else streamed batch by batch."""
    classes = files.read_classes(paths.pathlist)
    arrays, labels = {}, {}
    for split in files.SPLITS:
        ds = PathListDataset(paths.pathlist, split, paths.root, len(classes), image_size)
        arrays[split], labels[split] = ds.decoded(paths.cache, progress=progress, say=say), ds.labels
    if residence(resident, arrays["train"].nbytes + arrays["test"].nbytes, device, say):
        arrays = {split: to_device(a, device) for split, a in arrays.items()}
    return Images(classes, arrays, labels, device, files.read_normalization(paths.stats) if normalize else None)


def split_for(images: Images, *, monitor, val_fraction, seed) -> "Data":
    """One run's splits of the shared images: its seed holds out its validation rows (monitor: val)."""
    labels = images.labels
    train_rows, val_rows = np.arange(len(labels["train"])), None
    if monitor == "val":
        train_rows, val_rows = stratified_split(labels["train"], val_fraction, seed, images.classes)

    def split(name, rows):
        y = labels[name] if rows is None else labels[name][rows]
        return Split(images.arrays[name], torch.from_numpy(y).to(images.device), rows)

    return Data(classes=images.classes, train=split("train", train_rows),
                val=split("train", val_rows) if val_rows is not None else None, test=split("test", None),
                normalization=images.normalization)


def load_data(paths, *, image_size, normalize, monitor, val_fraction, seed, device, resident="auto",
              progress=True, say=print) -> Data:
    """One run's splits (load_images, then split_for)."""
    images = load_images(paths, image_size=image_size, normalize=normalize, device=device, resident=resident,
                         progress=progress, say=say)
    return split_for(images, monitor=monitor, val_fraction=val_fraction, seed=seed)


RESIDENT_SHARE = {"cuda": 0.5, "cpu": 0.25}  # of free GPU memory / of available RAM (MPS shares RAM: as cpu)
# On the CPU, streaming from the memory map (page cache) keeps the loop at the same speed (BENCHMARKS.md), so a
# resident copy buys little and costs RAM: at most this much.
CPU_RESIDENT_CAP = 2**30
COPY_ROWS = 4096  # images copied to the device at a time, so the host never holds a second whole copy


def residence(setting, nbytes, device, say=print) -> bool:
    """Whether the images go to the device (True) or are streamed from the cache: engine.resident, where
    `auto` keeps them resident when they fit RESIDENT_SHARE of the device's free memory."""
    if setting is not True and setting is not False:
        budget = memory_budget(device)
        setting = nbytes <= budget
        why = f"{_size(nbytes)} of images, budget {_size(budget)}: {_budget_text(device)}"
    else:
        why = "engine.resident"
    say(f"data: {'resident on ' + device.type if setting else 'streamed from the decoded-image cache'} ({why})")
    return setting


def memory_budget(device) -> int:
    if device.type == "cuda":
        return int(RESIDENT_SHARE["cuda"] * torch.cuda.mem_get_info(device)[0])
    return min(int(RESIDENT_SHARE["cpu"] * available_ram()), CPU_RESIDENT_CAP)


def available_ram() -> int:
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):  # not Linux: the machine's total, as the best guess there is
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _budget_text(device):
    if device.type == "cuda":
        return f"{RESIDENT_SHARE['cuda']:.0%} of free GPU memory"
    return f"{RESIDENT_SHARE['cpu']:.0%} of available RAM, at most {_size(CPU_RESIDENT_CAP)}"


def _size(n):
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def stratified_split(labels, fraction, seed, classes):
    """(train indices, val indices): `fraction` of each class (at least one image) held out, chosen by `seed`.

    A class with fewer than two training images cannot give one to each side: refused, never an empty split."""
    rng = np.random.default_rng([seed, 7])
    train_idx, val_idx = [], []
    for c in range(len(classes)):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) < 2:
            raise UserError(f"val_fraction: class '{classes[c]}' has {len(idx)} training image(s), too few to hold "
                            "one out for validation and train on the rest; add images or set monitor: test")
        k = min(max(1, round(fraction * len(idx))), len(idx) - 1)
        val_idx.append(idx[:k])
        train_idx.append(idx[k:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def to_device(images, device) -> torch.Tensor:
    """The memory-mapped images as one uint8 tensor on the device, copied a slice at a time."""
    x = torch.empty(images.shape, dtype=torch.uint8, device=device)
    for start in range(0, len(images), COPY_ROWS):
        x[start:start + COPY_ROWS] = torch.from_numpy(np.array(images[start:start + COPY_ROWS])).to(device)
    return x


def data_files(paths, weights=None) -> list:
    """The input files a run's numbers depend on: the path lists, the stats, the dataset's manifest (every
    image's bytes, by md5; absent only where the images were not made by the download stage), and the starting
    weights."""
    found = [files.pathlist_file(paths.pathlist, s) for s in files.SPLITS] + [paths.pathlist / files.CLASSES,
                                                                              paths.stats]
    if (paths.root / files.MANIFEST).is_file():
        found.append(paths.root / files.MANIFEST)
    if weights and transfer.is_file_name(weights):
        found.append(transfer.weights_file(weights, paths.weights))
    return found


def build_model(cfg, num_classes, seed, weights_dir, say=print):
    """The model with its initial weights: random from the seed, then any starting weights, then frozen."""
    torch.manual_seed(seed)
    model = models.build(cfg.model, num_classes, cfg.image_size, cfg.dropout)
    if cfg.weights:
        if transfer.is_file_name(cfg.weights):
            source = transfer.weights_file(cfg.weights, weights_dir)
            state = transfer.read_state_dict(source)
        else:
            source, state = cfg.weights, transfer.named_weights(cfg.model, cfg.weights)
        replaced = transfer.load_into(model, state, source)
        say(f"weights from {cfg.weights}" + (f"; new head for {num_classes} classes: {', '.join(replaced)}"
                                              if replaced else ""))
    if cfg.freeze == "backbone":
        transfer.freeze_backbone(model)
    return model


def build_member(cfg, schedule, seed, images, rt, paths, test_batches, say=print) -> Member:
    """One run of a pack: its splits of the shared images (its seed holds out its validation rows), its model with
    its initial weights, on the device, and its batches. The pack makes its optimizer and schedule."""
    data = split_for(images, monitor=cfg.monitor, val_fraction=cfg.val_fraction, seed=seed)
    model = build_model(cfg, len(data.classes), seed, paths.weights, say).to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    _check_batch_size(model, cfg.batch_size, rt.world)
    augment = (cfg.augmentation.crop_padding, cfg.augmentation.flip) if cfg.augment else None
    train_batches = batches(data, data.train, cfg.batch_size, rt, augment)
    eval_batches = {"test": test_batches}
    if data.val is not None:
        eval_batches["val"] = batches(data, data.val, eval_batch_size(cfg), rt)
    return Member(files.run_name(schedule, seed), schedule, seed, model, data, train_batches, eval_batches,
                  max_loss=DIVERGED_LOSS_FACTOR * math.log(len(data.classes)), paths=paths)


def test_batches(images, cfg, rt):
    """The test split's batches, shared by every run of a pack."""
    return batches(images, split_for(images, monitor="test", val_fraction=0, seed=0).test, eval_batch_size(cfg), rt)


def eval_batch_size(cfg) -> int:
    """engine.eval_batch_size, at most EVAL_BATCH_PIXELS of images: evaluation memory does not grow with
    image_size (1024 at 32 px, 64 at 128 px)."""
    return max(1, min(cfg.engine.eval_batch_size, EVAL_BATCH_PIXELS // cfg.image_size**2))


def batches(data, split, batch_size, rt, augment=None, shard=True):
    norm = data.normalization or {}
    return Batches(split, batch_size, norm.get("mean"), norm.get("std"), augment, rt.channels_last,
                   rt.rank if shard else 0, rt.world if shard else 1)


def _check_batch_size(model, batch_size, world):
    if models.has_batchnorm(model) and batch_size < 2 * world:
        raise UserError(f"params.yaml: batch_size: must be at least {2 * world} for a model with BatchNorm "
                        f"(two images per process; got {batch_size})")


def make_optimizer(model, cfg, rt):
    # Fused SGD on CUDA: one kernel for all parameters; foreach (a few kernels) elsewhere. Frozen parameters
    # are not the optimizer's (weight decay would still move them).
    kwargs = {"fused": True} if rt.cuda else {"foreach": True}
    trainable = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(trainable, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           **kwargs)


def wrap(model, cfg, rt):
    net = model
    if rt.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[rt.device.index] if rt.cuda else None)
    if cfg.engine.compile:
        net = torch.compile(net, mode=cfg.engine.compile)
    return net


def resume(member, path, fingerprint, say, origin=None) -> list:
    """The epoch rows of a checkpoint made by this same computation, with the run restored; else []."""
    state = checkpoint.resume_state(path, fingerprint, log=say, expected_origin=origin)
    if state is None:
        return []
    try:
        member.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        first = str(err).splitlines()[0]
        raise UserError(f"{path}: does not fit this model or optimizer ({first}); delete it") from None
    say(f"resuming from {path} after epoch {state['epoch']}")
    return list(state["log"])
