"""The download stage's importers: CIFAR-10 from its python archive, your own folder or tar archive."""

import io
import os
import pickle
import tarfile

import numpy as np
import pytest
from conftest import make_image_folder, tiny_config
from PIL import Image

from thesislab.data import archives, cifar10, folder, layout
from thesislab.data.download import make_dataset
from thesislab.data.images import load_rgb
from thesislab.errors import UserError

NAMES = ["airplane", "automobile", "bird"]


def batch(n, seed, bytes_keys=False):
    rng = np.random.default_rng(seed)
    d = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": [int(v) for v in rng.integers(0, 3, n)]}
    return {k.encode() if bytes_keys else k: v for k, v in d.items()}


def add(tar, name, payload: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def tiny_cifar(path, bytes_keys=False, meta=None):
    """A CIFAR-10-format archive: 5 train batches of 4 images and a test batch of 3, 3 classes."""
    batches = {f"data_batch_{i}": batch(4, i, bytes_keys) for i in range(1, 6)}
    batches["test_batch"] = batch(3, 9, bytes_keys)
    meta = meta or {(b"label_names" if bytes_keys else "label_names"): [n.encode() if bytes_keys else n for n in NAMES]}
    with tarfile.open(path, "w:gz") as tar:
        add(tar, "cifar-10-batches-py/batches.meta", pickle.dumps(meta))
        for name, b in batches.items():
            add(tar, f"cifar-10-batches-py/{name}", pickle.dumps(b))
    return path, batches


@pytest.mark.parametrize("bytes_keys", [False, True])
def test_cifar10_export_writes_every_image_exactly(tmp_path, bytes_keys):
    archive, batches = tiny_cifar(tmp_path / "c.tar.gz", bytes_keys)
    names = cifar10.export(archive, tmp_path / "out", tmp_path / "work", progress=False)
    assert names == NAMES
    found = layout.scan(tmp_path / "out")
    assert len(found.files["train"]) == 20 and len(found.files["test"]) == 3
    first = batches["data_batch_1"][b"data" if bytes_keys else "data"][0].reshape(3, 32, 32).transpose(1, 2, 0)
    label = batches["data_batch_1"][b"labels" if bytes_keys else "labels"][0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "train" / NAMES[label] / "00000.png")), first)


def test_cifar10_from_source_through_the_download_stage(tmp_path):
    archive, _ = tiny_cifar(tmp_path / "c.tar.gz")
    cfg = tiny_config(dataset="cifar10", source=str(archive))
    found = make_dataset(cfg, tmp_path / "data" / "raw" / "cifar10", tmp_path / "samples.png", tmp_path,
                         progress=False)
    assert found.classes == tuple(sorted(NAMES))
    assert (tmp_path / "samples.png").is_file()
    assert sorted(p.name for p in (tmp_path / "data" / "raw").iterdir()) == ["cifar10"]  # no temp left


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_tampered_cifar_pickle_cannot_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    archive, _ = tiny_cifar(tmp_path / "c.tar.gz", meta={"label_names": NAMES, "x": Evil()})
    with pytest.raises(UserError, match=r"batches.meta: not a CIFAR-10 batch \(refused to load"):
        cifar10.export(archive, tmp_path / "out", tmp_path / "work", progress=False)
    assert not (tmp_path / "pwned.txt").exists()


def test_class_names_cannot_escape_the_output(tmp_path):
    archive, _ = tiny_cifar(tmp_path / "c.tar.gz", meta={"label_names": ["../../x", "b", "c"]})
    with pytest.raises(UserError, match="folder-safe names"):
        cifar10.export(archive, tmp_path / "out", tmp_path / "work", progress=False)


def test_cifar10_missing_source_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        cifar10.fetch(str(tmp_path / "nope.tar.gz"), tmp_path)


@pytest.mark.parametrize("pixels", [[300] * 3072, [-1] * 3072, [0.5] * 3072])
def test_cifar10_pixels_out_of_byte_range_are_one_line(tmp_path, pixels):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": [pixels], "labels": [0]}))
    with pytest.raises(UserError, match=r"data_batch_1: pixel values must be integers in 0..255"):
        cifar10._read_batch(path, 3)


def test_a_source_outside_the_sources_folder_is_refused(tmp_path):
    src = make_image_folder(tmp_path / "elsewhere")
    sources = tmp_path / "project" / "data" / "sources"
    sources.mkdir(parents=True)
    cfg = tiny_config(dataset="folder", source=str(src))
    with pytest.raises(UserError, match=r"^source: .*elsewhere is outside .*sources/, where DVC watches sources"):
        make_dataset(cfg, tmp_path / "raw" / "folder", tmp_path / "s.png", sources, progress=False)
    os.symlink(src, sources / "link")  # a link inside that leads outside is outside too
    with pytest.raises(UserError, match="is outside"):
        make_dataset(tiny_config(dataset="folder", source=str(sources / "link")), tmp_path / "raw" / "folder",
                     tmp_path / "s.png", sources, progress=False)


def test_a_relative_source_is_relative_to_the_project_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_image_folder(tmp_path / "data" / "sources" / "mine")
    cfg = tiny_config(dataset="folder", source="data/sources/mine")
    found = make_dataset(cfg, tmp_path / "data" / "raw" / "folder", tmp_path / "s.png", "data/sources", progress=False)
    assert found.classes == ("cat", "dog")
    with pytest.raises(UserError, match=r"source: data/sources/gone: no such file or folder .*dvc add"):
        make_dataset(tiny_config(dataset="folder", source="data/sources/gone"), tmp_path / "data" / "raw" / "folder",
                     tmp_path / "s.png", "data/sources", progress=False)


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    import errno

    src = make_image_folder(tmp_path / "src")
    raw = tmp_path / "data" / "raw"
    real_link = os.link
    calls = {"n": 0}

    def fills_up(a, b, *args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(b))
        return real_link(a, b, *args, **kw)

    monkeypatch.setattr(os, "link", fills_up)
    with pytest.raises(UserError, match=r"^no space left on .*data/raw \(writing folder\); nothing was half-written$"):
        make_dataset(tiny_config(dataset="folder", source=str(src)), raw / "folder", tmp_path / "s.png", tmp_path,
                     progress=False)
    assert list(raw.iterdir()) == []


def test_a_full_disk_while_saving_a_file_keeps_the_old_one(tmp_path, monkeypatch):
    import errno

    from thesislab import io as tio

    target = tmp_path / "metrics.json"
    tio.write_json(target, {"old": 1})

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(target), "write_bytes", full)
    with pytest.raises(UserError, match=r"^no space left on .* \(writing metrics.json\); nothing was half-written$"):
        tio.write_json(target, {"new": 2})
    monkeypatch.undo()
    assert target.read_text() == '{\n  "old": 1\n}\n' and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


@pytest.mark.parametrize("name", ["../escape.txt", "/tmp/absolute.txt", "a/../../up.txt"])
def test_archive_members_outside_the_folder_are_refused(tmp_path, name):
    archive = tmp_path / "bad.tar"
    with tarfile.open(archive, "w") as tar:
        add(tar, "fine.txt", b"ok")
        add(tar, name, b"evil")
    with pytest.raises(UserError, match="refused"):
        archives.extract(archive, tmp_path / "dest")
    # Refused before anything is written, inside or outside the destination.
    assert list((tmp_path / "dest").iterdir()) == []
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "up.txt").exists()


def test_archive_symlink_outside_is_refused(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("train/cat/x.png")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(UserError, match="refused"):
        archives.extract(archive, tmp_path / "dest")


@pytest.mark.parametrize("links", [True, False])
def test_folder_import_links_or_copies_every_image(tmp_path, monkeypatch, links):
    import errno

    src = make_image_folder(tmp_path / "src")
    if not links:  # as across filesystems
        monkeypatch.setattr(os, "link", lambda a, b: (_ for _ in ()).throw(OSError(errno.EXDEV, "cross-device")))
    found = folder.import_folder(src, tmp_path / "out", tmp_path / "work", progress=False)
    for split in ("train", "test"):
        for rel, _ in found.files[split]:
            a, b = src / rel, tmp_path / "out" / rel
            assert a.read_bytes() == b.read_bytes()
            assert os.path.samefile(a, b) == links


def test_folder_import_copies_every_image(tmp_path):
    src = make_image_folder(tmp_path / "src", classes=("b", "a"), per_split=(2, 1))
    found = folder.import_folder(src, tmp_path / "out", tmp_path / "work", progress=False)
    assert found.classes == ("a", "b")
    for rel, _ in found.files["train"] + found.files["test"]:
        assert (tmp_path / "out" / rel).read_bytes() == (src / rel).read_bytes()


def test_folder_import_from_a_tar_with_one_top_folder(tmp_path):
    src = make_image_folder(tmp_path / "mydata")
    archive = tmp_path / "mydata.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="mydata")
    found = folder.import_folder(archive, tmp_path / "out", tmp_path / "work", progress=False)
    assert len(found.files["train"]) == 6


@pytest.mark.parametrize("write, message", [
    (lambda p: p.write_text("not an image"), r"notes.png: not an image Pillow can read"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20), r"notes.png: (not an image|corrupt)"),
])
def test_folder_import_reports_unreadable_files_by_path(tmp_path, write, message):
    src = make_image_folder(tmp_path / "src")
    write(src / "train" / "cat" / "notes.png")
    with pytest.raises(UserError, match=message):
        folder.import_folder(src, tmp_path / "out", tmp_path / "work", progress=False)
    assert not (tmp_path / "out").exists()


def test_download_stage_leaves_nothing_on_failure(tmp_path):
    src = make_image_folder(tmp_path / "src")
    (src / "test" / "dog" / "0.png").write_text("broken")
    cfg = tiny_config(dataset="folder", source=str(src))
    raw = tmp_path / "data" / "raw"
    with pytest.raises(UserError, match="0.png"):
        make_dataset(cfg, raw / "folder", tmp_path / "samples.png", tmp_path, progress=False)
    assert list(raw.iterdir()) == []
    assert not (tmp_path / "samples.png").exists()


def test_mixed_modes_and_sizes_import_and_read(tmp_path):
    src = make_image_folder(tmp_path / "src", size=12)
    Image.new("L", (30, 20), 128).save(src / "train" / "cat" / "grey.png")
    Image.new("RGBA", (9, 9), (255, 0, 0, 0)).save(src / "train" / "dog" / "alpha.png")
    Image.fromarray(np.full((5, 5), 40000, dtype=np.uint16)).save(src / "test" / "cat" / "deep.png")
    Image.new("RGB", (50, 40), (1, 2, 3)).save(src / "test" / "dog" / "photo.jpg")
    found = folder.import_folder(src, tmp_path / "out", tmp_path / "work", progress=False)
    assert ("train/cat/grey.png", 0) in found.files["train"]
    for rel, _ in found.files["train"] + found.files["test"]:
        assert load_rgb(tmp_path / "out" / rel, 16).shape == (16, 16, 3)


def test_the_manifest_lists_every_image_with_its_size_and_md5(tmp_path):
    """What pathlist, stats and train depend on in dvc.yaml: it must change whenever any image does."""
    import hashlib

    src = make_image_folder(tmp_path / "src")
    cfg = tiny_config(dataset="folder", source=str(src))
    raw = tmp_path / "data" / "raw" / "folder"
    make_dataset(cfg, raw, tmp_path / "s.png", tmp_path, progress=False)
    images = sorted(p for p in raw.rglob("*") if p.is_file() and p.name != "manifest.tsv")
    expected = "".join(f"{p.relative_to(raw).as_posix()}\t{p.stat().st_size}\t{hashlib.md5(p.read_bytes()).hexdigest()}\n"
                       for p in images)
    assert len(images) == 10 and (raw / "manifest.tsv").read_text() == expected
