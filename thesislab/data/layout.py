"""The image-folder layout every dataset ends up in: <root>/{train,test}/<class>/<image>.

`scan` walks it in a fixed order and checks what a classifier needs: the same classes in both splits, at
least two classes, no empty class, and no path (symlink or otherwise) leading outside the root. Hidden
files (names starting with '.', such as .DS_Store) are ignored; every other file must be an image, which
the caller checks by decoding it.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from thesislab.errors import UserError
from thesislab.files import SPLITS


@dataclass(frozen=True)
class Layout:
    classes: tuple  # class names, sorted; a label is an index into this
    files: dict  # split -> list of (relative posix path, label), sorted


def scan(root) -> Layout:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: not a folder")
    real_root = os.path.realpath(root)
    per_split = {split: _classes_of(root / split, real_root) for split in SPLITS}
    train, test = per_split["train"], per_split["test"]
    if set(train) != set(test):
        only = sorted(set(train) ^ set(test))
        where = "train" if only[0] in train else "test"
        raise UserError(
            f"{root / where / only[0]}: class '{only[0]}' is in {where} only; both splits need the same classes"
        )
    classes = tuple(sorted(train))
    if len(classes) < 2:
        raise UserError(f"{root / 'train'}: needs at least 2 class folders, found {len(classes)}")
    files = {}
    for split in SPLITS:
        files[split] = [
            (f"{split}/{name}/{fname}", label)
            for label, name in enumerate(classes)
            for fname in per_split[split][name]
        ]
    return Layout(classes, files)


def _classes_of(split_dir, real_root):
    if not split_dir.is_dir():
        raise UserError(f"{split_dir}: missing; expected {split_dir}/<class>/<image> folders")
    _check_inside(split_dir, real_root)  # a split or class folder may be a symlink, or lie under one
    classes = {}
    for entry in _visible(split_dir, real_root):
        _check_inside(entry.path, real_root)
        if not entry.is_dir():
            raise UserError(f"{entry.path}: a file where a class folder was expected")
        names = []
        for f in _visible(entry.path, real_root):
            if not f.is_file():
                raise UserError(f"{f.path}: not a regular file (class folders hold images only)")
            names.append(f.name)
        if not names:
            raise UserError(f"{entry.path}: class folder has no images")
        classes[entry.name] = names
    return classes


def _visible(folder, real_root):
    """A folder's entries by name, hidden ones skipped, each checked to stay inside the root.

    Only a symlink can lead outside: a plain entry of a folder whose real path is inside the root (the caller
    checks each folder) is inside it too, so only symlinks are resolved here (resolving every image's path costs
    an lstat per path component: seconds for 60,000 images)."""
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_symlink():
            _check_inside(entry.path, real_root)
        _check_name(entry.path, entry.name)
        yield entry


def _check_inside(path, real_root):
    real = os.path.realpath(path)
    if os.path.commonpath([real, real_root]) != real_root:
        raise UserError(f"{path}: leads outside the dataset folder (to {real}); refused")


def _check_name(path, name):
    # Path lists are `path<TAB>label` lines: a tab or line break in a name would corrupt them.
    if any(c in name for c in "\t\n\r"):
        raise UserError(f"{path!r}: name contains a tab or line break; rename it")
