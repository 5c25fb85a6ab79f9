"""Stage stats: global per-channel mean/std of the train split, over every pixel, at image_size."""

import argparse
import time

from thesislab import config, files
from thesislab.data.stats import channel_stats
from thesislab.errors import stage_main


@stage_main
def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", required=True, help="dataset folder the path list is relative to")
    ap.add_argument("--pathlist", required=True, help="folder of the path lists")
    ap.add_argument("--out", required=True, help="JSON file to write")
    args = ap.parse_args()
    cfg = config.load()
    classes = files.read_classes(args.pathlist)
    entries = files.read_pathlist(args.pathlist, "train", args.root, len(classes))
    start = time.perf_counter()
    stats = channel_stats([path for path, _ in entries], size=cfg.image_size)
    seconds = time.perf_counter() - start
    files.write_stats(args.out, stats)
    print(f"mean {stats['mean']} std {stats['std']} over {stats['count']} images "
          f"({stats['count'] / seconds:,.0f} images/s)")


if __name__ == "__main__":
    main()
