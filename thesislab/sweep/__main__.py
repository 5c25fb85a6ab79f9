"""python -m thesislab.sweep: train every stale (schedule, seed) run at once, record them in DVC, compare.

    python -m thesislab.sweep                              # this machine: every GPU, or cores / engine.threads
    python -m thesislab.sweep -S lr=0.02 -n lr-0.02        # a named experiment, like dvc exp run -n -S
    python -m thesislab.sweep --engine slurm --partition gpu --gpus-per-run 1 --time 2:00:00
    python -m thesislab.sweep --engine ray --address HEAD:6379 --gpus-per-run 1

Steps: apply -S to params.yaml; check params and the engine (one line each, before any work); run the stages
before training (dvc repro); run every stale train stage's own command through the engine; `dvc commit` each
finished one (dvc.lock as a serial `dvc repro` writes it); then `dvc repro` runs the comparison. A run that did not
finish is named, the comparison is left as it was (exit 2), and rerunning the sweep trains only what is missing.
"""

import argparse
import fcntl
import os
import shutil
import sys
import time
from dataclasses import dataclass, field

from thesislab import config
from thesislab.errors import UserError, stage_main
from thesislab.sweep import engines, plan
from thesislab.sweep.board import Board
from thesislab.sweep.worker import describe_exit, read_status

ENGINES = ("local", "slurm", "ray")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m thesislab.sweep", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=ENGINES, default="local")
    ap.add_argument("-S", "--set-param", action="append", default=[], metavar="KEY=VALUE",
                    help="change a param first, as dvc exp run -S does (repeatable)")
    ap.add_argument("-n", "--name", help="save the result as a named DVC experiment (dvc exp save -n)")
    ap.add_argument("--retries", type=int, default=2, help="times a failed or lost run is started again (2)")
    local = ap.add_argument_group("local")
    local.add_argument("--jobs", type=int, help="runs at once (default: GPUs x --runs-per-gpu, or cores / threads)")
    local.add_argument("--runs-per-gpu", type=int, default=1, help="runs sharing each GPU (small nets; also Ray)")
    cluster = ap.add_argument_group("slurm and ray")
    cluster.add_argument("--gpus-per-run", type=int, default=None,
                         help="GPUs each run asks for (default: 1 where engine.device is cuda, else 0)")
    cluster.add_argument("--partition", help="SLURM partition (default: the cluster's default)")
    cluster.add_argument("--time", help="SLURM time limit a run, e.g. 4:00:00 (default: the partition's)")
    cluster.add_argument("--max-parallel", type=int, help="SLURM: at most this many runs at once (array %%N)")
    cluster.add_argument("--sbatch-arg", action="append", metavar="ARG", help="extra #SBATCH line, e.g. --qos=short")
    cluster.add_argument("--address", help="Ray cluster address (default: start Ray on this machine)")
    return ap.parse_args(argv)


@dataclass
class SweepEnv:
    """What every run of the sweep shares: thread count, device type, torch version (checked by each worker)."""

    threads: int
    device: str  # cpu | cuda | mps: what each run must train on
    gpus: list = field(default_factory=list)  # GPU ids this machine shows (local engine)
    vars: dict = field(default_factory=dict)  # the workers' environment


def sweep_env(cfg, opts) -> SweepEnv:
    import torch

    from thesislab.train import runtime

    threads = cfg.engine.threads
    if opts.engine == "local":
        device = runtime.pick_device(cfg.engine.device).type
        gpus = list(range(torch.cuda.device_count())) if device == "cuda" else []
    else:
        asked = cfg.engine.device
        device = asked if asked in ("cpu", "cuda") else ("cuda" if opts.gpus_per_run else "cpu")
        gpus = []
    venv_bin = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           runtime.EXPECT_TORCH: torch.__version__, runtime.EXPECT_DEVICE: device}
    return SweepEnv(threads, device, gpus, env)


def check_options(opts, cfg):
    if opts.retries < 0:
        raise UserError("--retries: must be 0 or more")
    if opts.gpus_per_run is None:
        opts.gpus_per_run = 1 if cfg.engine.device == "cuda" and opts.engine != "local" else 0
    if opts.gpus_per_run < 0 or (opts.max_parallel is not None and opts.max_parallel < 1):
        raise UserError("--gpus-per-run must be 0 or more, --max-parallel at least 1")
    if cfg.engine.nproc > 1:
        raise UserError("engine.nproc > 1 (one run over several GPUs) is run by dvc repro, not the sweep: "
                        "the sweep runs many one-GPU runs at once")


def make_engine(opts, env):
    if opts.engine == "local":
        engines.check_local(opts, env)
        return engines.Local(opts, env)
    if opts.engine == "slurm":
        engines.check_slurm(opts, env)
        return engines.Slurm(opts, env)
    engines.connect_ray(opts, env)
    return engines.Ray(opts, env)


def one_sweep_at_a_time():
    """A lock held for the sweep's life (released by the OS if it dies): a second sweep is refused."""
    plan.STATE.mkdir(exist_ok=True)
    handle = open(plan.STATE / "lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        raise UserError(f"another sweep is running in this project ({handle.read().strip() or 'pid unknown'}); "
                        "wait for it, or stop it with Ctrl-C") from None
    handle.truncate(0)
    handle.write(f"pid {os.getpid()}, started {time.strftime('%H:%M:%S')}\n")
    handle.flush()
    return handle


def fresh_state(tasks):
    for t in tasks:
        t.status.unlink(missing_ok=True)
        t.status.parent.mkdir(parents=True, exist_ok=True)
        t.log.parent.mkdir(parents=True, exist_ok=True)


def sweep(opts):
    lock = one_sweep_at_a_time()
    if opts.set_param:
        plan.set_params(opts.set_param)
    cfg = config.load()
    check_options(opts, cfg)
    env = sweep_env(cfg, opts)
    engine = make_engine(opts, env)
    upstream = plan.upstream_stages()
    if upstream:
        plan.dvc("repro", *upstream)
    tasks = plan.stale_tasks(cfg.epochs)
    if tasks:
        train(engine, tasks, opts)
    else:
        print("sweep: every train stage is up to date")
    # --allow-missing: a committed run whose model file is only absent (a fresh clone) is not trained again.
    plan.dvc("repro", "--allow-missing")
    absent = plan.missing_cached_outputs()
    if absent:
        print(f"note: {len(absent)} runs are up to date but their model files are not here ({absent[0]}, ...): "
              "DVC's cache is not in git; `dvc pull` brings them from a remote, `dvc repro -f -s train@<run>` "
              "trains one again")
    if opts.name or opts.set_param:
        plan.save_experiment(opts.name)
    lock.close()


def train(engine, tasks, opts):
    print(f"sweep: {len(tasks)} runs to train; {engine.describe()}")
    fresh_state(tasks)
    outcome = {}
    try:
        with Board(tasks) as board:
            outcome = engine.run(tasks, board, opts.retries)
    except KeyboardInterrupt:
        finished = [t for t in tasks if _finished(t)]
        _record(finished)
        print(f"interrupted: the engine's runs are cancelled; {len(finished)} finished runs are recorded, the "
              "others resume from their checkpoints when the sweep is run again", file=sys.stderr)
        sys.exit(130)
    done = [t for t in tasks if outcome.get(t.name) == 0 and _finished(t)]
    _record(done)
    missing = [t for t in tasks if t not in done]
    if missing:
        names = ", ".join(f"{t.stage} ({describe_exit(outcome.get(t.name))}; log {t.log})" for t in missing)
        raise UserError(f"{len(missing)} of {len(tasks)} runs did not finish: {names}; the comparison was not "
                        "updated; run the sweep again to train only those")


def _finished(task) -> bool:
    return read_status(task.status).get("state") == "done"


def _record(tasks):
    same, changed = plan.unchanged(tasks)
    plan.record(same)
    if changed:
        raise UserError(f"params, code or data changed while {', '.join(t.stage for t in changed)} trained: their "
                        "results are not recorded; run the sweep again")


@stage_main
def main(argv=None):
    opts = parse_args(argv)
    if not shutil.which("git") or not os.path.isdir(".dvc"):
        raise UserError("run the sweep from the project's root (the folder holding dvc.yaml and .dvc/)")
    sweep(opts)


if __name__ == "__main__":
    main()
