"""The Dataset over a path list (the thesis's chapter 4.3), and its fast path.

`PathListDataset[i]` decodes one image with Pillow, as the thesis's Dataset subclass did: fine for a
DataLoader, but it decodes every image again every epoch. `to_arrays()` decodes each image once into one
uint8 array (cached on disk, keyed by the path list, the image size and every file's size and mtime, so a
changed list or image invalidates it); training uses that array.
"""

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from thesislab import files, io
from thesislab.data.images import load_rgb
from thesislab.parallel import chunked, map_chunks


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

    def to_arrays(self, cache_dir=None, progress=True):
        """(images uint8 (N, H, W, 3), labels int64 (N,)), decoded once and cached in cache_dir."""
        cache = Path(cache_dir) / f"{self._cache_key()}.npy" if cache_dir else None
        if cache is not None and cache.is_file():
            images = np.load(cache, allow_pickle=False)
            if images.shape[0] == len(self.entries):
                os.utime(cache)  # most recently used: kept longest by _prune
                return images, self.labels
        paths = [p for p, _ in self.entries]
        parts = list(map_chunks(_decode, chunked(paths, 512), self.image_size, desc="decoding images",
                                progress=progress))
        images = np.concatenate(parts)
        if cache is not None:
            with io.atomic_path(cache) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, images, allow_pickle=False)
            _prune(cache.parent, keep=KEEP_CACHED)
        return images, self.labels

    def _cache_key(self):
        h = hashlib.sha256(f"size={self.image_size}\n".encode())
        for path, label in self.entries:
            st = os.stat(path)
            h.update(f"{path}\t{label}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:24]


KEEP_CACHED = 6  # arrays kept in the cache folder: enough for train+test of a few datasets or sizes


def _prune(folder, keep):
    arrays = sorted(folder.glob("*.npy"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in arrays[keep:]:
        old.unlink(missing_ok=True)


def _decode(paths, size):
    return np.stack([load_rgb(p, size) for p in paths])
