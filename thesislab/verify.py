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
import errno
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Every module loaded here, before the clone becomes the working folder: a later import would load the clone's copy.
from thesislab import arithmetic, config
from thesislab.errors import UserError, interrupt_once, stage_main
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
        raise UserError(_clone_failure(done.stderr, into))
    raw = Path("data/raw") / config.load(copy / "params.yaml").dataset
    if (project / raw).is_dir():
        try:
            shutil.copytree(project / raw, copy / raw, dirs_exist_ok=True)
        except (shutil.Error, OSError) as err:
            raise UserError(_copy_failure(err, project / raw, into)) from None
    return copy


NO_SPACE = "No space left on device"


def _no_space(into) -> str:
    return (f"no space left on the disk of {into.parent} (the throwaway clone's folder; set TMPDIR to a folder on a "
            "disk with room); the workspace is untouched")


def _clone_failure(stderr, into) -> str:
    """git's reason in one line: its last fatal or error line (git ends some failures with a hint), or no space."""
    if NO_SPACE in stderr:
        return _no_space(into)
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    reason = [line for line in lines if line.startswith(("fatal:", "error:"))][-1:] or lines[-1:] or ["no reason given"]
    return f"git clone of the last commit failed: {reason[0]}"


def _copy_failure(err, source, into) -> str:
    """A failed copy of the images in one line: shutil.Error holds one (source, target, reason) per file."""
    reasons = [str(why) for _, _, why in err.args[0]] if isinstance(err, shutil.Error) and err.args and \
        isinstance(err.args[0], list) else [str(err)]
    if getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or any(NO_SPACE in r for r in reasons):
        return _no_space(into)
    return f"copying the images of {source} into the throwaway clone failed: {reasons[0]}" + \
        (f" (and {len(reasons) - 1} more files)" if len(reasons) > 1 else "")


def chosen(cfg, committed: list, pipeline: list, opts) -> list:
    """The runs to train again: named, all, or one per schedule at the lowest seed. A run is verifiable when dvc.lock
    records it and dvc.yaml's train matrix still has it (a commit made after an experiment with fewer seeds keeps
    the other seeds' entries in dvc.lock, but no stage trains them)."""
    verifiable = [r for r in committed if r in pipeline]
    if opts.runs:
        for name in opts.runs:
            if name not in committed:
                raise UserError(f"{name}: not a committed run (committed: {', '.join(verifiable) or 'none'})")
            if name not in pipeline:
                raise UserError(f"{name}: dvc.lock records it, but the last commit's train matrix no longer has it "
                                f"({_matrix(cfg)}), so no stage can train it as committed (verifiable: "
                                f"{', '.join(verifiable) or 'none'})")
        return list(dict.fromkeys(opts.runs))
    if opts.all:
        return verifiable
    first = min(cfg.seeds)
    return [f"{s}-{first}" for s in cfg.schedules if f"{s}-{first}" in verifiable]


def _matrix(cfg) -> str:
    return f"params.yaml: seeds {list(cfg.seeds)}, schedules [{', '.join(cfg.schedules)}]"


def verify(opts) -> int:
    project = Path.cwd()
    if subprocess.run(["git", "rev-parse", "--verify", "--quiet", "HEAD"], capture_output=True).returncode != 0:
        raise UserError("this repository has no commits yet: verify trains the last commit's runs again; commit "
                        "the results first (git add -A && git commit)")
    with tempfile.TemporaryDirectory(prefix="thesislab-verify-") as tmp:
        try:
            copy = throwaway_clone(project, Path(tmp))
            os.chdir(copy)
            verdicts, names, cfg = _verify_in(copy, opts)
        finally:
            os.chdir(project)  # the clone is removed next: never left as the working folder
    same = sum(v.identical for v in verdicts)
    kernels = arithmetic.kernels(cfg.engine.portable)
    print(f"verify: {same} of {len(names)} runs reproduced bit for bit on this machine ({arithmetic.cpu_name()}, "
          f"{kernels})")
    return 0 if same == len(names) else 1


def _verify_in(copy, opts):
    cfg = config.load()
    committed, pipeline = plan.committed_runs(), plan.pipeline_runs()
    names = chosen(cfg, committed, pipeline, opts)
    dropped = [r for r in committed if r not in pipeline]
    if dropped and not opts.runs:
        print(f"verify: not verified: {', '.join(dropped)}: dvc.lock still records them, but the last commit's train "
              f"matrix ({_matrix(cfg)}) no longer has them")
    if not names:
        raise UserError("the last commit records no trained runs of its train matrix (dvc.lock has none): nothing "
                        "to verify")
    print(f"verify: {len(names)} committed runs ({', '.join(names)}), trained again in a clone of the last "
          f"commit ({copy}); first its data, by dvc repro")
    plan.dvc("repro", "--quiet", *plan.upstream_stages())
    stale = plan.changed_train_stages(names)
    if stale:
        raise UserError(f"{stale[0]}: its inputs made here differ from the committed ones (`dvc status` in a "
                        "fresh clone shows which): its run cannot be compared")
    tasks = plan.rebuild_tasks(cfg.epochs, names)
    untrained = [n for n in names if n not in {t.name for t in tasks}]
    if untrained:  # every run named is trained and judged, or the reason is said: never counted silently
        raise UserError(f"{untrained[0]}: no train stage of the last commit can train it again as committed")
    return retrain(tasks, cfg, opts), names, cfg


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
    interrupt_once()  # SIGTERM and SIGHUP as Ctrl-C; a second signal never cuts the clean-up short
    try:
        status = verify(opts)
    except KeyboardInterrupt:
        print("verify: interrupted; its throwaway clone is removed and the workspace was never touched: nothing "
              "to resume (run verify again to start over)", file=sys.stderr)
        sys.exit(130)
    sys.exit(status)


if __name__ == "__main__":
    main()
