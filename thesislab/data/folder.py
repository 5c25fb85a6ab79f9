"""Your own images (the thesis's chapter 4): a folder, or a tar archive of one, with train/<class>/ and
test/<class>/ inside, in any format and size Pillow reads.

Everything is checked before anything is copied: the layout (see layout.scan) and every file decoded in
full, so an unreadable file is reported by path. The files are then hard-linked into the dataset folder where
the filesystem allows (no second copy of your images, and DVC's hashes of the source serve the copy too),
else copied byte for byte; resizing to image_size happens when images are read for stats and training.
A linked file is your file: edit images in data/sources/, never in data/raw/ (DVC then imports again).
"""

import errno
import os
import shutil
from pathlib import Path

from tqdm import tqdm

from thesislab.data import archives, layout
from thesislab.data.images import load_rgb
from thesislab.errors import UserError
from thesislab.files import SPLITS
from thesislab.parallel import chunked, map_chunks


def import_folder(source, out_dir, work_dir, progress=True):
    root = _unpack(Path(source), Path(work_dir))
    found = layout.scan(root)
    files = [rel for split in SPLITS for rel, _ in found.files[split]]
    for _ in map_chunks(_check_decodes, chunked([str(root / rel) for rel in files], 256), desc="checking images",
                        progress=progress):
        pass
    for folder in {Path(out_dir) / rel for rel in (str(Path(f).parent) for f in files)}:
        folder.mkdir(parents=True, exist_ok=True)
    for rel in tqdm(files, desc="linking images", unit="img", disable=None if progress else True):
        src = root / rel
        place(os.path.realpath(src) if os.path.islink(src) else src, Path(out_dir) / rel)  # a symlink: its target
    return found


# Why a hard link can be impossible: another filesystem, no link support, a file's link limit, permissions.
LINK_IMPOSSIBLE = (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.EACCES)


def place(src, dest):
    """Hard-link src at dest, or copy it where a link is impossible."""
    try:
        os.link(src, dest)
    except OSError as err:
        if err.errno not in LINK_IMPOSSIBLE:
            raise
        shutil.copyfile(src, dest)


def _unpack(source, work_dir):
    if source.is_dir():
        return source
    if source.is_file() and archives.is_tar(source):
        archives.extract(source, work_dir)
        return _single_root(work_dir)
    raise UserError(f"source: {source}: not a folder or a .tar/.tar.gz archive")


def _single_root(work_dir):
    """The folder holding train/ and test/: the archive's top level, or its one top folder."""
    if (work_dir / "train").is_dir():
        return work_dir
    tops = [p for p in work_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(tops) == 1 and (tops[0] / "train").is_dir():
        return tops[0]
    raise UserError("source archive: no train/ and test/ folders at its top level or in its one top folder")


def _check_decodes(paths):
    for path in paths:
        load_rgb(path)
