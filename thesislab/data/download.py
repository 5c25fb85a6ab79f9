"""The download stage's one call: make <out>/{train,test}/<class>/<image> for the configured dataset."""

import tempfile
from pathlib import Path

from thesislab import io
from thesislab.config import Config
from thesislab.data import cifar10, folder, layout, speedsigns
from thesislab.data.samples import sample_grid


def make_dataset(cfg: Config, out_dir, samples_png, progress=True):
    """Build the dataset into a temporary folder and move it into place whole; then draw the sample grid."""
    out_dir = Path(out_dir)
    with io.atomic_dir(out_dir) as tmp, tempfile.TemporaryDirectory(
        prefix=f".{out_dir.name}.work-", suffix=".tmp", dir=out_dir.parent
    ) as work:
        if cfg.dataset == "speedsigns":
            g = cfg.speedsigns
            speedsigns.generate(tmp, {"train": g.train_per_class, "test": g.test_per_class}, g.size, g.seed,
                                progress=progress)
        elif cfg.dataset == "cifar10":
            archive = cifar10.fetch(cfg.source, work)
            cifar10.export(archive, tmp, Path(work) / "extracted", progress=progress)
        else:
            folder.import_folder(cfg.source, tmp, work, progress=progress)
        found = layout.scan(tmp)
    sample_grid(out_dir, found, samples_png)
    return found
