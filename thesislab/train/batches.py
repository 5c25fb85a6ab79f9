"""Batches from a uint8 image tensor that lives on the training device (airbench's approach).

The whole split sits on the device as uint8 (CIFAR-10's 50,000 images are 150 MB); each batch is gathered,
translated and flipped by index arithmetic, and normalised in one multiply-add, all on the device. The
same code runs on the CPU, where it keeps the loop at the model's own speed (no per-image PIL work).

Randomness for an epoch (order, shifts, flips) is drawn on the CPU from a generator seeded by
(seed, epoch), then moved to the device once: resuming at any epoch reproduces the same batches, and the
loop never waits on the host.
"""

import hashlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def epoch_seed(seed, epoch, purpose):
    """A 63-bit seed for one epoch and one use, independent of every other."""
    digest = hashlib.sha256(f"{seed}:{epoch}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass
class Split:
    images: torch.Tensor  # (N, 3, H, W) uint8, on the device
    labels: torch.Tensor  # (N,) int64, on the device

    def __len__(self):
        return self.labels.shape[0]


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
        dev = split.images.device
        mean = torch.tensor(mean if mean is not None else [0.0] * 3, device=dev).view(1, 3, 1, 1)
        std = torch.tensor(std if std is not None else [1.0] * 3, device=dev).view(1, 3, 1, 1)
        # x / 255 normalised is one multiply-add: x * scale + shift.
        self.scale = 1.0 / (255.0 * std)
        self.shift = -mean / std
        self.padded = F.pad(split.images, [self.padding] * 4) if self.padding else split.images

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
        n, dev = len(self.split), self.split.images.device
        shifts = flips = None
        if seed is None:
            order = torch.arange(n, device=dev)
        else:
            g = torch.Generator().manual_seed(seed)
            order = torch.randperm(n, generator=g).to(dev, non_blocking=True)
            if self.padding or self.flip:
                shifts = torch.randint(0, 2 * self.padding + 1, (n, 2), generator=g).to(dev, non_blocking=True)
            if self.flip:
                flips = (torch.rand(n, generator=g) < 0.5).to(dev, non_blocking=True)
        for start, end in self._bounds():
            idx = order[start:end]
            global_size = idx.shape[0]
            if self.world > 1:
                idx = idx.tensor_split(self.world)[self.rank]
            yield self._make(idx, shifts, flips), self.split.labels[idx], global_size

    def _make(self, idx, shifts, flips):
        if shifts is None:
            x = self.split.images[idx]
        else:
            x = self._crop_flip(idx, shifts[idx], None if flips is None else flips[idx])
        x = x.float().mul_(self.scale).add_(self.shift)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _crop_flip(self, idx, shift, flip):
        """Each image's own translation and flip, as one gather from the padded tensor."""
        _, c, h, w = self.split.images.shape
        dev = idx.device
        rows = shift[:, 0:1] + torch.arange(h, device=dev)  # (B, H)
        cols = torch.arange(w, device=dev).expand(idx.shape[0], w)
        if flip is not None:
            cols = torch.where(flip[:, None], cols.flip(1), cols)
        cols = shift[:, 1:2] + cols  # (B, W)
        chan = torch.arange(c, device=dev)
        return self.padded[
            idx[:, None, None, None], chan[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]
        ]
