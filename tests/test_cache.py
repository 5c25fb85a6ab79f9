"""The decoded-image cache: built chunk by chunk into a memory map, never trusted when damaged or stale, and never
left half-written by a kill or a full disk."""

import errno
import os
import shutil
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from thesislab.data import cache
from thesislab.data.images import load_rgb
from thesislab.errors import UserError


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    entries = []
    for i in range(300):
        p = tmp_path / "img" / f"{i}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(p)
        entries.append((str(p), i % 3))
    return entries


def quiet(*args):
    pass


def test_the_cache_holds_every_image_decoded_channels_first(images, tmp_path):
    got = cache.decoded(images, 16, tmp_path / "c", progress=False, say=quiet)
    assert isinstance(got, np.memmap) and got.shape == (300, 3, 16, 16) and not got.flags.writeable
    for i in (0, 150, 299):
        assert np.array_equal(got[i], load_rgb(images[i][0], 16).transpose(2, 0, 1))


def traced_peak(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_building_memory_does_not_grow_with_the_number_of_images(images, tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "CHUNK_PIXELS", 30 * 3 * 32 * 32)  # 30 images a chunk
    cache.decoded(images, 8, tmp_path / "c", progress=False, say=quiet)  # imports and pool start-up, untraced
    small = traced_peak(lambda: cache.decoded(images, 32, tmp_path / "c", progress=False, say=quiet))
    large = traced_peak(lambda: cache.decoded(images * 4, 32, tmp_path / "c", progress=False, say=quiet))
    whole = 4 * 300 * 3 * 32 * 32  # 3.7 MB; concatenating the chunks, as before, held 3-4 times that
    assert large < 1.5 * small and large < whole / 4, (small, large, whole)


def test_a_second_read_uses_the_cache_and_an_edit_makes_a_new_one(images, tmp_path):
    first = cache.decoded(images, 16, tmp_path / "c", progress=False, say=quiet)
    assert cache.decoded(images, 16, tmp_path / "c", progress=False, say=quiet).filename == first.filename
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(images[0][0])
    os.utime(images[0][0], ns=(1, 1))  # another mtime, whatever the clock
    edited = cache.decoded(images, 16, tmp_path / "c", progress=False, say=quiet)
    assert edited.filename != first.filename and edited[0].max() == 0 and np.array_equal(edited[1:], first[1:])
    other_size = cache.decoded(images, 8, tmp_path / "c", progress=False, say=quiet)
    assert other_size.shape == (300, 3, 8, 8)


@pytest.mark.parametrize("damage", ["truncate", "other_shape", "garbage"])
def test_a_damaged_or_foreign_cache_file_is_rebuilt(images, tmp_path, damage):
    good = cache.decoded(images, 16, tmp_path / "c", progress=False, say=quiet)
    path, expected = good.filename, np.array(good)
    del good
    if damage == "truncate":
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    elif damage == "other_shape":
        np.save(path, np.zeros((3, 3, 16, 16), np.uint8))
    else:
        with open(path, "wb") as f:
            f.write(b"\x93NUMPY not really")
    said = []
    again = cache.decoded(images, 16, tmp_path / "c", progress=False, say=said.append)
    assert np.array_equal(again, expected)
    assert "not the decoded images it should be (damaged or stale); decoding again" in said[0]


def test_a_full_disk_leaves_no_cache_file(images, tmp_path, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(UserError, match=r"^no space left on .*c \(writing [0-9a-f]+\.npy\); nothing was half-written$"):
        cache.decoded(images, 16, tmp_path / "c", progress=False, say=quiet)
    assert os.listdir(tmp_path / "c") == [".lock"]


def test_a_build_killed_halfway_leaves_nothing_a_later_run_would_use(images, tmp_path, monkeypatch):
    real = cache._decode
    calls = {"n": 0}

    def dies(paths, size):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(paths, size)

    monkeypatch.setattr(cache, "CHUNK_PIXELS", 40 * 3 * 16 * 16)
    monkeypatch.setattr(cache, "_decode", dies)
    monkeypatch.setattr(cache, "map_chunks", lambda fn, chunks, *a, **k: (fn(c, *a) for c in chunks))
    with pytest.raises(KeyboardInterrupt):
        cache.decoded(images, 16, tmp_path / "c", progress=False, say=quiet)
    assert not list((tmp_path / "c").glob("*.npy"))
    # A kill -9 would leave the temporary file behind: the next build removes it and starts over.
    shutil.copy(images[0][0], tmp_path / "c" / ".abc.npy.x1y2.tmp")
    monkeypatch.setattr(cache, "_decode", real)
    built = cache.decoded(images, 16, tmp_path / "c", progress=False, say=quiet)
    assert built.shape == (300, 3, 16, 16)
    name = os.path.basename(built.filename)
    assert sorted(os.listdir(tmp_path / "c")) == [".lock", name, name + ".sha256"]


def test_pixels_changed_in_place_are_caught_by_the_recorded_digest(images, tmp_path):
    """Same shape, same dtype, zeroed pixels (or one flipped byte): the SHA-256 recorded at build time differs,
    so the images are decoded again rather than trained on."""
    good = cache.decoded(images, 16, tmp_path / "c", progress=False, say=quiet)
    path, expected = good.filename, np.array(good)
    del good
    data = np.load(path, mmap_mode="r+")
    data[:] = 0
    data.flush()
    del data
    said = []
    again = cache.decoded(images, 16, tmp_path / "c", progress=False, say=said.append)
    assert np.array_equal(again, expected) and again.max() > 0
    assert "its bytes differ from what was decoded" in said[0]
    del again
    with open(path, "r+b") as f:  # one bit, far into the pixels
        f.seek(os.path.getsize(path) - 7)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 1]))
    said.clear()
    assert np.array_equal(cache.decoded(images, 16, tmp_path / "c", progress=False, say=said.append), expected)
    assert said and "SHA-256 mismatch" in said[0]
    assert sorted(p.name for p in (tmp_path / "c").iterdir() if not p.name.startswith(".")) == \
        sorted([os.path.basename(path), os.path.basename(path) + ".sha256"])
