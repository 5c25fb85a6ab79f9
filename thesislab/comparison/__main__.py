"""python -m thesislab.comparison EXP_A EXP_B: is EXP_B's change over EXP_A real? Paired by seed.

    python -m thesislab.comparison normalize-on normalize-off      # two `dvc exp run -n` names
    python -m thesislab.comparison main workspace --out cmp.json     # a branch against the files on disk

Prints one verdict per schedule both ran, and writes comparison.json's layout for each (--out).
"""

import argparse
import sys

from thesislab import io
from thesislab.comparison.experiments import compare_experiments
from thesislab.errors import stage_main


@stage_main
def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m thesislab.comparison", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("baseline", help="experiment name, commit, branch, tag, or 'workspace'")
    ap.add_argument("challenger", help="the same, compared against the baseline")
    ap.add_argument("--out", help="JSON file for {schedule: comparison}")
    ap.add_argument("--repo", default=".", help="project folder (default: here)")
    args = ap.parse_args(argv)
    results = compare_experiments(args.baseline, args.challenger, args.repo)
    for schedule, result in results.items():
        print(f"{schedule}: {result['verdict']}")
    if args.out:
        io.write_json(args.out, results)


if __name__ == "__main__":
    sys.exit(main())
