"""The download stage's one call: make <out>/{train,test}/<class>/<image> for the configured dataset.

A `source` (your folder or archive, or a local CIFAR-10 archive) must lie inside the sources folder that
dvc.yaml passes in (data/sources/): the download stage depends on that folder, so DVC notices when anything
in it changes (`dvc status` shows it, `dvc repro` re-imports), and `dvc exp run --queue` runs see it when it
is DVC-tracked there (`dvc add data/sources/<name>`). A relative source is relative to the project root.
"""

import hashlib
import os
import tempfile
from pathlib import Path

from thesislab import files, io
from thesislab.config import Config
from thesislab.data import cifar10, folder, layout, speedsigns
from thesislab.data.samples import sample_grid
from thesislab.errors import UserError
from thesislab.parallel import chunked, map_chunks


def make_dataset(cfg: Config, out_dir, samples_png, sources_dir, progress=True):
    """Build the dataset into a temporary folder and move it into place whole; then draw the sample grid."""
    out_dir = Path(out_dir)
    source = resolve_source(cfg.source, sources_dir, cfg.dataset) if cfg.dataset != "speedsigns" else None
    with io.atomic_dir(out_dir) as tmp, tempfile.TemporaryDirectory(
        prefix=f".{out_dir.name}.work-", suffix=".tmp", dir=out_dir.parent
    ) as work:
        if cfg.dataset == "speedsigns":
            g = cfg.speedsigns
            speedsigns.generate(tmp, {"train": g.train_per_class, "test": g.test_per_class}, g.size, g.seed,
                                progress=progress)
        elif cfg.dataset == "cifar10":
            archive = cifar10.fetch(source, work)
            cifar10.export(archive, tmp, Path(work) / "extracted", progress=progress)
        else:
            folder.import_folder(source, tmp, work, progress=progress)
        found = layout.scan(tmp)
        write_manifest(tmp, found, progress)
    sample_grid(out_dir, found, samples_png)
    return found


def write_manifest(root, found, progress=True):
    """files.MANIFEST for every image of the layout, hashed on every core."""
    rels = [rel for split in files.SPLITS for rel, _ in found.files[split]]
    entries = []
    for part in map_chunks(_hash_files, chunked(rels, 512), str(root), desc="manifest", progress=progress):
        entries += part
    files.write_manifest(root, entries)


def _hash_files(rels, root):
    out = []
    for rel in rels:
        data = Path(root, rel).read_bytes()
        out.append((rel, len(data), hashlib.md5(data, usedforsecurity=False).hexdigest()))
    return out


def resolve_source(source, sources_dir, dataset="cifar10"):
    """A URL as it is (CIFAR-10's archive only); a path resolved against the project root and checked to lie
    inside sources_dir."""
    if source is not None and str(source).startswith(("http://", "https://")) and dataset == "folder":
        raise UserError(f"source: {source}: a URL is only for dataset cifar10; for folder, download the folder or "
                        "archive into data/sources/ and name it there (docs/datasets.md: Your own images)")
    if source is None or str(source).startswith(("http://", "https://")):
        return source
    path = Path(source).expanduser()
    real, allowed = os.path.realpath(path), os.path.realpath(sources_dir)
    if os.path.commonpath([real, allowed]) != allowed:
        raise UserError(f"source: {source} is outside {sources_dir}/, where DVC watches sources for changes and "
                        f"queued runs can reach them; move or copy it there (docs/datasets.md: Your own images)")
    if not os.path.exists(real):
        raise UserError(f"source: {source}: no such file or folder (in a --queue or --temp run, only git- or "
                        f"DVC-tracked files exist: `dvc add {path}`)")
    return Path(real)
