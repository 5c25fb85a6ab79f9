"""Stage train@<schedule>-<seed>: train the configured model with one LR schedule and one seed.

Logs every epoch through DVCLive into the live folder; writes the model file, the run's folder (DVCLive's
metrics.json and per-epoch files, and predictions.csv) and, while the run is unfinished, its checkpoint.
With engine.nproc > 1 it relaunches itself under torchrun, one process per GPU (DistributedDataParallel).

    python -m stages.train --pack [--width W] 'CMD' 'CMD' ...

trains several train stages' own commands (as dvc.yaml resolves them: one params.yaml, one data set) as one
computation, each run writing exactly the files its stage writes alone (the sweep packs runs this way).
"""

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from thesislab import arithmetic, config
from thesislab.errors import UserError, stage_main


def parse_args(argv=None):
    """The stage's arguments (argv: a train stage's command line, as the sweep reads it from dvc.yaml)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--schedule", required=True)
    # Text, not type=int: params.yaml is checked first, so that `-S 'seeds=[1.5]'` (which DVC's matrix passes here
    # as --seed 1.5) is refused by the line naming `seeds`, not by argparse naming --seed.
    ap.add_argument("--seed", required=True)
    ap.add_argument("--root", required=True, help="dataset folder")
    ap.add_argument("--pathlist", required=True, help="folder of the path lists")
    ap.add_argument("--stats", required=True, help="stats.json")
    ap.add_argument("--cache", required=True, help="folder for decoded-image arrays")
    ap.add_argument("--model", required=True, help="model file to write")
    ap.add_argument("--weights", required=True, help="folder that a `weights` file must lie in")
    ap.add_argument("--checkpoints", required=True,
                    help="this run's working folder (checkpoint, scratch log); not a DVC output")
    ap.add_argument("--out", required=True, help="this run's output folder")
    ap.add_argument("--live", required=True, help="the live view: the files of the run that last finished an epoch")
    return ap.parse_args(argv)


def seed_number(text):
    try:
        return int(text)
    except ValueError:
        raise UserError(f"--seed: must be an integer (got {text!r})") from None


def load_library():
    """The training library: it imports torch, so it is loaded only once the arithmetic is pinned."""
    from thesislab.train import assemble, run

    return assemble, run


def relaunch_under_torchrun(nproc):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "stages.train", *sys.argv[1:]]
    sys.exit(subprocess.call(cmd))


def parse_pack(argv):
    """--pack's arguments: the width, and each run's arguments read from its train stage's command."""
    ap = argparse.ArgumentParser(prog="python -m stages.train --pack")
    ap.add_argument("--width", type=int, help="the pack's slots, idle ones padded (the sweep's on CUDA; default: its runs)")
    ap.add_argument("commands", nargs="+", metavar="CMD", help="a train stage's command, as dvc.yaml resolves it")
    opts = ap.parse_args(argv)
    runs = []
    for cmd in opts.commands:
        tokens = shlex.split(cmd)
        if tokens[1:3] != ["-m", "stages.train"] or "--pack" in tokens:
            raise UserError(f"--pack: {cmd[:80]!r} is not a train stage's command (python -m stages.train ...)")
        runs.append(parse_args(tokens[3:]))
    if opts.width is not None and opts.width < len(runs):
        raise UserError(f"--width {opts.width}: a pack of {len(runs)} runs needs at least {len(runs)} slots")
    return opts.width, runs


@stage_main
def main():
    argv = sys.argv[1:]
    width, specs = parse_pack(argv[1:]) if argv[:1] == ["--pack"] else (None, [parse_args(argv)])
    cfg = config.load()
    arithmetic.pin(cfg.engine.portable)  # before torch loads: the library imports it
    assemble, run = load_library()
    runs = [(args.schedule, seed_number(args.seed), _paths(assemble, args)) for args in specs]
    for schedule, seed, _ in runs:
        run.check(cfg, schedule, seed)
    if cfg.engine.nproc > 1 and "WORLD_SIZE" not in os.environ:
        if len(runs) > 1:
            raise UserError("engine.nproc > 1 trains one run over several processes: its runs cannot be packed")
        relaunch_under_torchrun(cfg.engine.nproc)
    run.train_pack(cfg, runs, width)


def _paths(assemble, args):
    return assemble.RunPaths(
        root=Path(args.root), pathlist=Path(args.pathlist), stats=Path(args.stats), cache=Path(args.cache),
        model=Path(args.model), weights=Path(args.weights), work=Path(args.checkpoints),
        run=Path(args.out), live=Path(args.live),
    )


if __name__ == "__main__":
    main()
