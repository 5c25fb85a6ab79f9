"""Global per-channel mean and std of a split, over every pixel, streamed.

Not the mean of per-image stds (the widely copied 0.2023/0.1994/0.2010 for CIFAR-10 is that mistake).
Each image adds its per-channel pixel sums and sums of squares as exact integers, so memory does not grow
with the number of images and the result does not depend on the order or on how the work is split; the
division happens once, in float64. Workers decode images in parallel.
"""

import numpy as np

from thesislab.data.images import load_rgb
from thesislab.parallel import chunked, map_chunks

CHUNK = 512  # images a worker decodes per task: large enough to hide the hand-off, small for a smooth bar


def _partial_sums(paths, size):
    s1 = np.zeros(3, dtype=np.int64)
    s2 = np.zeros(3, dtype=np.int64)
    pixels = 0
    for path in paths:
        px = load_rgb(path, size).reshape(-1, 3)
        s1 += px.sum(axis=0, dtype=np.int64)
        wide = px.astype(np.int32)  # 255**2 fits; the sum over an image fits int64 by far
        s2 += np.einsum("ij,ij->j", wide, wide, dtype=np.int64)
        pixels += px.shape[0]
    return s1, s2, pixels


def channel_stats(paths, size=None, workers=None, progress=True) -> dict:
    """{"mean": [r, g, b], "std": [r, g, b], "count": images, "pixels": pixels per channel}, in [0, 1] units.

    `size` resizes each image first, so the stats describe the pixels the model is fed.
    """
    paths = list(paths)
    s1 = np.zeros(3, dtype=np.int64)
    s2 = np.zeros(3, dtype=np.int64)
    pixels = 0
    for a, b, n in map_chunks(_partial_sums, chunked(paths, CHUNK), size, desc="stats", progress=progress,
                              workers=workers):
        s1, s2, pixels = s1 + a, s2 + b, pixels + n
    return finish(s1, s2, pixels, len(paths))


def finish(s1, s2, pixels, count):
    # The sums are exact integers, so E[x^2] - E[x]^2 in float64 loses nothing to accumulated rounding.
    mean = np.array([int(v) for v in s1], dtype=np.float64) / pixels
    sq = np.array([int(v) for v in s2], dtype=np.float64) / pixels
    var = np.maximum(sq - mean**2, 0.0)
    return {
        "mean": [round(float(m) / 255.0, 8) for m in mean],
        "std": [round(float(s) / 255.0, 8) for s in np.sqrt(var)],
        "count": count,
        "pixels": pixels,
    }
