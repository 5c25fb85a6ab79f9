"""Batches of normalised float images from a split of uint8 images, by two paths that give the same batches.

Resident (airbench's approach): the whole split sits on the training device as uint8 (CIFAR-10's 50,000
images are 150 MB), and each batch is gathered by index on the device. Streamed, for data larger than the
memory budget: the split stays in the memory-mapped cache, and a background thread gathers each batch on the
host (in pinned memory on CUDA) while the previous one trains, then copies it with non_blocking. Either way
the batch is then translated, flipped and normalised on the device, in one multiply-add.

Randomness for an epoch (order, shifts, flips) is drawn on the CPU from a generator seeded by (seed, epoch):
resuming at any epoch reproduces the same batches, on either path.
"""

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

PREFETCH = 2  # streamed batches gathered ahead of the one training


def epoch_seed(seed, epoch, purpose):
    """A 63-bit seed for one epoch and one use, independent of every other."""
    digest = hashlib.sha256(f"{seed}:{epoch}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass
class Split:
    """One split: `images` is a uint8 (M, 3, H, W) tensor on the training device (resident), or a memory-mapped
    array on the host (streamed), of which `rows` picks the split's N images in order (None: all M, in order).
    Resident images are one copy on the device, shared by the splits of every run of a pack (each run holds out
    its own validation rows)."""

    images: object
    labels: torch.Tensor  # (N,) int64, on the device
    rows: np.ndarray = None  # the row in `images` of each of the split's images

    def __post_init__(self):
        self._rows_on_device = None

    def __len__(self):
        return self.labels.shape[0]

    @property
    def resident(self):
        return isinstance(self.images, torch.Tensor)

    @property
    def device(self):
        return self.labels.device

    def gather(self, idx) -> torch.Tensor:
        """Resident: the uint8 images at these split positions (a tensor on the device), gathered there."""
        if self.rows is None:
            return self.images[idx]
        if self._rows_on_device is None:
            self._rows_on_device = torch.as_tensor(self.rows, device=self.device)
        return self.images[self._rows_on_device[idx]]

    def host_batch(self, positions) -> torch.Tensor:
        """Streamed: the uint8 images at these split positions, gathered from the memory map in file order
        (sequential reads) and put back in batch order; pinned for an asynchronous copy to a GPU."""
        rows = self.rows[positions] if self.rows is not None else positions
        order = np.argsort(rows, kind="stable")
        batch = np.empty((len(rows), *self.images.shape[1:]), dtype=np.uint8)
        batch[order] = self.images[rows[order]]
        batch = torch.from_numpy(batch)
        return batch.pin_memory() if self.device.type == "cuda" else batch


class Batches:
    """Iterate over a Split in batches of normalised float images.

    mean/std: per-channel, in [0, 1] units (None: only scale to [0, 1]). augment: (padding, flip) or None.
    With world > 1, each batch is the global batch's rank-th slice (DistributedDataParallel).
    """

    def __init__(self, split, batch_size, mean=None, std=None, augment=None, channels_last=False, rank=0, world=1):
        self.split, self.batch_size = split, batch_size
        self.rank, self.world = rank, world
        self.channels_last = channels_last
        self.padding, self.flip = augment if augment else (0, False)
        dev = split.device
        mean = torch.tensor(mean if mean is not None else [0.0] * 3, device=dev).view(1, 3, 1, 1)
        std = torch.tensor(std if std is not None else [1.0] * 3, device=dev).view(1, 3, 1, 1)
        # x / 255 normalised is one multiply-add: x * scale + shift.
        self.scale = 1.0 / (255.0 * std)
        self.shift = -mean / std

    def __len__(self):
        return len(self._bounds())

    def _bounds(self):
        """(start, end) of each step's slice of the epoch's order.

        A last batch too small to give every rank two images joins the batch before it: BatchNorm cannot
        train on one image (and a batch that small would be all noise anyway)."""
        n, size = len(self.split), self.batch_size
        starts = list(range(0, n, size))
        if len(starts) > 1 and n - starts[-1] < 2 * self.world:
            starts.pop()
        return [(a, b) for a, b in zip(starts, starts[1:] + [n])]

    def epoch(self, seed=None):
        """Yield (images, labels, global batch size); shuffled and augmented when a seed is given.

        With several ranks, each gets its slice of the global batch (a slice may be empty at the end of an
        evaluation split)."""
        n, dev = len(self.split), self.split.device
        shifts = flips = None
        if seed is None:
            order = torch.arange(n)
        else:
            g = torch.Generator().manual_seed(seed)
            order = torch.randperm(n, generator=g)
            if self.padding or self.flip:
                shifts = torch.randint(0, 2 * self.padding + 1, (n, 2), generator=g).to(dev, non_blocking=True)
            if self.flip:
                flips = (torch.rand(n, generator=g) < 0.5).to(dev, non_blocking=True)
        # The order goes to the device once, so that a resident epoch never waits on the host; streaming also
        # keeps the host's copy, to know which rows to read.
        order_dev = order.to(dev, non_blocking=True)
        steps = []
        for start, end in self._bounds():
            idx, host = order_dev[start:end], order[start:end]
            global_size = idx.shape[0]
            if self.world > 1:
                idx, host = idx.tensor_split(self.world)[self.rank], host.tensor_split(self.world)[self.rank]
            steps.append((idx, host, global_size))
        for (idx, _, global_size), images in zip(steps, self._uint8_batches(steps)):
            yield self._make(images, idx, shifts, flips), self.split.labels[idx], global_size

    def _uint8_batches(self, steps):
        """The uint8 images of each step, on the device: gathered there, or streamed in PREFETCH batches ahead."""
        if self.split.resident:
            for idx, _, _ in steps:
                yield self.split.gather(idx)
            return
        with ThreadPoolExecutor(1, thread_name_prefix="batches") as pool:
            pending = [pool.submit(self.split.host_batch, host.numpy()) for _, host, _ in steps[:PREFETCH]]
            for k in range(len(steps)):
                if k + PREFETCH < len(steps):
                    pending.append(pool.submit(self.split.host_batch, steps[k + PREFETCH][1].numpy()))
                yield pending[k].result().to(self.split.device, non_blocking=True)
                pending[k] = None

    def _make(self, x, idx, shifts, flips):
        if shifts is not None:
            x = self._crop_flip(x, shifts[idx], None if flips is None else flips[idx])
        x = x.float().mul_(self.scale).add_(self.shift)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _crop_flip(self, x, shift, flip):
        """Each image's own translation and flip, as one gather from the zero-padded batch."""
        b, c, h, w = x.shape
        dev = x.device
        padded = F.pad(x, [self.padding] * 4) if self.padding else x
        rows = shift[:, 0:1] + torch.arange(h, device=dev)  # (B, H)
        cols = torch.arange(w, device=dev).expand(b, w)
        if flip is not None:
            cols = torch.where(flip[:, None], cols.flip(1), cols)
        cols = shift[:, 1:2] + cols  # (B, W)
        return padded[
            torch.arange(b, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
            rows[:, None, :, None], cols[:, None, None, :]
        ]
