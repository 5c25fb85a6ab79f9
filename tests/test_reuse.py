"""Nothing retrained for nothing: runs whose inputs did not change are reused in the workspace, a fresh clone,
`dvc exp run --temp` and `--queue`, and by the sweep; Python's bytecode is no code a stage depends on.

One tiny project (module scope) with its baseline committed, as a user's repository would be.
"""

import re
import sys
import time

import pytest
import yaml
from conftest import make_project, ran

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def proj(tmp_path_factory):
    proj = make_project(tmp_path_factory.mktemp("reuse") / "proj")
    first = proj.dvc("repro")
    assert "is empty" not in first.stdout + first.stderr  # no empty output folder for DVC to warn of
    proj.git("add", "-A")
    proj.git("commit", "-qm", "baseline run")
    return proj


def test_bytecode_is_not_code_a_stage_depends_on(proj):
    cache = proj.path / "thesislab" / "train" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "loop.cpython-311.pyc").write_bytes(b"\x00" * 64)  # what any `python -m thesislab...` writes
    assert "Data and pipelines are up to date" in proj.dvc("status").stdout


@pytest.mark.slow  # CI runs it after make test (make test-slow)
def test_a_compare_only_change_runs_compare_only_in_temp_queue_and_the_workspace(proj):
    # A temporary copy holds git's files and DVC's cache: the images (kept out of the cache) are drawn again by
    # download, and nothing else runs but compare; --allow-missing skips the drawing too.
    temp = proj.dvc("exp", "run", "--temp", "-S", "compare.min_effect=1")
    assert ran(temp) == ["download", "compare"], temp.stdout
    temp = proj.dvc("exp", "run", "--temp", "--allow-missing", "-S", "compare.min_effect=1.5")
    assert ran(temp) == ["compare"], temp.stdout

    proj.dvc("exp", "run", "--queue", "-n", "queued-margin", "-S", "compare.min_effect=2")
    proj.dvc("queue", "start", "-j", "1")
    deadline = time.time() + 240
    while "Success" not in proj.dvc("queue", "status").stdout:
        assert time.time() < deadline and "Failed" not in proj.dvc("queue", "status").stdout
        time.sleep(1)
    logs = proj.dvc("queue", "logs", "queued-margin")
    assert ran(logs) == ["download", "compare"], logs.stdout

    here = proj.dvc("exp", "run", "-S", "compare.min_effect=3")
    assert ran(here) == ["compare"], here.stdout
    proj.git("checkout", "--", "params.yaml")
    proj.dvc("checkout", "-q", check=False)


@pytest.mark.slow  # CI runs it after make test (make test-slow)
def test_a_schedules_knobs_retrain_that_schedule_alone(proj):
    result = proj.dvc("exp", "run", "-S", "dynamic.window=4")
    assert ran(result) == ["train@dynamic-0", "compare"], result.stdout
    result = proj.dvc("exp", "run", "-S", "step.gamma=0.5")  # a schedule not in `schedules`: nothing to train
    assert ran(result) == [], result.stdout
    proj.git("checkout", "--", "params.yaml")
    proj.dvc("checkout", "-q", check=False)


def fresh_clone(proj, dest):
    proj.run("git", "clone", "-q", str(proj.path), str(dest))
    clone = type(proj)(dest)
    clone.git("config", "user.name", "Test")
    clone.git("config", "user.email", "test@example.com")
    return clone


@pytest.mark.slow  # CI runs it after make test (make test-slow)
def test_a_fresh_clone_reuses_the_committed_runs(proj, tmp_path):
    """A clone has the run folders (git) but not the model files (DVC's cache): --allow-missing keeps the committed
    runs and recomputes only what changed; the sweep trains the committed runs again and checks each against the
    model dvc.lock records; an experiment, which must hold its models, is refused."""
    clone = fresh_clone(proj, tmp_path / "clone")
    result = clone.dvc("exp", "run", "--allow-missing", "-S", "compare.min_effect=1")
    assert ran(result) == ["compare"], result.stdout

    other = fresh_clone(proj, tmp_path / "other")
    named = other.run(sys.executable, "-m", "thesislab.sweep", "-n", "x", check=False)
    assert named.returncode == 2 and named.stderr.strip().startswith(
        "error: this workspace lacks the model files of its committed runs")
    swept = other.run(sys.executable, "-m", "thesislab.sweep")
    runs = sorted(s for s in yaml.safe_load(proj.read("dvc.lock"))["stages"] if s.startswith("train@"))
    identical = re.findall(r"^(train@\S+): identical to the committed model, bit for bit", swept.stdout, re.M)
    assert sorted(identical) == runs, swept.stdout
    assert not [s for s in ran(swept) if s.startswith("train@")], swept.stdout  # rebuilt beside DVC's stages
    assert other.git("status", "--porcelain").stdout == ""  # dvc.lock and the committed run folders stand
