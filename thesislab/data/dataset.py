"""The Dataset over a path list (the thesis's chapter 4.3), and its fast path.

`PathListDataset[i]` decodes one image with Pillow, as the thesis's Dataset subclass did: fine for a
DataLoader, but it decodes every image again every epoch. `decoded()` is what training uses: every image
decoded once into the memory-mapped cache (thesislab.data.cache).
"""

import numpy as np
import torch

from thesislab import files
from thesislab.data import cache
from thesislab.data.images import load_rgb


class PathListDataset(torch.utils.data.Dataset):
    def __init__(self, pathlist_dir, split, root, num_classes, image_size, transform=None):
        self.entries = files.read_pathlist(pathlist_dir, split, root, num_classes)
        self.image_size = image_size
        self.transform = transform

    def __len__(self):
        return len(self.entries)

    def __getitem__(self, i):
        path, label = self.entries[i]
        pixels = load_rgb(path, self.image_size)
        if self.transform is not None:
            return self.transform(pixels), label
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div_(255), label  # Pillow arrays are read-only

    @property
    def labels(self):
        return np.array([label for _, label in self.entries], dtype=np.int64)

    def decoded(self, cache_dir, progress=True, say=print) -> np.ndarray:
        """Every image as a read-only (N, 3, H, W) uint8 memory map, decoded once and cached in cache_dir."""
        return cache.decoded(self.entries, self.image_size, cache_dir, progress=progress, say=say)
