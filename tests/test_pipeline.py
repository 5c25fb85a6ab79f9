"""End-to-end: the project copied into a throwaway git repo, driven with the dvc commands users type.

Runs in order on one tiny project (module scope): repro, no-op repro, a run watched live through DVCLive,
rejected experiments that must leave every result intact, interruption and resume, a forced rerun, and the
whole pipeline again from clean. Experiments built on a baseline are in test_experiments.py.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from conftest import make_project, ran

from thesislab import files

# Slow as a whole (its tests share one project, each step a DVC run): make test-slow and CI run it after make test.
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DATA_STAGES = ["download", "pathlist", "stats"]
BASELINE = {}  # the first run's outputs, for the from-clean comparison at the end


def run_metrics(project, name):
    return json.loads(project.read(f"metrics/runs/{name}/metrics.json"))


def without_timing(d):
    return {k: v for k, v in d.items() if k not in files.TIMING_KEYS}


def outputs(project):
    """Every pipeline output file's bytes, by path (the DVC cache and checkpoints aside)."""
    found = {}
    for top in ("metrics", "plots", "models", "data/pathlist"):
        for p in sorted((project.path / top).rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                found[str(p.relative_to(project.path))] = p.read_bytes()
    return found


@pytest.fixture(scope="module")
def proj(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("e2e") / "proj")


def test_repro_runs_every_stage_and_writes_every_output(proj):
    assert ran(proj.dvc("repro")) == [*DATA_STAGES, "train@static-0", "train@dynamic-0", "compare"]
    for f in ["data/pathlist/train.txt", "data/pathlist/test.txt", "data/pathlist/classes.txt", "metrics/stats.json",
              "models/static-0.pt", "models/dynamic-0.pt", "plots/samples.png", "plots/overview.png",
              "plots/accuracy.png", "plots/val_accuracy.png", "plots/lr.png", "plots/loss.png", "plots/paired.png",
              "plots/confusion.png", "plots/comparison.md", "metrics/comparison.json", "plots/curves/test_acc.csv"]:
        assert (proj.path / f).is_file(), f
    stats = json.loads(proj.read("metrics/stats.json"))
    assert stats["count"] == 11 * 12 and len(stats["mean"]) == 3
    m = run_metrics(proj, "dynamic-0")
    assert (m["schedule"], m["seed"], m["epochs"]) == ("dynamic", 0, 3)
    comparison = json.loads(proj.read("metrics/comparison.json"))
    assert comparison["seeds"] == 1 and comparison["verdict"].startswith("one seed: no verdict")
    assert not list((proj.path / "checkpoints").rglob("*.pt"))  # finished runs keep no checkpoint
    # The images are not in DVC's cache, so DVC ignores them in git for nobody: data/raw/.gitignore does.
    assert proj.git("status", "--porcelain", "--untracked-files=all", "data/raw").stdout == ""
    BASELINE.update(outputs(proj))
    proj.git("add", "-A")
    proj.git("commit", "-qm", "baseline run")


def test_second_repro_reruns_nothing(proj):
    result = proj.dvc("repro")
    assert ran(result) == []
    assert "Data and pipelines are up to date" in result.stdout


def test_a_weights_file_retrains_only_the_runs_that_read_it(proj):
    """A file copied into data/weights (docs/models.md's example) changes no run whose `weights` is null: only
    data/weights-in-use.json's check reruns, and it writes the same file. Naming it in `weights` retrains both."""
    (proj.path / "data" / "weights" / "signs.pt").write_bytes((proj.path / "models" / "dynamic-0.pt").read_bytes())
    assert json.loads(proj.read("data/weights-in-use.json")) == {"weights": None}
    status = json.loads(proj.dvc("status", "--json").stdout or "{}")
    assert sorted(status) == ["check"], status  # its dep changed; what it writes does not
    assert ran(proj.dvc("repro")) == []
    proj.set_params(weights="data/weights/signs.pt")
    status = json.loads(proj.dvc("status", "--json").stdout or "{}")
    assert {"train@static-0", "train@dynamic-0"} <= set(status)
    proj.git("checkout", "params.yaml")
    (proj.path / "data" / "weights" / "signs.pt").unlink()
    assert ran(proj.dvc("repro")) == []  # check again (its folder as committed): nothing else reruns
    assert proj.git("status", "--porcelain").stdout == ""


def test_dvc_exp_show_sees_a_run_while_it_trains(proj):
    """DVCLive writes metrics/live every epoch: `dvc exp show` in a second terminal shows the running epoch."""
    live = proj.path / "metrics" / "live" / "metrics.json"
    child = subprocess.Popen([sys.executable, "-m", "dvc", "exp", "run", "-S", "epochs=2000", "-S", "loss_stop=0",
                              "-S", "schedules=[static]"], cwd=proj.path,
                             env=proj.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (live.exists() and json.loads(live.read_text() or "{}").get("step", 0) >= 3
                                              and json.loads(live.read_text()).get("run") == "static-0"):
            time.sleep(0.1)
        shown = json.loads(proj.dvc("exp", "show", "--json").stdout)
        still_running = child.poll() is None
        tsv = (proj.path / "metrics" / "live" / "plots" / "metrics" / "test_acc.tsv").read_text().splitlines()
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        # What docs/experiments.md says an interrupted `dvc exp run` needs: the committed params (it had staged its own), the
        # committed outputs (it had set aside dynamic-0's model, not in its one-schedule pipeline), and the killed
        # run's checkpoint (for other params) dropped. Done even when an assertion below fails, so that the
        # later tests start from the baseline.
        proj.git("reset", "-q")  # what it staged: its params, and the params check's stamp (new in this repo)
        proj.git("checkout", "HEAD", "--", "params.yaml", "metrics/live")
        proj.dvc("checkout", "-q")
        (proj.path / "checkpoints" / "static-0" / "last.pt").unlink(missing_ok=True)
    assert "data" in shown[0], shown[0]  # an error entry instead: DVC could not read the running run's files
    step = shown[0]["data"]["metrics"]["metrics/live/metrics.json"]["data"]["step"]
    assert still_running and 3 <= step < 2000
    assert len(tsv) >= 1 + 3 and tsv[0] == "step\ttest_acc"
    assert ran(proj.dvc("repro")) == []


def test_a_rejected_experiment_leaves_every_result_intact(proj):
    """A bad -S used to delete the previous run's metrics and models (DVC empties a stage's outputs before
    running it): now every output is `persist` and the stage refuses the params before writing anything."""
    before = outputs(proj)
    assert any(k.startswith("metrics/runs/static-0/") for k in before) and "models/static-0.pt" in before
    for bad, message in (("batch_size=3.0", "error: params.yaml: batch_size: must be an integer in [1, 1000000] "
                                            "(got 3.0)"),
                         ("normalize=yes", "error: params.yaml: normalize: must be true or false (got 'yes')"),
                         ("lr=-1", "error: params.yaml: lr: must be a number in (0, 1000] (got -1)")):
        result = proj.dvc("exp", "run", "-S", bad, check=False)
        assert result.returncode != 0
        assert message in result.stdout + result.stderr and "Traceback" not in result.stdout + result.stderr
        assert outputs(proj) == before, bad
        proj.git("checkout", "--", "params.yaml")
    assert proj.dvc("exp", "run", "-S", "learning_rate=0.1", check=False).returncode != 0  # DVC refuses unknown keys
    assert ran(proj.dvc("repro")) == []  # dvc.lock still describes the outputs


def test_sigkill_then_repro_resumes_to_the_same_result(proj):
    proj.set_params(epochs=8, speedsigns={"train_per_class": 40})
    proj.dvc("repro", "train@static-0")
    whole = run_metrics(proj, "static-0")
    log = [without_timing(r) for r in files.read_epochs(proj.path / "metrics/runs/static-0")]

    ckpt = proj.path / "checkpoints" / "static-0" / "last.pt"
    assert not ckpt.exists()
    # A param the stage tracks but the result does not depend on: DVC reruns the stage, and the rerun killed
    # midway leaves a checkpoint that the next repro (the stage still changed) resumes.
    proj.set_params(checkpoint_every=2)
    child = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "-s", "train@static-0"], cwd=proj.path,
                             env=proj.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert ckpt.exists(), "no checkpoint appeared"
    time.sleep(random.uniform(0.0, 0.3))  # somewhere in a later epoch, at a batch nobody chose
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert run_metrics(proj, "static-0") == whole  # the previous result stays until the new one is complete

    result = proj.dvc("repro", "train@static-0")
    assert "resuming from checkpoints/static-0/last.pt" in result.stdout
    assert without_timing(run_metrics(proj, "static-0")) == without_timing(whole)
    assert [without_timing(r) for r in files.read_epochs(proj.path / "metrics/runs/static-0")] == log
    for tsv in (proj.path / "metrics/runs/static-0/plots/metrics").glob("*.tsv"):  # each epoch once, as DVCLive wrote
        assert [line.split("\t")[0] for line in tsv.read_text().splitlines()[1:]] == [str(e) for e in range(1, 9)]
    assert not ckpt.exists()

    forced = proj.dvc("repro", "-f", "-s", "train@static-0")  # a finished run starts over, it does not resume
    assert "resuming" not in forced.stdout and "epoch   1/8" in forced.stdout
    proj.git("checkout", "--", "params.yaml")


def test_the_pipeline_from_clean_gives_identical_outputs(tmp_path):
    """A second project from scratch: every output of the first run again, byte for byte (timings aside)."""
    other = make_project(tmp_path / "again")
    other.dvc("repro")
    again = outputs(other)
    assert set(again) == set(BASELINE)
    for path, data in BASELINE.items():
        if path.endswith("metrics.json"):
            assert without_timing(json.loads(again[path])) == without_timing(json.loads(data)), path
        elif path.endswith("comparison.json"):
            a, b = json.loads(again[path]), json.loads(data)
            for arm in (a, b):
                for summary in arm["arms"].values():
                    summary.pop("train_seconds")  # wall time
            assert a == b
        elif path.endswith(("seconds.tsv", ".png", "comparison.md")):
            continue  # wall times, or drawings of them
        else:
            assert again[path] == data, path
