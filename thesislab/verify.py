"""python -m thesislab.verify: does this machine reproduce the committed runs, to the bit?

    python -m thesislab.verify                  # one run per schedule of the committed grid (its lowest seed)
    python -m thesislab.verify static-1 dynamic-2
    python -m thesislab.verify --all            # every committed run

Trains the runs again in a throwaway clone of the last commit (the workspace is never touched: not its params,
outputs, DVC cache or experiments), the runs at once as the sweep runs them, and prints for each either
"identical to the committed model (md5 ...)" or the first epoch whose logged numbers differ, by how much, and what
differs between the two computations (torch, device, portable arithmetic, threads). Exit status 0 only when every
run is identical; 1 when one differs or did not finish; 2 for bad arguments.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Every module loaded here, before the clone becomes the working folder: a later import would load the clone's copy.
from thesislab import arithmetic, config
from thesislab.errors import UserError, stage_main
from thesislab.reproduce import Verdict, judge
from thesislab.sweep import __main__ as sweep
from thesislab.sweep import engines, plan
from thesislab.sweep.board import Board
from thesislab.sweep.worker import describe_exit, read_status


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m thesislab.verify", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", metavar="RUN", help="committed runs by name (<schedule>-<seed>)")
    ap.add_argument("--all", action="store_true", help="every committed run")
    ap.add_argument("--jobs", type=int, help="runs at once (default: cores / engine.threads)")
    opts = ap.parse_args(argv)
    if opts.all and opts.runs:
        raise UserError("name runs or give --all, not both")
    if opts.jobs is not None and opts.jobs < 1:
        raise UserError("--jobs: must be at least 1")
    return opts


def throwaway_clone(project: Path, into: Path) -> Path:
    """The last commit, cloned; the workspace's images copied in when it has them (DVC checks them against the
    commit's dvc.lock, and draws them anew where they differ): a copy is faster than drawing thousands."""
    copy = into / "project"
    done = subprocess.run(["git", "clone", "--quiet", str(project), str(copy)], capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"git clone of {project} failed: {done.stderr.strip().splitlines()[-1:]}")
    raw = Path("data/raw") / config.load(copy / "params.yaml").dataset
    if (project / raw).is_dir():
        shutil.copytree(project / raw, copy / raw, dirs_exist_ok=True)
    return copy


def chosen(cfg, committed: list, opts) -> list:
    if opts.all:
        return committed
    if opts.runs:
        unknown = [r for r in opts.runs if r not in committed]
        if unknown:
            raise UserError(f"{unknown[0]}: not a committed run (committed: {', '.join(committed) or 'none'})")
        return list(dict.fromkeys(opts.runs))
    first = min(cfg.seeds)
    return [f"{s}-{first}" for s in cfg.schedules if f"{s}-{first}" in committed]


def verify(opts) -> int:
    project = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="thesislab-verify-") as tmp:
        copy = throwaway_clone(project, Path(tmp))
        os.chdir(copy)
        cfg = config.load()
        committed = plan.committed_runs()
        names = chosen(cfg, committed, opts)
        if not names:
            raise UserError("the last commit records no trained runs (dvc.lock has no train stage): nothing to verify")
        print(f"verify: {len(names)} committed runs ({', '.join(names)}), trained again in a clone of the last "
              f"commit ({copy}); first its data, by dvc repro")
        plan.dvc("repro", "--quiet", *plan.upstream_stages())
        stale = plan.changed_train_stages(names)
        if stale:
            raise UserError(f"{stale[0]}: its inputs made here differ from the committed ones (`dvc status` in a "
                            "fresh clone shows which): its run cannot be compared")
        verdicts = retrain(plan.rebuild_tasks(cfg.epochs, names), cfg, opts)
        os.chdir(project)
    same = sum(v.identical for v in verdicts)
    kernels = arithmetic.kernels(cfg.engine.portable)
    print(f"verify: {same} of {len(names)} runs reproduced bit for bit on this machine ({arithmetic.cpu_name()}, "
          f"{kernels})")
    return 0 if same == len(names) else 1


def retrain(tasks, cfg, opts) -> list:
    """Train the tasks at once through the sweep's local engine, with its progress board; judge each."""
    run_opts = argparse.Namespace(engine="local", jobs=opts.jobs, runs_per_gpu=1, gpus_per_run=0)
    env = sweep.sweep_env(cfg, run_opts)
    engine = engines.Local(run_opts, env)
    sweep.fresh_state(tasks)
    with Board(tasks) as board:
        try:
            outcome = engine.run(tasks, board, retries=0)
        except KeyboardInterrupt:
            engine.cancel()
            raise
    verdicts = []
    for t in tasks:
        if read_status(t.status).get("state") == "done":
            v = judge(t.name, t.model, t.out, t.committed)
        else:
            log = Path(t.log).read_text(errors="replace").strip().splitlines()[-1:] if Path(t.log).exists() else []
            v = Verdict(t.name, False, f"did not finish ({describe_exit(outcome.get(t.name))}){': ' + log[0] if log else ''}")
        print(f"verify: {t.name}: {v.text}")
        verdicts.append(v)
    return verdicts


@stage_main
def main(argv=None):
    opts = parse_args(argv)
    if not Path("dvc.yaml").is_file() or not Path(".git").exists():
        raise UserError("run verify from the project's root (the folder holding dvc.yaml and .git)")
    sys.exit(verify(opts))


if __name__ == "__main__":
    main()
