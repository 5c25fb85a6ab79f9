"""Stage check: every param checked before any other stage runs a command.

DVC pastes matrix values (schedule names, seeds) into the train stages' shell commands, and a shell runs a
command before the stage's own checks can; download depends on this stage's output, and every other stage on
download's, so a bad params.yaml stops `dvc repro` here, in one line naming the key, before any shell sees a
bad name and before any data is downloaded or model trained. With a sequential design, seeds must be its next
look (or one already made), and the design must be the one its looks were made with. The output is the same line whatever the params,
so a good change of params reruns this stage alone, not the ones after it. Beside it, what the runs start from
(`weights`: none, a torchvision name, or a file of data/weights/ with its md5): the train stages depend on that
file, not on the folder, so a file copied into data/weights retrains only the runs that read it.
"""

import argparse
import os

from thesislab import config, io
from thesislab.comparison import designs
from thesislab.errors import UserError, stage_main
from thesislab.train import models, schedules, transfer


# DVC sets these for the commands of an experiment (dvc exp run): the experiment's name, and the project's root.
EXPERIMENT, PROJECT = "DVC_EXP_NAME", "DVC_ROOT"


@stage_main
def main():
    try:
        check()
    except UserError as err:
        raise UserError(f"{err}{_restore_hint()}") from None


def _restore_hint() -> str:
    """In the workspace, `dvc exp run -S` has written its values into params.yaml before this refusal, and DVC
    leaves them there: say how to go back (a queued or --temp experiment's copy is thrown away)."""
    root = os.environ.get(PROJECT)
    if os.environ.get(EXPERIMENT) and root and os.path.realpath(root) == os.path.realpath(os.getcwd()):
        return "; dvc exp run left its -S values in params.yaml: git checkout params.yaml dvc.lock restores them"
    return ""


def check():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="the stamp that download depends on")
    ap.add_argument("--comparison", required=True, help="comparison.json: a sequential design's looks so far")
    ap.add_argument("--weights", required=True, help="the folder a `weights` file must lie in")
    ap.add_argument("--weights-in-use", required=True, help="what the runs start from (the train stages' dep)")
    args = ap.parse_args()
    cfg = config.load()
    designs.check_file(cfg, args.comparison)
    schedules.check_names(cfg.schedules)
    models.check_name(cfg.model)
    in_use = transfer.in_use(cfg.weights, args.weights)
    io.write_text(args.out, "params.yaml passed every check\n")
    io.write_json(args.weights_in_use, in_use)


if __name__ == "__main__":
    main()
