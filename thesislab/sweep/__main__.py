"""python -m thesislab.sweep: train every stale (schedule, seed) run at once, record them in DVC, compare.

    python -m thesislab.sweep                              # this machine: every GPU, or cores / engine.threads
    python -m thesislab.sweep -S lr=0.02 -n lr-0.02        # a named experiment, like dvc exp run -n -S
    python -m thesislab.sweep --engine slurm --partition gpu --gpus-per-run 1 --time 2:00:00
    python -m thesislab.sweep --engine ray --address HEAD:6379 --gpus-per-run 1

Steps: apply -S to params.yaml; check params and the engine (one line each, before any work); run the stages
before training (dvc repro); run every stale train stage's own command through the engine; `dvc commit` each
finished one (dvc.lock as a serial `dvc repro` writes it); then `dvc repro` runs the comparison. A run that did not
finish is named, the comparison is left as it was (exit 2), and rerunning the sweep trains only what is missing.

With a sequential design (compare.sequential.max_seeds), the sweep goes on while the comparison says "continue":
it sets `seeds` to the design's next look (as -S would), trains that batch, compares again, until a decision or
the budget's end. Stopped between batches or in one, it resumes at the look the record says is next.
"""

import argparse
import fcntl
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field

from thesislab import config
from thesislab.comparison import designs, looks
from thesislab.reproduce import judge_recorded
from thesislab.errors import UserError, stage_main, termination_as_interrupt
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
    ap.add_argument("--pack", type=int, metavar="N",
                    help="train up to N runs as one computation in one process (1: each alone; default: on a GPU as "
                         "many as fit its memory, on the CPU 1, where packing measured no faster: docs/sweep.md)")
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
        gpus = visible_gpus(torch.cuda.device_count()) if device == "cuda" else []
    else:
        asked = cfg.engine.device
        device = asked if asked in ("cpu", "cuda") else ("cuda" if opts.gpus_per_run else "cpu")
        gpus = []
    venv_bin = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           runtime.EXPECT_TORCH: torch.__version__, runtime.EXPECT_DEVICE: device}
    return SweepEnv(threads, device, gpus, env)


def visible_gpus(count) -> list:
    """The GPUs this process was given, as CUDA_VISIBLE_DEVICES names them (indices or MIG/GPU UUIDs): a run
    on the first gets the first entry, not physical GPU 0."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is None:
        return [str(i) for i in range(count)]
    return [g.strip() for g in given.split(",") if g.strip()][:count]


def check_options(opts, cfg):
    if opts.retries < 0:
        raise UserError("--retries: must be 0 or more")
    if opts.pack is not None and opts.pack < 1:
        raise UserError("--pack: must be at least 1 (1 trains each run alone)")
    if opts.gpus_per_run is None:
        opts.gpus_per_run = 1 if cfg.engine.device == "cuda" and opts.engine != "local" else 0
    if opts.gpus_per_run < 0 or (opts.max_parallel is not None and opts.max_parallel < 1):
        raise UserError("--gpus-per-run must be 0 or more, --max-parallel at least 1")
    if opts.engine != "local" and cfg.engine.device == "cuda" and opts.gpus_per_run == 0:
        raise UserError("--gpus-per-run 0 with engine.device: cuda: the runs would get no GPU; ask for one or more")
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
    cfg = plan.params_with(opts.set_param)  # params.yaml as -S would leave it, checked; not written yet
    check_options(opts, cfg)
    designs.check_file(cfg, plan.COMPARISON)  # seeds that are not the design's next look: refused now
    env = sweep_env(cfg, opts)
    engine = make_engine(opts, env)
    experiment = bool(opts.name or opts.set_param)
    if experiment:
        plan.check_git_identity()
        plan.check_experiment_name(opts.name)
    plan.set_params(opts.set_param)
    upstream = plan.upstream_stages()
    if upstream:
        plan.dvc("repro", *upstream)
    pull_from_remote()
    if experiment and plan.missing_cached_outputs():
        raise UserError("this workspace lacks the model files of its committed runs (a fresh clone: DVC's cache "
                        "is not in git), which an experiment must hold; `git checkout params.yaml && make run` trains "
                        "them again (bit for bit on x86-64 with AVX2; or `dvc pull` them, if you have set a DVC "
                        "remote), then run this again")
    batch(engine, cfg, opts, rebuild=not experiment)
    while (record := next_look(cfg)) is not None:
        seeds = record["next_seeds"]
        if set(seeds) == set(cfg.seeds):  # the comparison of these seeds did not make its look: never loop on it
            raise UserError(f"{plan.COMPARISON}: the sequential design's look at {len(seeds)} seeds was not recorded")
        print(f"sweep: look {record['look']} of {record['of']} says continue: look {record['look'] + 1} needs "
              f"{len(seeds)} seeds; training the {len(seeds) - record['n']} new ones")
        plan.set_params([f"seeds={json.dumps(seeds, separators=(',', ':'))}"])
        cfg = config.load()
        batch(engine, cfg, opts)
    absent = plan.missing_cached_outputs()
    if absent:
        print(f"note: {len(absent)} runs are up to date but their model files are not here ({absent[0]}, ...): "
              "DVC's cache is not in git; `make run` trains them again (bit for bit on x86-64 with AVX2; or `dvc "
              "pull` brings them, if you have set a DVC remote)")
    if experiment:
        plan.save_experiment(opts.name)
    lock.close()


def pull_from_remote():
    """A clone whose project sets a DVC remote gets its committed runs' model files from there (`dvc pull`), as DVC
    users expect, instead of training them again; a remote that does not answer leaves them to be trained."""
    absent = plan.missing_cached_outputs()
    remote = plan.default_remote() if absent else None
    if not remote:
        return
    print(f"sweep: {len(absent)} committed runs' model files are not here: pulling them from the DVC remote "
          f"'{remote}'")
    failed = plan.pull(absent)
    if failed:
        left = len(plan.missing_cached_outputs())
        print(f"sweep: the DVC remote '{remote}' did not give {left} of them ({failed}); training those again")


def batch(engine, cfg, opts, rebuild=False):
    """Train the stale runs of params.yaml's seeds, then compare. rebuild: also train again the committed runs whose
    model files are missing (a fresh clone), each checked against the model file dvc.lock records."""
    tasks = plan.stale_tasks(cfg.epochs)
    again = plan.rebuild_tasks(cfg.epochs) if rebuild else []
    if again:
        print(f"sweep: {len(again)} committed runs have no model file here: training them again, each to be checked "
              "against the model dvc.lock records")
    if tasks or again:
        verdicts = train(engine, tasks + again, opts, cfg)
        for v in verdicts:
            # `git diff HEAD`, not `git diff`: DVC stages the dvc.lock it rewrites (core.autostage), so a plain
            # diff would show the run folder's timings and hide the new model md5 (docs/reliability.md).
            print(f"{plan.TRAIN}@{v.name}: {v.text}" +
                  ("" if v.identical else "; this machine's result is recorded in its place (git diff HEAD shows "
                                          "it, dvc.lock's new md5 included)"))
            shutil.rmtree(plan.REBUILD / v.name, ignore_errors=True)
    else:
        print("sweep: every train stage is up to date")
    # --allow-missing: a committed run whose model file is only absent (a fresh clone) is not trained again.
    plan.dvc("repro", "--allow-missing")


def next_look(cfg):
    """The sequential design's record when it says "continue" for these params, else None."""
    if cfg.compare.sequential.max_seeds is None:
        return None
    record = looks.recorded(looks.read(plan.COMPARISON), cfg)
    return record if record is not None and record["status"] == "continue" else None


RECORD_EVERY = 5.0  # seconds between `dvc commit`s of runs that finished meanwhile (each costs a DVC start-up)


def train(engine, tasks, opts, cfg):
    """Run the tasks through the engine (in a thread; packed where that pays) while this thread records each
    finished run in DVC as it finishes: a sweep that dies later, however, keeps what finished."""
    units = plan.packs(tasks, *pack_size(opts, engine.env, cfg, len(tasks)))
    packed = [u for u in units if isinstance(u, plan.Pack)]
    how = (f", as {len(packed)} pack{'s' if len(packed) > 1 else ''} of up to {max(len(p.tasks) for p in packed)} "
           "(one computation each)") if packed else ""
    print(f"sweep: {len(tasks)} runs to train{how}; {engine.describe()}")
    fresh_state(tasks + packed)
    recorder = Recorder(tasks)
    result = {}

    def run_engine():
        try:
            outcome = engine.run(units, board, opts.retries)
            # A pack's outcome is each of its runs'.
            result["outcome"] = {t.name: outcome.get(u.name) for u in units for t in plan.members(u)}
        except BaseException as err:  # re-raised below, in the main thread
            result["error"] = err

    with termination_as_interrupt(), Board(tasks) as board:
        worker = threading.Thread(target=run_engine, daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(RECORD_EVERY)
                recorder.record_finished()
        except KeyboardInterrupt:
            engine.cancel()
            worker.join(120)
            recorder.record_finished()
            print(f"interrupted: the engine's runs are cancelled; {len(recorder.recorded)} finished runs are "
                  "recorded, the others resume from their checkpoints when the sweep is run again "
                  "(with the same -S and -n)", file=sys.stderr)
            sys.exit(130)
    recorder.record_finished()
    if "error" in result:
        raise result["error"]
    recorder.refuse_changed()
    outcome = result["outcome"]
    missing = [t for t in tasks if t.name not in recorder.recorded]
    if missing:
        names = ", ".join(f"{t.stage} ({describe_exit(outcome.get(t.name))}; {_log_of(t)})" for t in missing)
        raise UserError(f"{_full_disk()}{len(missing)} of {len(tasks)} runs did not finish: {names}; the comparison was not "
                        "updated; run the sweep again (with the same -S and -n) to train only those")
    return [recorder.verdicts[t.name] for t in tasks if t.name in recorder.verdicts]


def pack_size(opts, env, cfg, runs) -> tuple:
    """(runs a pack, the pack's width on CUDA or None): --pack, else on a GPU as many as fit its memory, on the
    CPU one (packing measured no faster there: each run's arithmetic is the same work, BENCHMARKS.md). A net that
    packing does not cover trains alone, and the sweep says why."""
    from thesislab.train import array

    size = opts.pack if opts.pack is not None else (
        array.runs_that_fit(cfg, runs) if env.device == "cuda" else 1)
    if size > 1 and (why := array.why_alone(cfg)):
        print(f"sweep: each run trains alone: {why}")
        return 1, None
    return size, (size if env.device == "cuda" and size > 1 else None)


LOW_DISK = 64 * 2**20  # bytes free under .sweep/ below which a failed run is put down to the disk


def _log_of(task) -> str:
    return f"log {task.log}" if task.log.exists() else f"no log: {task.log} was never written"


def _full_disk() -> str:
    """Where runs failed for want of space, the one line says that first (their logs may not exist)."""
    try:
        free = shutil.disk_usage(plan.STATE).free
    except OSError:
        return ""
    return f"no space left on the disk of {plan.STATE}/ ({free / 2**20:.0f} MiB free): " if free < LOW_DISK else ""


class Recorder:
    """Records finished runs with `dvc commit`, each once, after checking that what it was trained from is
    still what the workspace holds."""

    def __init__(self, tasks):
        self.tasks, self.recorded, self.changed = tasks, set(), []
        self.verdicts = {}  # committed runs trained again: how each compared with its committed model

    def record_finished(self):
        done = [t for t in self.tasks if t.name not in self.recorded and t not in self.changed
                and read_status(t.status).get("state") == "done"]
        if not done:
            return
        same, changed = plan.unchanged(done)
        for task in same:
            if task.committed:
                self.verdicts[task.name] = plan.adopt(task)
            elif task.recorded_md5:
                self.verdicts[task.name] = judge_recorded(task.name, task.model, task.recorded_md5)
        plan.record(same)
        self.recorded |= {t.name for t in same}
        self.changed += changed

    def refuse_changed(self):
        if self.changed:
            raise UserError(f"params, code or data changed while {', '.join(t.stage for t in self.changed)} "
                            "trained: their results are not recorded; run the sweep again")


@stage_main
def main(argv=None):
    opts = parse_args(argv)
    if not shutil.which("git") or not os.path.isdir(".dvc"):
        raise UserError("run the sweep from the project's root (the folder holding dvc.yaml and .dvc/)")
    sweep(opts)


if __name__ == "__main__":
    main()
