"""The sweep's small decisions, without running one: which GPUs a local run gets, what a silent squeue means."""

import collections
import json
import shutil
import subprocess
import sys

import pytest
import yaml

from thesislab.sweep import __main__ as sweep_main
from thesislab.sweep import engines, plan
from thesislab.sweep.__main__ import visible_gpus
from thesislab.sweep.worker import EXIT_NO_STATE, describe_exit


def test_local_runs_get_the_gpus_this_process_was_given(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_gpus(2) == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert visible_gpus(2) == ["2", "3"]  # not physical 0 and 1, someone else's
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-4f1c, MIG-77aa")
    assert visible_gpus(2) == ["MIG-4f1c", "MIG-77aa"]


def test_a_squeue_that_does_not_answer_is_not_an_empty_queue(monkeypatch):
    """Were it read as empty, every running task would be declared lost and submitted a second time."""
    slurm = engines.Slurm.__new__(engines.Slurm)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "timed out"))
    assert slurm._in_queue("12") is None
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, "0 RUNNING\n3 PENDING\n",
                                                                                         ""))
    assert slurm._in_queue("12") == {0: "RUNNING", 3: "PENDING"}
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, "", ""))
    assert slurm._in_queue("12") == {}


def test_how_a_run_ended_in_words():
    assert describe_exit(0) == "exit 0" and describe_exit(1) == "exit 1"
    assert describe_exit(137) == "killed by SIGKILL" and describe_exit(-15) == "killed by SIGTERM"
    assert describe_exit(engines.LOST).startswith("lost")


def test_gres_gpus_are_read_from_sinfo():
    assert engines._gres_gpus("gpu:8") == 8 and engines._gres_gpus("gpu:a100:4(S:0-1)") == 4
    assert engines._gres_gpus("(null)") == 0 and engines._gres_gpus("gpu:2,gpu:v100:2") == 4


def test_a_worker_that_cannot_write_its_log_says_why_and_exits_74(tmp_path):
    """A full disk under .sweep/ (here: a log whose folder is a file) is one line and its own exit code, which the
    sweep names, instead of "exit 1; log <a file that does not exist>"."""
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the logs folder should be")
    done = subprocess.run([sys.executable, "-m", "thesislab.sweep.worker", str(tmp_path / "status.json"),
                           str(blocker / "static-0.log"), "--", "true"], capture_output=True, text=True)
    assert done.returncode == EXIT_NO_STATE, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and "logs" in done.stderr
    assert describe_exit(EXIT_NO_STATE) == "its worker could not write the run's status or log"


def test_failed_runs_on_a_full_disk_say_no_space_first(monkeypatch, tmp_path):
    Usage = collections.namedtuple("Usage", "total used free")
    monkeypatch.setattr(plan, "STATE", tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 * 2**30, 10 * 2**30 - 2**20, 2**20))
    assert sweep_main._full_disk() == f"no space left on the disk of {tmp_path}/ (1 MiB free): "
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 * 2**30, 2**30, 9 * 2**30))
    assert sweep_main._full_disk() == ""
    task = collections.namedtuple("Task", "log")(tmp_path / "logs" / "static-0.log")
    assert sweep_main._log_of(task) == f"no log: {task.log} was never written"
    task.log.parent.mkdir()
    task.log.write_text("...")
    assert sweep_main._log_of(task) == f"log {task.log}"


def test_a_failed_dvc_commit_says_dvcs_reason(monkeypatch, tmp_path):
    """`dvc commit` beside a `dvc repro` (its lock), or of a stage that is not there: the sweep's one line ends with
    DVC's own reason, not a bare "failed (exit 1)"."""
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q", "--no-scm"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    stage = collections.namedtuple("Task", "stage")("train@static-0")
    try:
        plan.record([stage])
    except plan.UserError as err:
        text = str(err)
    assert text.startswith("dvc commit --force train@static-0 failed (exit 1): ERROR: ") and "\n" not in text, text
    assert "train@static-0" in text.split("ERROR: ", 1)[1]


def test_a_key_params_yaml_lacks_is_unknown_among_other_overrides(tmp_path):
    """Hydra would say "To append to your config use +dynamic.windw=3", which the params check then refuses."""
    from conftest import default_params

    target = tmp_path / "params.yaml"
    target.write_text(yaml.safe_dump(default_params(), sort_keys=False))
    try:
        plan._apply(["lr=0.1", "dynamic.windw=3"], target)
    except plan.UserError as err:
        text = str(err)
    assert text == "-S dynamic.windw=3: unknown key 'dynamic.windw' (known keys here: factor, max_reductions, slope, " \
                   "window)", text


def test_a_command_that_cannot_start_is_127_with_its_reason_in_the_log(tmp_path):
    """Not the status-or-log exit (74): the log was written, and says what could not start."""
    log = tmp_path / "logs" / "static-0.log"
    done = subprocess.run([sys.executable, "-m", "thesislab.sweep.worker", str(tmp_path / "status.json"), str(log),
                           "--", "no-such-program --flag"], capture_output=True, text=True)
    assert done.returncode == 127, done.stderr
    assert "error: cannot start no-such-program: No such file or directory" in log.read_text()
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "failed"


def test_an_experiment_without_a_git_identity_is_refused_before_any_work(tmp_path, monkeypatch):
    """-n saves a git commit: with no name and email configured, one line saying how to set them (DVC would fail
    after training). An address in $EMAIL, which git would use, is not enough: DVC's backend does not read it."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EMAIL", "a@example.com")
    with pytest.raises(plan.UserError) as refused:
        plan.check_git_identity()
    assert str(refused.value) == ("git has no name and email to save the experiment with: git config --global "
                                  "user.name 'Your Name' && git config --global user.email you@example.com")
    subprocess.run(["git", "config", "user.name", "A Student"], check=True)
    with pytest.raises(plan.UserError):
        plan.check_git_identity()  # a name, no email
    subprocess.run(["git", "config", "user.email", "a@example.com"], check=True)
    plan.check_git_identity()  # an identity: nothing to say


# --- packs -------------------------------------------------------------------------------------------------------


def task(name, root="data/raw/speedsigns"):
    schedule, seed = name.rsplit("-", 1)
    cmd = (f"python -m stages.train --schedule {schedule} --seed {seed} --root {root} --pathlist data/pathlist "
           f"--stats metrics/stats.json --cache data/cache --model models/{name}.pt --weights data/weights "
           f"--checkpoints checkpoints/{name} --out metrics/runs/{name} --live metrics/live")
    return plan.Task(name, f"train@{name}", cmd, None, None, None, 3, "key")


def test_runs_pack_by_the_size_asked_and_never_across_data():
    runs = [task(n) for n in ("static-0", "dynamic-0", "static-1", "dynamic-1", "static-2")]
    units = plan.packs(runs, 2)
    assert [[t.name for t in plan.members(u)] for u in units] == [["static-0", "dynamic-0"], ["static-1", "dynamic-1"],
                                                                  ["static-2"]]
    assert isinstance(units[0], plan.Pack) and units[2] is runs[4]  # a run left alone is its own task
    assert units[0].name == "pack-static-0+1" and str(units[0].status) == ".sweep/runs/pack-static-0+1.json"
    assert units[0].cmd.startswith("python -m stages.train --pack 'python -m stages.train --schedule static --seed 0 ")
    assert plan.packs(runs, 1) == runs
    cuda = plan.packs(runs, 2, width=2)
    assert isinstance(cuda[2], plan.Pack) and "--width 2" in cuda[2].cmd  # CUDA pads every pack to its width
    other = [task("static-0"), task("static-1", root="data/raw/cifar10"), task("dynamic-0")]
    assert [[t.name for t in plan.members(u)] for u in plan.packs(other, 4)] == [["static-0", "dynamic-0"],
                                                                                 ["static-1"]]


def test_a_net_packing_does_not_cover_trains_alone_and_the_sweep_says_why(capsys):
    from conftest import tiny_config

    env = collections.namedtuple("Env", "device")
    opts = collections.namedtuple("Opts", "pack")
    assert sweep_main.pack_size(opts(None), env("cpu"), tiny_config(), 6) == (1, None)  # the CPU: no gain measured
    assert sweep_main.pack_size(opts(3), env("cpu"), tiny_config(), 6) == (3, None)
    assert sweep_main.pack_size(opts(3), env("cuda"), tiny_config(), 6) == (3, 3)
    assert sweep_main.pack_size(opts(3), env("cpu"), tiny_config(model="resnet18"), 6) == (1, None)
    assert capsys.readouterr().out == ("sweep: each run trains alone: model resnet18 is a torchvision model, which "
                                       "packing does not cover\n")


FAKE_PACK = """import sys, time
# Prints what a pack prints: lines of each run, and FINISHED for those named in argv[1]; exits argv[2].
for name in sys.argv[1].split(","):
    print(f"{name} epoch   1/3  lr 0.01", flush=True)
    print(f"train@{name}: stopped by max_epochs after 3 epochs", flush=True)
print("data: a line of the whole pack", flush=True)
sys.exit(int(sys.argv[2]))
"""


def test_a_packs_worker_keeps_each_runs_status_and_log_and_retries_only_the_unfinished(tmp_path, monkeypatch):
    from thesislab.sweep import worker

    script = tmp_path / "fake_pack.py"
    script.write_text(FAKE_PACK)
    units = plan.packs([task("static-0"), task("dynamic-0"), task("static-1")], 3)
    status, log = tmp_path / "runs" / "pack.json", tmp_path / "logs" / "pack.log"
    head, runs = worker.pack_runs(units[0].cmd)
    assert head == ["python", "-m", "stages.train", "--pack"] and [n for n, _ in runs] == ["static-0", "dynamic-0",
                                                                                          "static-1"]
    calls, real = [], subprocess.Popen

    def popen(argv, **kw):  # the pack's command, as the worker runs it; a fake that finishes static-0 and static-1
        calls.append(worker.pack_runs(shlex_join(argv)))
        done = "static-0,static-1" if len(calls) == 1 else "dynamic-0"
        return real([sys.executable, str(script), done, "9" if len(calls) == 1 else "0"], **kw)

    def shlex_join(argv):
        import shlex

        return shlex.join(argv)

    monkeypatch.setattr(worker.subprocess, "Popen", popen)
    assert worker.run_pack(str(status), str(log), units[0].cmd) == 9
    state = {n: json.loads((tmp_path / "runs" / f"{n}.json").read_text()) for n in ("static-0", "dynamic-0", "static-1")}
    assert (state["static-0"]["state"], state["static-1"]["state"], state["dynamic-0"]["state"]) == (
        "done", "done", "failed")
    assert state["dynamic-0"]["rc"] == 9 and json.loads(status.read_text())["state"] == "failed"
    own = (tmp_path / "logs" / "static-0.log").read_text()
    assert "static-0 epoch   1/3" in own and "static-1 epoch" not in own and "data: a line of the whole pack" in own
    # Started again (the engine's retry): only the run not done trains, and it counts a second attempt.
    assert worker.run_pack(str(status), str(log), units[0].cmd) == 0
    assert [n for n, _ in calls[1][1]] == ["dynamic-0"]
    again = json.loads((tmp_path / "runs" / "dynamic-0.json").read_text())
    assert again["state"] == "done" and again["attempt"] == 2
