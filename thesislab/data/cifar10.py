"""CIFAR-10: torchvision's download, exported to the <split>/<class>/<index>.png layout.

The archive's batches are Python pickles. They are read with an unpickler that can build only dicts,
lists, bytes and numpy arrays, so a tampered archive cannot run code. `source` may name a local
cifar-10-python.tar.gz or another URL for it (no network here: tests make a tiny one).
"""

import io as _io
import pickle
import re
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from thesislab.data import archives
from thesislab.errors import UserError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_ .-]{0,63}")  # class names become folder names


def fetch(source, work_dir) -> Path:
    """Return a local path to the archive: `source` itself, or a download of it (or of the official URL)."""
    if source and not str(source).startswith(("http://", "https://")):
        path = Path(source)
        if not path.is_file():
            raise UserError(f"source: {path}: no such file (expected cifar-10-python.tar.gz)")
        return path
    from torchvision.datasets.utils import download_url  # imports torch: only when downloading

    url = source or URL
    try:
        download_url(url, str(work_dir), filename="cifar-10-python.tar.gz", md5=None if source else MD5)
    except Exception as err:  # urllib, ssl and torchvision raise many types; all mean the same to a user
        raise UserError(
            f"cannot download {url} ({err.__class__.__name__}: {err}); offline, set source to a local "
            "cifar-10-python.tar.gz, or use dataset: folder on extracted images"
        ) from None
    return Path(work_dir) / "cifar-10-python.tar.gz"


def export(archive, out_dir, work_dir, progress=True):
    """Extract `archive` into work_dir and write every image as a PNG under out_dir."""
    archives.extract(archive, work_dir)
    batches = _find_batches(Path(work_dir), archive)
    names = [_text(n) for n in _load_pickle(batches / "batches.meta")["label_names"]]
    if len(names) < 2 or len(set(names)) != len(names) or not all(_SAFE_NAME.fullmatch(n) for n in names):
        raise UserError(f"{archive}: batches.meta has no usable label_names (distinct folder-safe names)")
    for split, files in (("train", TRAIN_BATCHES), ("test", TEST_BATCHES)):
        for name in names:
            (Path(out_dir) / split / name).mkdir(parents=True, exist_ok=True)
        index = 0
        for batch_name in files:
            data, labels = _read_batch(batches / batch_name, len(names))
            for img, label in tqdm(zip(data, labels), total=len(labels), desc=f"cifar10 {split}", unit="img",
                                   disable=None if progress else True):
                Image.fromarray(img).save(Path(out_dir) / split / names[label] / f"{index:05d}.png")
                index += 1
    return names


def _find_batches(root, archive):
    for meta in sorted(root.rglob("batches.meta")):
        return meta.parent
    raise UserError(f"{archive}: no batches.meta inside; not a CIFAR-10 python archive")


def _read_batch(path, num_classes):
    if not path.is_file():
        raise UserError(f"{path}: missing from the CIFAR-10 archive")
    batch = _load_pickle(path)
    try:
        data = np.asarray(batch.get("data"))
        labels = [int(v) for v in batch.get("labels", [])]
    except (TypeError, ValueError) as err:
        raise UserError(f"{path}: not a CIFAR-10 batch ({err})") from None
    if data.dtype != np.uint8:
        # Pixels must be bytes: a value like 300 or -1 would wrap around silently if simply cast.
        if data.dtype.kind not in "iu" or data.size and (data.min() < 0 or data.max() > 255):
            found = f" from {data.min()} to {data.max()}" if data.dtype.kind in "iuf" and data.size else ""
            raise UserError(f"{path}: pixel values must be integers in 0..255 (found {data.dtype} data{found})")
        data = data.astype(np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != len(labels):
        raise UserError(f"{path}: expected N x 3072 pixels and N labels, got {data.shape} and {len(labels)}")
    if labels and not (0 <= min(labels) and max(labels) < num_classes):
        raise UserError(f"{path}: labels outside 0..{num_classes - 1}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


class _SafeUnpickler(pickle.Unpickler):
    """Only what CIFAR batches contain: numpy arrays (plus builtin containers, which need no lookup)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def _load_pickle(path):
    try:
        raw = _SafeUnpickler(_io.BytesIO(Path(path).read_bytes()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise UserError(f"{path}: not a CIFAR-10 batch ({err})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: not a CIFAR-10 batch (no dict inside)")
    # Batches pickled by Python 2 have bytes keys; those pickled by Python 3 have str keys.
    return {_text(k): v for k, v in raw.items()}


def _text(v):
    return v.decode("latin1") if isinstance(v, bytes) else str(v)
