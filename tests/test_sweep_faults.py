"""The sweep under faults, on the local engine: a run killed midway, a run that never finishes, Ctrl-C, and a
second sweep started beside the first. Every result is checked against a serial `dvc repro` of the same params.

Marked `engines` (they interrupt real sweeps, about a minute): `make test-slow` and CI run them.
"""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from conftest import SLOW, make_project
from test_sweep import assert_lands_as, sweep

pytestmark = pytest.mark.engines

# Only a hung process takes this long. The waits below end on events (a process starts or ends, a file appears),
# and fail at once when the sweep they wait on has ended: a loaded machine makes them slower, never wrong.
HANG = 1800


@pytest.fixture(autouse=True)
def nothing_left_running(tmp_path):
    """A test that fails midway must not leave its sweep training: it would load the machine for every test after."""
    yield
    for p in psutil.process_iter(["cwd"]):
        if (p.info["cwd"] or "").startswith(str(tmp_path)):
            try:
                p.kill()
            except psutil.Error:
                pass


def wait_for(condition, what, child=None):
    """Poll condition() until it holds (returns its value); fail when `child` ended first, or after HANG."""
    deadline = time.time() + HANG
    while not (held := condition()):
        if child is not None and child.poll() is not None and not (held := condition()):
            pytest.fail(f"the sweep ended (exit {child.returncode}) before {what}: "
                        f"{child.stderr.read() if child.stderr else ''}")
        assert time.time() < deadline, f"nothing happened in {HANG} s: {what}"
        time.sleep(0.05)
    return held


def start_sweep(project, *args):
    return subprocess.Popen([sys.executable, "-m", "thesislab.sweep", *args], cwd=project.path, env=project.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def train_processes(project, schedule=None):
    """The train stages running in this project (found by their working directory and command line)."""
    found = []
    for p in psutil.process_iter(["cmdline", "cwd"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if p.info["cwd"] == str(project.path) and "-m stages.train" in cmd and "thesislab.sweep.worker" not in cmd:
            if schedule is None or f"--schedule {schedule} " in cmd:
                found.append(p)
    return found


def wait_for_checkpoint(project, name, child=None):
    ckpt = project.path / "checkpoints" / name / "last.pt"
    wait_for(ckpt.exists, f"a checkpoint of {name}", child)


def kill_run(project, schedule, child=None):
    """SIGKILL a run's train process once it has saved a checkpoint of its own: a crash, an OOM kill, a lost
    node, at a moment when there is something to resume."""
    ckpt = project.path / "checkpoints" / f"{schedule}-0" / "last.pt"

    def running_with_checkpoint():
        procs = train_processes(project, schedule)
        try:
            return procs if procs and ckpt.stat().st_mtime > procs[0].create_time() else None
        except (OSError, psutil.Error):  # no checkpoint yet, or the process just ended
            return None

    procs = wait_for(running_with_checkpoint, f"a running {schedule}-0 with a fresh checkpoint", child)
    for p in procs:
        p.kill()


def test_a_killed_run_is_missing_then_resumed_and_a_retried_one_lands_the_same(slow_serial, tmp_path):
    project = make_project(tmp_path / "proj", **SLOW)
    # No retries: the killed run is missing, the comparison is not written, the other run is recorded.
    child = start_sweep(project, "--jobs", "2", "--retries", "0")
    kill_run(project, "static", child)
    out, err = child.communicate(timeout=HANG)
    assert child.returncode == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: 1 of 2 runs did not finish: train@static-0 (killed by SIGKILL; log") and "run the sweep again" in last
    assert not (project.path / "metrics" / "comparison.json").exists()
    status = project.dvc("status", "--json").stdout
    assert "train@static-0" in status and "train@dynamic-0" not in status  # dynamic-0 is in dvc.lock
    assert (project.path / "checkpoints" / "static-0" / "last.pt").exists()

    # Again, with a retry: only the missing run trains, resumed from its checkpoint; killed once more, it is
    # started a second time and resumes again; the result is the uninterrupted serial run's, byte for byte.
    child = start_sweep(project, "--retries", "1")
    kill_run(project, "static", child)
    out, err = child.communicate(timeout=HANG)
    assert child.returncode == 0, err
    assert "sweep: 1 runs to train" in out and "Running stage 'train@" not in out
    log = (project.path / ".sweep" / "logs" / "static-0.log").read_text()
    assert log.count("resuming from checkpoints/static-0/last.pt") == 2, log
    assert json.loads((project.path / ".sweep" / "runs" / "static-0.json").read_text())["attempt"] == 2
    assert_lands_as(project, slow_serial)


def test_ctrl_c_cancels_every_run_and_a_second_sweep_is_refused(slow_serial, tmp_path):
    project = make_project(tmp_path / "proj", **SLOW)
    child = start_sweep(project, "--jobs", "2")
    wait_for_checkpoint(project, "static-0", child)
    second = sweep(project, check=False)
    assert second.returncode == 2 and "another sweep is running in this project" in second.stderr
    # The refused sweep took seconds, in which a run may have finished: Ctrl-C while one is still training,
    # with a checkpoint to resume from.
    checkpoint = {run: project.path / "checkpoints" / run / "last.pt" for run in ("static-0", "dynamic-0")}
    training = wait_for(lambda: [run for run in checkpoint if checkpoint[run].exists() and
                                 train_processes(project, run.split("-")[0])], "a run training with a checkpoint",
                        child)
    child.send_signal(signal.SIGINT)  # what Ctrl-C sends the sweep
    out, err = child.communicate(timeout=HANG)
    assert child.returncode == 130, err
    assert "interrupted: the engine's runs are cancelled" in err
    assert train_processes(project) == []  # no run left behind
    cancelled = [run for run in training if checkpoint[run].exists()]  # the rest finished as Ctrl-C came
    assert cancelled
    assert not (project.path / "metrics" / "comparison.json").exists()
    # The next sweep resumes the cancelled runs and lands as the serial run did.
    out = sweep(project).stdout
    assert "Running stage 'train@" not in out
    for run in cancelled:
        assert "resuming from" in (project.path / ".sweep" / "logs" / f"{run}.log").read_text()
    assert_lands_as(project, slow_serial)
    assert os.listdir(project.path / "checkpoints") == []


def test_a_sweep_killed_keeps_the_runs_that_finished_and_leaves_none_training(slow_serial, tmp_path):
    """SIGTERM (a scheduler's limit, `kill`) ends the sweep as Ctrl-C does; every run that finished before was
    already recorded in dvc.lock as it finished, so the next sweep trains only the rest."""
    import yaml

    project = make_project(tmp_path / "proj", **SLOW)
    child = start_sweep(project, "--jobs", "1")
    lock = project.path / "dvc.lock"

    def recorded():
        try:  # DVC rewrites dvc.lock in place: a read can catch it half-written
            return "train@static-0" in (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        except (OSError, yaml.YAMLError, AttributeError):
            return False

    wait_for(recorded, "static-0 was recorded in dvc.lock", child)
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=HANG)
    assert child.returncode == 130, err
    assert train_processes(project) == []
    out = sweep(project).stdout
    assert "sweep: 1 runs to train" in out
    assert_lands_as(project, slow_serial)


@pytest.mark.parametrize("shell", ["dash", "bash"])
def test_kill_9_of_the_sweep_leaves_no_run_training(tmp_path, shell):
    """SIGKILL gives the sweep no chance to cancel anything: each run must end with the process that started it
    (die-with-parent, on the run itself: no shell sits between a worker and its run), whichever shell started
    the sweep (dash keeps itself as the parent of a command; bash replaces itself)."""
    project = make_project(tmp_path / "proj", **SLOW)
    child = subprocess.Popen([shell, "-c", f"{sys.executable} -m thesislab.sweep --jobs 2"], cwd=project.path,
                             env=project.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_checkpoint(project, "static-0", child)
    sweeps = [p for p in psutil.Process(child.pid).children(recursive=True) + [psutil.Process(child.pid)]
              if p.cmdline()[1:3] == ["-m", "thesislab.sweep"]]  # the sweep itself, not dash -c "...", not a worker
    assert len(sweeps) == 1
    training = train_processes(project)
    assert training
    sweeps[0].kill()
    gone, alive = psutil.wait_procs(training, timeout=HANG)  # returns as soon as all have ended
    assert alive == []
    child.wait(timeout=60)
    assert train_processes(project) == []


def test_a_packed_sweep_interrupted_resumes_every_run_to_the_uninterrupted_bytes(slow_serial, tmp_path):
    """A pack of both runs: Ctrl-C of the sweep, then kill -9 of the pack's process (no retries: both runs are
    missing), then the sweep again: each run resumes from its own checkpoint and lands as the serial run did."""
    project = make_project(tmp_path / "proj", **SLOW)
    checkpoints = [project.path / "checkpoints" / run / "last.pt" for run in ("static-0", "dynamic-0")]
    child = start_sweep(project, "--pack", "2")
    wait_for(lambda: all(c.exists() for c in checkpoints), "both runs of the pack checkpointed", child)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=HANG)
    assert child.returncode == 130, err
    assert train_processes(project) == []
    child = start_sweep(project, "--pack", "2", "--retries", "0")
    kill_run(project, "static", child)  # the pack's one process: both runs die with it
    out, err = child.communicate(timeout=HANG)
    assert child.returncode == 2, err
    assert "2 of 2 runs did not finish" in err
    out = sweep(project, "--pack", "2").stdout
    assert "as 1 pack of up to 2" in out and "Running stage 'train@" not in out
    for run in ("static-0", "dynamic-0"):
        assert (project.path / ".sweep" / "logs" / f"{run}.log").read_text().count("resuming from") >= 1
    assert_lands_as(project, slow_serial)
