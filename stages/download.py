"""Stage download: make data/raw/<dataset>/{train,test}/<class>/<image> and a sample grid."""

import argparse

from thesislab import config
from thesislab.data.download import make_dataset
from thesislab.errors import stage_main


@stage_main
def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="dataset folder to write")
    ap.add_argument("--samples", required=True, help="sample-grid PNG to write")
    ap.add_argument("--sources", required=True, help="folder that a `source` path must lie in")
    args = ap.parse_args()
    cfg = config.load()
    found = make_dataset(cfg, args.out, args.samples, args.sources)
    counts = {split: len(files) for split, files in found.files.items()}
    print(f"{cfg.dataset}: {len(found.classes)} classes, {counts['train']} train and {counts['test']} test images")


if __name__ == "__main__":
    main()
