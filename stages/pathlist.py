"""Stage pathlist: write the train/test path lists and the class names (the thesis's chapter 4.2)."""

import argparse

from thesislab import files
from thesislab.data import layout
from thesislab.errors import stage_main


@stage_main
def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", required=True, help="dataset folder with train/<class>/ and test/<class>/")
    ap.add_argument("--out", required=True, help="folder for the path lists and class names")
    args = ap.parse_args()
    found = layout.scan(args.root)
    files.write_pathlists(found.classes, found.files, args.out)
    n_train, n_test = len(found.files["train"]), len(found.files["test"])
    print(f"{args.out}: {n_train} train, {n_test} test, {len(found.classes)} classes")


if __name__ == "__main__":
    main()
