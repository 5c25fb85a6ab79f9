"""Where a sweep's runs execute. Each engine schedules the tasks its own way and says how each ended; the
sweep neither queues nor balances work itself.

    local  this machine: one run per GPU (CUDA_VISIBLE_DEVICES), --runs-per-gpu of them on each, or, with no
           GPU, cores / engine.threads runs at once (--jobs overrides); concurrent.futures starts them
    slurm  a SLURM job array, one task per run (sbatch; squeue to follow it; scancel on Ctrl-C)
    ray    Ray tasks (num_gpus, num_cpus per run) on a running cluster (--address) or a local one

A task that fails other than by bad input (exit 2) or is lost with its node is run again, up to --retries times;
the train stage resumes it from its checkpoint. Every task runs `python -m thesislab.sweep.worker`, which records
its state for the progress board.
"""

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from thesislab.errors import EXIT_USER_ERROR, UserError
from thesislab.parallel import PARENT
from thesislab.sweep.plan import STATE
from thesislab.sweep.worker import LOST, WHERE, describe_exit, read_status


def worker_cmd(task) -> list:
    return [sys.executable, "-m", "thesislab.sweep.worker", str(task.status), str(task.log), "--", task.cmd]


def retryable(rc) -> bool:
    """Bad params or data (exit 2) fail the same way every time; anything else (a kill, a crash, a lost node)
    may not."""
    return rc not in (0, EXIT_USER_ERROR)


class Local:
    name = "local"

    def __init__(self, opts, env):
        self.opts, self.env = opts, env
        self.procs = {}
        self.lock = threading.Lock()  # procs and cancelled change together: no run starts after a cancel
        self.cancelled = threading.Event()
        self.slots = self._slots()

    def _slots(self):
        """One environment per run that may run at once: a GPU each (or a share of one), else a share of cores."""
        gpus = self.env.gpus
        if gpus:
            slots = [{"CUDA_VISIBLE_DEVICES": str(g)} for g in gpus for _ in range(self.opts.runs_per_gpu)]
        else:
            slots = [{"CUDA_VISIBLE_DEVICES": ""}] * max(1, cores() // self.env.threads)
        if self.opts.jobs:
            slots = (slots * self.opts.jobs)[: self.opts.jobs]
        return slots

    def describe(self):
        kind = f"{len(self.env.gpus)} GPUs x {self.opts.runs_per_gpu}" if self.env.gpus else \
            f"{cores()} cores / {self.env.threads} threads a run"
        return f"local: {len(self.slots)} runs at once ({kind}; --jobs to change)"

    def run(self, tasks, board, retries) -> dict:
        free = queue.Queue()
        for slot in self.slots:
            free.put(slot)
        with ThreadPoolExecutor(len(self.slots)) as pool:
            futures = {t.name: pool.submit(self._one, t, free, board, retries) for t in tasks}
        return {name: f.result() for name, f in futures.items()}

    def _one(self, task, free, board, retries):
        slot = free.get()
        try:
            for attempt in range(retries + 1):
                with self.lock:
                    if self.cancelled.is_set():
                        return 130
                    proc = subprocess.Popen(worker_cmd(task), env={**self.env.vars, **slot, PARENT: str(os.getpid())},
                                            start_new_session=True,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    self.procs[task.name] = proc
                rc = proc.wait()
                if not retryable(rc) or self.cancelled.is_set():
                    return rc
                if attempt < retries:
                    board.note(task, f"{describe_exit(rc)}: started again, resuming from its checkpoint")
            return rc
        finally:
            free.put(slot)

    def cancel(self):
        """Ctrl-C: stop every run cleanly (SIGINT, as a terminal would), then by force after 20 s."""
        with self.lock:
            self.cancelled.set()
            live = [p for p in self.procs.values() if p.poll() is None]
        for p in live:
            _signal_group(p, signal.SIGINT)
        deadline = time.time() + 20
        for p in live:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                _signal_group(p, signal.SIGKILL)


def cores() -> int:
    """CPUs this process may use (its affinity where the OS has one, as under SLURM or taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def _signal_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def check_local(opts, env):
    if opts.runs_per_gpu < 1 or (opts.jobs is not None and opts.jobs < 1):
        raise UserError("--runs-per-gpu and --jobs: must be at least 1")
    if opts.gpus_per_run > 1:
        raise UserError("--gpus-per-run: the local engine gives each run one GPU; for several GPUs a run, set "
                        "engine.nproc (DistributedDataParallel) and run the stages with dvc repro")


# --- SLURM -----------------------------------------------------------------------------------------------------

SBATCH_SCRIPT = """#!/bin/bash
# One train stage per array task: line $SLURM_ARRAY_TASK_ID + 1 of the task list. Written by thesislab.sweep.
#SBATCH --job-name={job_name}
#SBATCH --output={state}/slurm/%A_%a.out
#SBATCH --cpus-per-task={cpus}
#SBATCH --requeue
{extra}
cd "{root}"
line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "{tasks}")
name=${{line%%$'\\t'*}}
exec "{python}" -m thesislab.sweep.worker "{state}/runs/$name.json" "{state}/logs/$name.log" -- "${{line#*$'\\t'}}"
"""


class Slurm:
    """sbatch --array over the stale runs; squeue says which are queued or running; each task's status file says
    how it ended. A task that vanishes from squeue without one (node lost, killed) is submitted again."""

    name = "slurm"

    def __init__(self, opts, env):
        self.opts, self.env = opts, env
        self.jobs = []
        self.cancelled = threading.Event()

    def describe(self):
        limit = f", at most {self.opts.max_parallel} at once" if self.opts.max_parallel else ""
        part = self.opts.partition or "the default partition"
        return f"slurm: a job array on {part}, {self.opts.gpus_per_run} GPUs and {self.env.threads} CPUs a run{limit}"

    def _submit(self, tasks):
        state = Path.cwd() / STATE
        (state / "slurm").mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{len(self.jobs)}"
        listing = state / "slurm" / f"tasks-{stamp}.tsv"
        listing.write_text("".join(f"{t.name}\t{t.cmd}\n" for t in tasks))
        extra = []
        if self.opts.partition:
            extra.append(f"#SBATCH --partition={self.opts.partition}")
        if self.opts.gpus_per_run:
            extra.append(f"#SBATCH --gres=gpu:{self.opts.gpus_per_run}")
        if self.opts.time:
            extra.append(f"#SBATCH --time={self.opts.time}")
        extra += [f"#SBATCH {a}" for a in self.opts.sbatch_arg or ()]
        script = state / "slurm" / f"job-{stamp}.sh"
        script.write_text(SBATCH_SCRIPT.format(job_name="thesislab-sweep", state=state, cpus=self.env.threads,
                                               extra="\n".join(extra), root=Path.cwd(), tasks=listing,
                                               python=sys.executable))
        array = f"0-{len(tasks) - 1}" + (f"%{self.opts.max_parallel}" if self.opts.max_parallel else "")
        env = self.env.vars if self.opts.gpus_per_run else {**self.env.vars, "CUDA_VISIBLE_DEVICES": ""}
        out = subprocess.run(["sbatch", "--parsable", f"--array={array}", str(script)], env=env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise UserError(f"sbatch refused the job array: {(out.stderr or out.stdout).strip().splitlines()[-1]}")
        job = out.stdout.strip().split(";")[0]
        self.jobs.append(job)
        return job

    def _in_queue(self, job):
        """{array index: state} of the job's tasks still queued or running; None when squeue did not answer (a
        busy controller): not the same as an empty queue, where a task that left without a status is lost."""
        try:
            out = subprocess.run(["squeue", "-h", "-r", "-j", job, "-o", "%K %T"], capture_output=True, text=True,
                                 timeout=60)
        except subprocess.TimeoutExpired:
            return None
        if out.returncode != 0:
            return None
        found = {}
        for line in out.stdout.splitlines():
            index, _, state = line.strip().partition(" ")
            if index.isdigit():
                found[int(index)] = state
        return found

    def run(self, tasks, board, retries) -> dict:
        outcome, tries = {}, {t.name: 0 for t in tasks}
        pending = list(tasks)
        try:
            while pending and not self.cancelled.is_set():
                job = self._submit(pending)
                for i, t in enumerate(pending):
                    tries[t.name] += 1
                    board.note(t, f"job {job}_{i}")
                pending = self._follow(job, pending, outcome, board, tries, retries)
        except KeyboardInterrupt:
            self.cancel()
            raise
        return outcome

    def _follow(self, job, batch, outcome, board, tries, retries) -> list:
        """Wait until none of the job's tasks is queued or running; return the tasks to submit again."""
        time.sleep(1)
        while (queued := self._in_queue(job)) is None or queued:
            if self.cancelled.is_set():
                return []
            time.sleep(2)
        again = []
        for t in batch:
            status = read_status(t.status)
            rc = status.get("rc") if status.get("state") in ("done", "failed") else None
            if rc is None:
                rc = LOST  # left the queue without finishing: cancelled, timed out or its node lost
            if retryable(rc) and tries[t.name] <= retries:
                board.note(t, f"{describe_exit(rc)}: submitted again, resuming from its checkpoint")
                again.append(t)
            else:
                outcome[t.name] = rc
        return again

    def cancel(self):
        self.cancelled.set()
        for job in self.jobs:
            subprocess.run(["scancel", job], capture_output=True)


def check_slurm(opts, env):
    for tool in ("sbatch", "squeue", "scancel", "sinfo"):
        if not shutil.which(tool):
            raise UserError(f"--engine slurm: `{tool}` not found on PATH: run the sweep on a SLURM login node")
    cmd = ["sinfo", "-h", "-o", "%G"] + (["-p", opts.partition] if opts.partition else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        what = f"partition {opts.partition!r}" if opts.partition else "any partition"
        raise UserError(f"--engine slurm: sinfo finds no nodes in {what} ({(out.stderr or 'no output').strip()})")
    most = max(_gres_gpus(g) for g in out.stdout.split())
    if opts.gpus_per_run > most:
        raise UserError(f"--gpus-per-run {opts.gpus_per_run}: the largest node has {most} GPUs")


def _gres_gpus(gres) -> int:
    """GPUs in a sinfo %G field such as gpu:8, gpu:a100:4(S:0-1) or (null)."""
    total = 0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu" and parts[-1].isdigit():
            total += int(parts[-1])
    return total


# --- Ray -------------------------------------------------------------------------------------------------------


def _ray_task(argv, env, cwd):
    """Runs on a Ray worker: the worker command, with the GPUs Ray assigned this task visible to it."""
    import subprocess as sp

    import ray

    node = ray.get_runtime_context().get_node_id()[:8]
    env = {**env, "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in ray.get_gpu_ids()), WHERE: f"ray node {node}"}
    # The worker command ends with this Ray worker (it sets PR_SET_PDEATHSIG): a forced cancel leaves no run.
    rc = sp.call(argv, env={**env, PARENT: str(os.getpid())}, cwd=cwd, stdout=sp.DEVNULL, stderr=sp.DEVNULL)
    if retryable(rc):
        raise RuntimeError(f"exit {rc}")  # Ray retries an exception (retry_exceptions); exit 0 and 2 are final
    return rc


class Ray:
    """One Ray task per run, asking for --gpus-per-run GPUs (a fraction with --runs-per-gpu) and engine.threads
    CPUs; Ray places them, sets CUDA_VISIBLE_DEVICES and retries failed ones."""

    name = "ray"

    def __init__(self, opts, env):
        import ray

        self.ray, self.opts, self.env = ray, opts, env
        self.refs = {}

    def describe(self):
        res = self.ray.cluster_resources()
        return (f"ray: {int(res.get('CPU', 0))} CPUs, {res.get('GPU', 0):g} GPUs in {len(self._nodes())} nodes; "
                f"{self._gpus():g} GPUs and {self.env.threads} CPUs a run")

    def _nodes(self):
        return [n for n in self.ray.nodes() if n.get("Alive")]

    def _gpus(self):
        return self.opts.gpus_per_run / self.opts.runs_per_gpu if self.opts.gpus_per_run else 0

    def run(self, tasks, board, retries) -> dict:
        remote = self.ray.remote(_ray_task).options(num_cpus=self.env.threads, num_gpus=self._gpus(),
                                                   max_retries=retries, retry_exceptions=True)
        cwd = str(Path.cwd())
        self.refs = {t.name: remote.remote(worker_cmd(t), self.env.vars, cwd) for t in tasks}
        outcome = {}
        try:
            for name, ref in self.refs.items():
                try:
                    outcome[name] = self.ray.get(ref)
                except self.ray.exceptions.RayError as err:
                    outcome[name] = read_status(next(t for t in tasks if t.name == name).status).get("rc", LOST)
                    board.note(next(t for t in tasks if t.name == name), f"failed: {str(err).splitlines()[0][:80]}")
        except KeyboardInterrupt:
            self.cancel()
            raise
        return outcome

    def cancel(self):
        for ref in self.refs.values():
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # already finished, or the cluster is gone: nothing left to stop
                pass


def connect_ray(opts, env):
    """Check and join the cluster before any work: Ray installed, the address answering, a node big enough."""
    try:
        import ray
    except ImportError:
        raise UserError("--engine ray: Ray is not installed here; pip install -e '.[ray]' (on every node)") from None
    if opts.address and opts.address != "auto":
        _check_answers(opts.address)
    ray.init(address=opts.address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             runtime_env={"env_vars": {"PYTHONPATH": str(Path.cwd())}})
    most = max((n.get("Resources", {}).get("GPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
    if opts.gpus_per_run > most:
        raise UserError(f"--gpus-per-run {opts.gpus_per_run}: the cluster's largest node has {most:g} GPUs")


def _check_answers(address):
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as err:
        raise UserError(f"--address {address}: no Ray cluster answers there ({err})") from None
