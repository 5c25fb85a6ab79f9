import os
import shutil

import pytest
from conftest import make_image_folder

from thesislab import files
from thesislab.data import layout
from thesislab.errors import UserError


def test_scan_orders_classes_and_files(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("zebra", "ant", "mole"), per_split=(3, 1))
    (root / "train" / "ant" / ".DS_Store").write_text("ignored")
    found = layout.scan(root)
    assert found.classes == ("ant", "mole", "zebra")
    assert found.files["train"][:3] == [("train/ant/0.png", 0), ("train/ant/1.png", 0), ("train/ant/2.png", 0)]
    assert [label for _, label in found.files["test"]] == [0, 1, 2]


@pytest.mark.parametrize("breakage, message", [
    (lambda r: shutil.rmtree(r / "test" / "dog"), "class 'dog' is in train only"),
    (lambda r: shutil.rmtree(r / "test"), "test: missing"),
    (lambda r: [f.unlink() for f in (r / "train" / "dog").iterdir()], "dog: class folder has no images"),
    (lambda r: (r / "train" / "readme.txt").write_text("x"), "readme.txt: a file where a class folder was expected"),
    (lambda r: (r / "train" / "dog" / "sub").mkdir(), "sub: not a regular file"),
    (lambda r: (r / "train" / "dog" / "a\tb.png").write_bytes(b"x"), "tab or line break"),
])
def test_scan_refuses_bad_layouts(tmp_path, breakage, message):
    root = make_image_folder(tmp_path / "d")
    breakage(root)
    with pytest.raises(UserError, match=message):
        layout.scan(root)


def test_scan_needs_two_classes(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("only",))
    with pytest.raises(UserError, match="at least 2 class folders"):
        layout.scan(root)


def test_symlink_escaping_the_root_is_refused(tmp_path):
    root = make_image_folder(tmp_path / "d")
    outside = make_image_folder(tmp_path / "elsewhere")
    os.symlink(outside / "train" / "cat" / "0.png", root / "train" / "cat" / "link.png")
    with pytest.raises(UserError, match="link.png: leads outside the dataset folder"):
        layout.scan(root)


def test_symlink_inside_the_root_is_allowed(tmp_path):
    root = make_image_folder(tmp_path / "d")
    os.symlink(root / "train" / "cat" / "0.png", root / "train" / "cat" / "again.png")
    assert ("train/cat/again.png", 0) in layout.scan(root).files["train"]


def write(root, folder):
    found = layout.scan(root)
    files.write_pathlists(found.classes, found.files, folder)


def test_pathlists_are_byte_for_byte_deterministic(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("b", "a"))
    write(root, tmp_path / "one")
    write(root, tmp_path / "two")
    for name in ("train.txt", "test.txt", "classes.txt"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert (tmp_path / "one" / "train.txt").read_text().splitlines()[0] == "train/a/0.png\t0"
    assert (tmp_path / "one" / "classes.txt").read_text() == "a\nb\n"


def test_read_round_trip(tmp_path):
    root = make_image_folder(tmp_path / "d")
    write(root, tmp_path / "pl")
    entries = files.read_pathlist(tmp_path / "pl", "train", root, 2)
    assert entries[0] == (str(root / "train/cat/0.png"), 0)
    assert files.read_classes(tmp_path / "pl") == ("cat", "dog")


@pytest.mark.parametrize("line, message", [
    ("train/cat/missing.png\t0", r"train.txt:1: .*missing.png: no such image file"),
    ("../d/train/cat/0.png\t0", r"must be a path relative to the dataset folder, without '\.\.'"),
    ("/etc/passwd\t0", r"must be a path relative to the dataset folder"),
    ("train/cat/0.png\t7", r"label 7 out of range 0..1"),
    ("train/cat/0.png\tcat", r"label 'cat' is not an integer"),
    ("train/cat/0.png", r"expected 'relative/path<TAB>label'"),
])
def test_read_refuses_bad_lines(tmp_path, line, message):
    root = make_image_folder(tmp_path / "d")
    (tmp_path / "train.txt").write_text(line + "\n")
    with pytest.raises(UserError, match=message):
        files.read_pathlist(tmp_path, "train", root, 2)


def test_read_refuses_symlink_escape(tmp_path):
    root = make_image_folder(tmp_path / "d")
    (tmp_path / "secret.png").write_bytes(b"x")
    os.symlink(tmp_path / "secret.png", root / "train" / "cat" / "s.png")
    (tmp_path / "train.txt").write_text("train/cat/s.png\t0\n")
    with pytest.raises(UserError, match="leads outside the dataset folder"):
        files.read_pathlist(tmp_path, "train", root, 2)


def test_empty_list_is_refused(tmp_path):
    (tmp_path / "test.txt").write_text("\n")
    with pytest.raises(UserError, match="path list is empty"):
        files.read_pathlist(tmp_path, "test", tmp_path, 2)


@pytest.mark.parametrize("link", ["train", "train/cat"])
def test_a_symlinked_split_or_class_folder_leading_outside_is_refused(tmp_path, link):
    root = make_image_folder(tmp_path / "root")
    outside = make_image_folder(tmp_path / "elsewhere")
    shutil.rmtree(root / link)
    os.symlink(outside / link, root / link)
    with pytest.raises(UserError, match="leads outside the dataset folder"):
        layout.scan(root)
