"""Path lists (the thesis's chapter 4.2): one `relative/path<TAB>label` line per image.

Paths are relative to the dataset root and use '/', so a list is byte-for-byte the same on every machine.
Reading a list checks every line: a label in range, a relative path that stays inside the root, a file
that exists; a bad line raises UserError naming the list, the line and the path.
"""

import os
from pathlib import Path, PurePosixPath

from thesislab import io
from thesislab.data.layout import SPLITS, Layout
from thesislab.errors import UserError


def write(layout: Layout, out_dir):
    """Write <out_dir>/train.txt, test.txt and classes.txt (one class name a line, in label order)."""
    out_dir = Path(out_dir)
    for split in SPLITS:
        io.write_text(out_dir / f"{split}.txt", "".join(f"{p}\t{label}\n" for p, label in layout.files[split]))
    io.write_text(out_dir / "classes.txt", "".join(f"{name}\n" for name in layout.classes))


def read_classes(path) -> tuple:
    try:
        names = tuple(line for line in Path(path).read_text(encoding="utf-8").splitlines() if line)
    except OSError as err:
        raise UserError(f"{path}: cannot read class names ({err.strerror})") from None
    if len(names) < 2:
        raise UserError(f"{path}: needs at least 2 class names, found {len(names)}")
    return names


def read(list_file, root, num_classes) -> list:
    """Return [(absolute path, label)] for every line of `list_file`, checked against `root`."""
    list_file, root = Path(list_file), Path(root)
    real_root = os.path.realpath(root)
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise UserError(f"{list_file}: cannot read path list ({err.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"{list_file}: not a UTF-8 text path list") from None
    entries = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{list_file}:{n}"
        rel, label = _parse_line(line, where, num_classes)
        path = root / rel
        real = os.path.realpath(path)
        if os.path.commonpath([real, real_root]) != real_root:
            raise UserError(f"{where}: {rel} leads outside the dataset folder {root}; refused")
        if not os.path.isfile(real):
            raise UserError(f"{where}: {path}: no such image file")
        entries.append((str(path), label))
    if not entries:
        raise UserError(f"{list_file}: path list is empty")
    return entries


def _parse_line(line, where, num_classes):
    parts = line.split("\t")
    if len(parts) != 2:
        raise UserError(f"{where}: expected 'relative/path<TAB>label', got {line!r}")
    rel, label = parts
    pure = PurePosixPath(rel)
    if not rel or pure.is_absolute() or ".." in pure.parts:
        raise UserError(f"{where}: {rel!r} must be a path relative to the dataset folder, without '..'")
    try:
        label = int(label)
    except ValueError:
        raise UserError(f"{where}: label {label!r} is not an integer") from None
    if not 0 <= label < num_classes:
        raise UserError(f"{where}: label {label} out of range 0..{num_classes - 1}")
    return rel, label
