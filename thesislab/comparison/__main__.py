"""python -m thesislab.comparison EXP_A EXP_B: is EXP_B's change over EXP_A real? Paired by seed.

    python -m thesislab.comparison normalize-on normalize-off      # two `dvc exp run -n` names
    python -m thesislab.comparison main workspace --out cmp.json     # a branch against the files on disk

Prints one verdict per schedule both ran, and writes comparison.json's layout for each (--out).
"""

import argparse
import sys
from pathlib import Path

from thesislab import io
from thesislab.comparison.experiments import compare_experiments
from thesislab.errors import UserError, stage_main


@stage_main
def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m thesislab.comparison", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("baseline", help="experiment name, commit, branch, tag, or 'workspace'")
    ap.add_argument("challenger", help="the same, compared against the baseline")
    ap.add_argument("--out", help="JSON file for {schedule: comparison}")
    ap.add_argument("--repo", default=".", help="project folder (default: here)")
    ap.add_argument("--different-data", action="store_true",
                    help="compare experiments whose test sets differ (refused otherwise)")
    args = ap.parse_args(argv)
    if args.out and Path(args.out).is_dir():
        raise UserError(f"--out {args.out}: is a folder; name a JSON file to write")
    results = compare_experiments(args.baseline, args.challenger, args.repo, different_data=args.different_data)
    arithmetic = next(iter(results.values())).get("computation_differs")
    if arithmetic:
        said = ", ".join(f"{k} {a} vs {b}" for k, (a, b) in list(arithmetic.items())[:3])
        print(f"note: {args.baseline} and {args.challenger} computed differently ({said}): the difference between "
              "them is partly the arithmetic's, not only their params'", file=sys.stderr)
    for schedule, result in results.items():
        print(f"{schedule}: {result['verdict']}")
    if args.out:
        try:
            io.write_json(args.out, results)
        except OSError as err:
            raise UserError(f"--out {args.out}: cannot write there ({err.strerror})") from None


if __name__ == "__main__":
    sys.exit(main())
