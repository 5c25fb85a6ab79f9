"""End-to-end: the project copied into a throwaway git repo, driven with the dvc commands users type.

Runs in order on one tiny project (module scope): repro, no-op repro, a generator param change, then
experiments, a queued sweep, interruption and bad params.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import make_project

from thesislab.train import report

pytestmark = pytest.mark.e2e

STAGES = ["download", "pathlist", "stats", "train@static", "train@dynamic", "plot"]


def ran(result):
    return [s for s in STAGES if f"Running stage '{s}'" in result.stdout]


def metrics(project, schedule):
    return json.loads(project.read(f"metrics/train/{schedule}/metrics.json"))


def without_timing(d):
    return {k: v for k, v in d.items() if k not in report.TIMING_KEYS}


@pytest.fixture(scope="module")
def proj(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("e2e") / "proj")


def test_repro_runs_every_stage_and_writes_every_output(proj):
    assert ran(proj.dvc("repro")) == STAGES
    for f in ["data/pathlist/train.txt", "data/pathlist/test.txt", "data/pathlist/classes.txt", "metrics/stats.json",
              "models/static.pt", "models/dynamic.pt", "plots/samples.png", "plots/overview.png",
              "plots/accuracy.png", "plots/lr.png", "plots/loss.png", "plots/confusion.png", "plots/comparison.md"]:
        assert (proj.path / f).is_file(), f
    stats = json.loads(proj.read("metrics/stats.json"))
    assert stats["count"] == 11 * 12 and len(stats["mean"]) == 3
    assert metrics(proj, "dynamic")["epochs"] == 3
    proj.git("add", "-A")
    proj.git("commit", "-qm", "baseline run")


def test_second_repro_reruns_nothing(proj):
    result = proj.dvc("repro")
    assert ran(result) == []
    assert "Data and pipelines are up to date" in result.stdout


def test_generator_param_reruns_only_what_depends_on_it(proj):
    proj.set_params(speedsigns={"test_per_class": 5})
    # The train split is unchanged, so stats stays; everything reading the test split reruns.
    assert ran(proj.dvc("repro")) == ["download", "pathlist", "train@static", "train@dynamic", "plot"]
    assert len(proj.read("data/pathlist/test.txt").splitlines()) == 55
    proj.git("add", "-A")
    proj.git("commit", "-qm", "more test images")


def test_experiments_as_typed(proj):
    proj.dvc("exp", "run", "-n", "lr02", "-S", "lr=0.02")
    proj.dvc("exp", "run", "-n", "raw", "-S", "normalize=false")
    shown = proj.dvc("exp", "show", "--json").stdout
    assert "lr02" in shown and "raw" in shown
    table = proj.dvc("exp", "show", "--csv").stdout
    assert "test_acc" in table.splitlines()[0] and "lr02" in table
    diff = proj.dvc("metrics", "diff", "lr02", "raw").stdout
    assert "test_acc" in diff
    out = proj.path / "plots_diff"
    proj.dvc("plots", "diff", "lr02", "raw", "-o", str(out))
    html = (out / "index.html").read_text()
    assert "lr02" in html and "raw" in html


def test_metrics_diff_between_branches(proj):
    proj.git("checkout", "-q", "-b", "higher-lr")
    proj.set_params(lr=0.03)
    proj.dvc("repro")
    proj.git("add", "-A")
    proj.git("commit", "-qm", "lr 0.03")
    diff = proj.dvc("metrics", "diff", "main", "higher-lr", "--json").stdout
    assert "metrics/train/static/metrics.json" in json.loads(diff)
    proj.git("checkout", "-q", "main")
    proj.dvc("checkout", "-q", check=False)


def test_queued_sweep_runs_two_at_once_without_mixing_outputs(proj):
    proj.dvc("exp", "run", "--queue", "-S", "lr=0.001,0.005,0.01")
    proj.dvc("queue", "start", "-j", "2")
    deadline = time.time() + 300
    while time.time() < deadline:
        status = proj.dvc("queue", "status").stdout
        if "Running" not in status and "Queued" not in status:
            break
        time.sleep(2)
    assert "Failed" not in status, status
    rows = json.loads(proj.dvc("exp", "show", "--json").stdout)
    found = {}
    for commit in rows:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs", []):
                data = rev.get("data", {})
                lr = data.get("params", {}).get("params.yaml", {}).get("data", {}).get("lr")
                m = data.get("metrics", {}).get("metrics/train/static/metrics.json", {}).get("data")
                if lr in (0.001, 0.005, 0.01) and m:
                    found[lr] = m
    assert set(found) == {0.001, 0.005, 0.01}
    # Each queued run is deterministic on the CPU, so it must equal the same params run alone here.
    proj.set_params(lr=0.005)
    proj.dvc("repro")
    assert without_timing(found[0.005]) == without_timing(metrics(proj, "static"))
    proj.git("checkout", "--", "params.yaml")
    proj.dvc("checkout", "-q", check=False)


def test_sigkill_then_repro_resumes_to_the_same_result(proj):
    proj.set_params(epochs=8, speedsigns={"train_per_class": 40})
    proj.dvc("repro", "train@static")
    whole = metrics(proj, "static")
    log = [without_timing(r) for r in report.read_log(proj.path / "metrics/train/static/epochs.csv")]

    ckpt = proj.path / "checkpoints" / "static" / "last.pt"
    ckpt.unlink()
    (proj.path / "metrics/train/static/metrics.json").unlink()
    child = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "-f", "-s", "train@static"], cwd=proj.path,
                             env=proj.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert ckpt.exists(), "no checkpoint appeared"
    time.sleep(random.uniform(0.0, 0.3))  # somewhere in a later epoch, at a batch nobody chose
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert not (proj.path / "metrics/train/static/metrics.json").exists()

    result = proj.dvc("repro", "train@static")
    assert "resuming from checkpoints/static/last.pt" in result.stdout
    assert without_timing(metrics(proj, "static")) == without_timing(whole)
    assert [without_timing(r) for r in report.read_log(proj.path / "metrics/train/static/epochs.csv")] == log
    proj.git("checkout", "--", "params.yaml")


def test_bad_params_fail_fast_with_one_line(proj):
    result = proj.dvc("exp", "run", "-S", "lr=-1", check=False)
    assert result.returncode != 0
    assert "error: params.yaml: lr: must be a number in (0, 1000] (got -1)" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    result = proj.dvc("exp", "run", "-S", "learning_rate=0.1", check=False)
    assert result.returncode != 0  # DVC itself refuses a key params.yaml lacks
    proj.git("checkout", "--", "params.yaml")


def test_default_pipeline_twice_from_clean_is_identical(proj, tmp_path):
    other = make_project(tmp_path / "again")
    other.set_params(**yaml.safe_load(proj.read("params.yaml")))
    proj.dvc("repro")
    other.dvc("repro")
    for f in ["data/pathlist/train.txt", "data/pathlist/test.txt", "data/pathlist/classes.txt", "metrics/stats.json"]:
        assert (proj.path / f).read_bytes() == (other.path / f).read_bytes(), f
    for s in ("static", "dynamic"):
        assert without_timing(metrics(proj, s)) == without_timing(metrics(other, s))
        assert proj.read(f"metrics/train/{s}/predictions.csv") == other.read(f"metrics/train/{s}/predictions.csv")
