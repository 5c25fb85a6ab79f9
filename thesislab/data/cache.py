"""The decoded-image cache: every image of a path list decoded once, at image_size, into one uint8 `.npy` file
in (N, 3, H, W) order (the layout convolutions read), and read back memory-mapped.

The file is written chunk by chunk into a memory map of a temporary sibling and renamed into place when
complete, so building it never holds the split in memory, and a build that is killed, or meets a full disk,
leaves no file under the final name. It is keyed by the image size and every listed file's path, label, size
and mtime: another dataset, an edited image or another size gives another key. A file under the right name
with the wrong shape or a truncated body is not trusted: it is rebuilt. Nor is one whose bytes differ from
what was decoded: the build records the file's SHA-256 beside it (`<key>.npy.sha256`), every open checks it
(about 0.07 s per 100 MB here, BENCHMARKS.md), and a mismatch (pixels zeroed in place, a bit flipped on disk)
is decoded again.
"""

import contextlib
import errno
import fcntl
import hashlib
import os
from pathlib import Path

import numpy as np

from thesislab import io
from thesislab.data.images import load_rgb
from thesislab.parallel import chunked, map_chunks

KEEP = 6  # cache files kept: enough for train and test of a few datasets or sizes
CHUNK_PIXELS = 256 * 32 * 32 * 3  # bytes a worker decodes per task (256 CIFAR-sized images)


def decoded(entries, image_size, cache_dir, progress=True, say=print) -> np.ndarray:
    """The images of [(path, label)] as a read-only (N, 3, image_size, image_size) uint8 memory map."""
    cache_dir = Path(cache_dir)
    path = cache_dir / f"{key(entries, image_size)}.npy"
    shape = (len(entries), 3, image_size, image_size)
    with _locked(cache_dir):  # processes of one DDP run share the folder: one builds, the others then read
        images = _open(path, shape, say)
        if images is None:
            _build(path, [p for p, _ in entries], shape, progress)
            io.write_text(_digest_file(path), _digest(path) + "\n")
            images = np.load(path, mmap_mode="r")
            _prune(cache_dir, keep=KEEP)
        os.utime(path)  # most recently used: kept longest by _prune
    return images


@contextlib.contextmanager
def _locked(folder):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def key(entries, image_size) -> str:
    h = hashlib.sha256(f"layout=NCHW uint8\nsize={image_size}\n".encode())
    for path, label in entries:
        st = os.stat(path)
        h.update(f"{path}\t{label}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def _open(path, shape, say):
    if not path.is_file():
        return None
    try:
        images = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError):  # a truncated or foreign file cannot be mapped
        images = None
    if images is None or images.shape != shape or images.dtype != np.uint8:
        say(f"{path}: not the decoded images it should be (damaged or stale); decoding again")
        return None
    try:
        recorded = _digest_file(path).read_text().strip()
    except OSError:
        recorded = None
    if recorded != _digest(path):
        say(f"{path}: its bytes differ from what was decoded (SHA-256 mismatch or no record); decoding again")
        return None
    return images


def _digest_file(path) -> Path:
    return path.with_name(path.name + ".sha256")


def _digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _build(path, paths, shape, progress):
    n, size = shape[0], shape[-1]
    per_task = max(1, CHUNK_PIXELS // (3 * size * size))
    _remove_stale(path.parent)
    with io.atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        _reserve(tmp)
        start = 0
        for chunk in map_chunks(_decode, chunked(paths, per_task), size, desc="decoding images", progress=progress):
            out[start:start + len(chunk)] = chunk
            start += len(chunk)
        assert start == n
        out.flush()
        del out


def _reserve(path):
    """Allocate the whole file now: on a full disk that is an OSError here (one line, nothing left behind),
    where writing into a sparse memory map would kill the process with SIGBUS halfway."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as err:
        if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a filesystem without fallocate: write as it comes
            raise
    finally:
        os.close(fd)


def _decode(paths, size):
    return np.stack([load_rgb(p, size) for p in paths]).transpose(0, 3, 1, 2)


def _remove_stale(folder):
    """Temporary files of a build that was killed: never used, since they never got their final name."""
    for stale in folder.glob(".*.npy.*.tmp"):
        stale.unlink(missing_ok=True)


def _prune(folder, keep):
    arrays = sorted(folder.glob("*.npy"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in arrays[keep:]:
        old.unlink(missing_ok=True)
        _digest_file(old).unlink(missing_ok=True)
