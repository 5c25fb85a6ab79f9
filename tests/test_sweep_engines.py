"""The sweep on real engines: a one-node SLURM cluster (.ci/slurm.sh starts it) and a two-node Ray cluster on
this machine, each checked against a serial `dvc repro` of the same params.

Marked `engines`: `make test-slow` and CI run them. Where SLURM is not running, or Ray is not installed, the
tests say why they are skipped (pytest -ra prints it); CI starts both, so there they run.
"""

import json
import signal
import subprocess
import sys

import pytest
from conftest import SLOW, make_project
from test_sweep import assert_lands_as, lock, run_files, sweep, without_run_folder_hashes
from test_sweep_faults import HANG, kill_run, start_sweep, train_processes, wait_for

pytestmark = pytest.mark.engines


def slurm_up():
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(state in out.stdout for state in ("idle", "mix", "alloc"))


needs_slurm = pytest.mark.skipif(not slurm_up(), reason="no SLURM cluster answers here: `bash .ci/slurm.sh start` "
                                                        "(as root) starts a one-node one")


def our_jobs():
    out = subprocess.run(["squeue", "-h", "-r", "-n", "thesislab-sweep", "-o", "%i"], capture_output=True, text=True)
    return out.stdout.split()


@needs_slurm
def test_slurm_array_lands_as_a_serial_repro_and_a_lost_task_is_submitted_again(slow_serial, tmp_path):
    project = make_project(tmp_path / "proj", **SLOW)
    child = start_sweep(project, "--engine", "slurm", "--time", "10:00")
    kill_run(project, "static", child)  # its node "lost" it: the task leaves the queue without a status
    out, err = child.communicate(timeout=HANG)
    assert child.returncode == 0, err
    assert "slurm: a job array on the default partition" in out
    assert "Running stage 'train@" not in out
    assert_lands_as(project, slow_serial)
    status = json.loads((project.path / ".sweep" / "runs" / "static-0.json").read_text())
    assert status["attempt"] == 2, status
    assert "resuming from checkpoints/static-0/last.pt" in (project.path / ".sweep/logs/static-0.log").read_text()
    assert len(list((project.path / ".sweep" / "slurm").glob("job-*.sh"))) == 2  # the array, then the lost task


@needs_slurm
def test_slurm_trains_a_pack_as_one_task(slow_serial, tmp_path):
    project = make_project(tmp_path / "proj", **SLOW)
    out = sweep(project, "--engine", "slurm", "--time", "10:00", "--pack", "2").stdout
    assert "as 1 pack of up to 2" in out
    tasks = next((project.path / ".sweep" / "slurm").glob("tasks-*.tsv")).read_text().splitlines()
    assert len(tasks) == 1 and tasks[0].startswith("pack-static-0+1\tpython -m stages.train --pack ")
    assert_lands_as(project, slow_serial)


@needs_slurm
def test_slurm_ctrl_c_cancels_the_array(tmp_path):
    project = make_project(tmp_path / "proj", **SLOW)
    child = start_sweep(project, "--engine", "slurm")
    wait_for(lambda: train_processes(project), "a run started", child)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=HANG)
    assert child.returncode == 130, err
    wait_for(lambda: not our_jobs() and not train_processes(project), "scancel emptied the queue and ended the runs")


@needs_slurm
def test_slurm_refuses_more_gpus_than_a_node_has(tmp_path):
    project = make_project(tmp_path / "proj")
    result = sweep(project, "--engine", "slurm", "--gpus-per-run", "1", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --gpus-per-run 1: the largest node has 0 GPUs"


# --- Ray ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    cluster_utils = pytest.importorskip("ray.cluster_utils", reason="Ray is not installed: pip install -e '.[ray]'")
    # Two nodes of one CPU and one (logical) GPU each: two runs at once, one per node, each given a GPU id.
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 1})
    cluster.add_node(num_cpus=1, num_gpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def test_ray_runs_each_on_its_own_gpu_and_retries_a_killed_one(slow_serial, ray_cluster, tmp_path):
    project = make_project(tmp_path / "proj", **SLOW)
    # The GPUs are logical (this machine has none): the runs train on the CPU, as the serial one did.
    child = start_sweep(project, "--engine", "ray", "--address", ray_cluster.address, "--gpus-per-run", "1",
                        "-S", "engine.device=cpu")
    kill_run(project, "static", child)
    out, err = child.communicate(timeout=HANG)
    assert child.returncode == 0, err
    assert "ray: 2 CPUs, 2 GPUs in 2 nodes" in out and "Running stage 'train@" not in out
    where = {n: json.loads((project.path / ".sweep" / "runs" / f"{n}.json").read_text()) for n in
             ("static-0", "dynamic-0")}
    assert all(w["where"].endswith("gpu 0") for w in where.values()), where
    if where["static-0"]["attempt"] == 1:  # only then were both runs sure to be placed at once
        assert where["static-0"]["where"] != where["dynamic-0"]["where"], where
    assert where["static-0"]["attempt"] == 2  # Ray ran the killed task again
    # engine.device: cpu where the serial run has auto (the same computation on a CPU): every result equal.
    ours, theirs = lock(project), lock(slow_serial)
    for stage in ("train@static-0", "train@dynamic-0"):
        a, b = without_run_folder_hashes(ours[stage]), without_run_folder_hashes(theirs[stage])
        a["params"]["params.yaml"].pop("engine"), b["params"]["params.yaml"].pop("engine")
        assert a == b
        name = stage.split("@")[1]
        assert run_files(project, name) == run_files(slow_serial, name)
        assert (project.path / f"models/{name}.pt").read_bytes() == (slow_serial.path / f"models/{name}.pt").read_bytes()
    assert "up to date" in project.dvc("status").stdout


def test_ray_trains_a_pack_as_one_task(slow_serial, ray_cluster, tmp_path):
    project = make_project(tmp_path / "proj", **SLOW)
    out = sweep(project, "--engine", "ray", "--address", ray_cluster.address, "--pack", "2").stdout
    assert "as 1 pack of up to 2" in out
    where = json.loads((project.path / ".sweep" / "runs" / "pack-static-0+1.json").read_text())["where"]
    assert where.startswith("ray node ")
    assert_lands_as(project, slow_serial)


def test_ray_options_that_cannot_work_are_one_line(tmp_path):
    project = make_project(tmp_path / "proj")
    result = sweep(project, "--engine", "ray", "--address", "127.0.0.1:1", check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error: --address 127.0.0.1:1: no Ray cluster answers there")
    no_ray = project.run(sys.executable, "-c", "import sys; sys.modules['ray'] = None; sys.argv[1:] = "
                         "['--engine', 'ray']; import runpy; runpy.run_module('thesislab.sweep', run_name='__main__')",
                         check=False)
    assert no_ray.returncode == 2
    assert no_ray.stderr.strip() == ("error: --engine ray: Ray is not installed here; pip install -e '.[ray]' "
                                     "(on every node)")
