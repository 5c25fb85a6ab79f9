"""The sweep (python -m thesislab.sweep): the train matrix run at once, landing in DVC as a serial `dvc repro`.

The oracle is a serial `dvc repro` of the same params in another copy of the project: the sweep's dvc.lock must
hold the same entries (every dep hash, param and output path; every output hash but the run folders', which hold
timings) and the same bytes in every model and every run file but the timings.
"""

import json
import sys

import pytest
import yaml
from conftest import make_project

from thesislab import files

pytestmark = pytest.mark.e2e


def sweep(project, *args, check=True, **kw):
    return project.run(sys.executable, "-m", "thesislab.sweep", *args, check=check, **kw)


def lock(project):
    return yaml.safe_load(project.read("dvc.lock"))["stages"]


def without_run_folder_hashes(entry):
    """A lock entry less the hashes of run folders (metrics/runs/<run>: they hold each run's timings)."""
    outs = [{k: v for k, v in o.items() if k not in ("md5", "size")} if o["path"].startswith("metrics/runs/") else o
            for o in entry.get("outs", [])]
    return {**entry, "outs": outs}


def run_files(project, name):
    """Every file of a run's folder, timings aside: metrics.json less its timing keys, the per-epoch files
    less seconds.tsv."""
    folder = project.path / "metrics" / "runs" / name
    found = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "seconds.tsv":
            found[str(p.relative_to(folder))] = p.read_bytes()
    summary = json.loads(found.pop(files.METRICS))
    found[files.METRICS] = {k: v for k, v in summary.items() if k not in files.TIMING_KEYS}
    return found


def assert_lands_as(swept, serial):
    ours, theirs = lock(swept), lock(serial)
    assert sorted(ours) == sorted(theirs)
    for stage in theirs:
        if stage == "compare":  # its inputs are run folders (timings): compared by verdict below
            continue
        assert without_run_folder_hashes(ours[stage]) == without_run_folder_hashes(theirs[stage]), stage
    for stage in (s for s in theirs if s.startswith("train@")):
        name = stage.split("@")[1]
        assert (swept.path / "models" / f"{name}.pt").read_bytes() == (serial.path / "models" / f"{name}.pt").read_bytes()
        assert run_files(swept, name) == run_files(serial, name), name
    verdict = [json.loads(p.read("metrics/comparison.json"))["verdict"] for p in (swept, serial)]
    assert verdict[0] == verdict[1]
    assert "up to date" in swept.dvc("status").stdout


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("serial") / "proj")
    project.dvc("repro")
    return project


@pytest.mark.slow  # CI runs it after make test (make test-slow)
def test_local_sweep_lands_as_a_serial_repro(serial, tmp_path):
    swept = make_project(tmp_path / "proj")
    out = sweep(swept, "--jobs", "2").stdout
    assert "sweep: 2 runs to train; local: 2 runs at once" in out
    assert "Running stage 'train@" not in out  # the gather trained nothing: the runs were recorded
    assert "Running stage 'compare'" in out
    assert_lands_as(swept, serial)
    for name in ("static-0", "dynamic-0"):
        status = json.loads((swept.path / ".sweep" / "runs" / f"{name}.json").read_text())
        assert status["state"] == "done" and status["attempt"] == 1
        assert not (swept.path / "checkpoints" / name).exists()  # nothing unfinished left behind
    again = sweep(swept).stdout
    assert "every train stage is up to date" in again and "Running stage" not in again


@pytest.mark.slow  # CI runs it after make test (make test-slow)
def test_a_packed_sweep_lands_as_a_serial_repro(serial, tmp_path):
    """--pack 2: both runs in one process, as one computation; dvc.lock, every model and run file as serial."""
    swept = make_project(tmp_path / "proj")
    out = sweep(swept, "--pack", "2").stdout
    assert "sweep: 2 runs to train, as 1 pack of up to 2 (one computation each); local:" in out
    assert_lands_as(swept, serial)
    log = (swept.path / ".sweep" / "logs" / "static-0.log").read_text()
    assert "in pack-static-0+1.log with 1 other runs" in log and "2 runs as one computation" in log
    assert "dynamic-0 epoch" not in log  # each run's log holds its own lines


@pytest.mark.slow  # CI runs it after make test (make test-slow)
def test_a_named_sweep_is_an_experiment_like_exp_run(tmp_path):
    swept = make_project(tmp_path / "proj")
    sweep(swept, "-S", "compare.min_effect=1", "-n", "wide-margin")
    assert swept.dvc("exp", "list", "--name-only").stdout.split() == ["wide-margin"]
    ref = next(r for r in swept.git("for-each-ref", "--format=%(refname)", "refs/exps").stdout.split()
               if r.endswith("/wide-margin"))
    # The experiment commit holds what `dvc exp run` would: params, lock, every run folder and the comparison.
    committed = swept.git("ls-tree", "-r", "--name-only", ref).stdout.split()
    for path in ("dvc.lock", "metrics/comparison.json", "plots/comparison.md", "models/.gitignore",
                 "metrics/runs/static-0/metrics.json", "metrics/runs/dynamic-0/predictions.csv"):
        assert path in committed, path
    assert not any(p.startswith("data/raw/") and not p.endswith(".gitignore") for p in committed)
    assert yaml.safe_load(swept.git("show", f"{ref}:params.yaml").stdout)["compare"]["min_effect"] == 1
    shown = swept.dvc("exp", "show", "--no-pager", "--csv").stdout
    assert "wide-margin" in shown
    again = sweep(swept, "-n", "wide-margin", check=False)  # a name taken: refused before any work
    assert again.returncode == 2 and again.stderr.strip() == (
        "error: -n wide-margin: an experiment of that name exists (dvc exp remove wide-margin, or another name)")
    diff = json.loads(swept.dvc("params", "diff", "HEAD", ref, "--json").stdout)
    assert (diff["params.yaml"]["compare.min_effect"]["old"], diff["params.yaml"]["compare.min_effect"]["new"]) == (0.5, 1)
    # On another baseline the name is still taken: `dvc metrics diff wide-margin` would be ambiguous.
    swept.git("commit", "-q", "--allow-empty", "-m", "another baseline")
    elsewhere = sweep(swept, "-n", "wide-margin", check=False)
    assert elsewhere.returncode == 2 and "an experiment of that name exists" in elsewhere.stderr


def test_bad_options_are_one_line_before_any_work(tmp_path):
    project = make_project(tmp_path / "proj")
    cases = [
        (["--engine", "slurm", "--partition", "nope"], "--engine slurm"),
        (["--jobs", "0"], "--jobs"),
        (["--gpus-per-run", "2"], "--gpus-per-run"),
        (["-S", "lr=-1"], "params.yaml: lr"),
        # Not Hydra's "use +nosuchkey=1", which the params check would then refuse: the key is unknown.
        (["-S", "nosuchkey=1"], "-S nosuchkey=1: unknown key 'nosuchkey' (known keys here: augment, "),
        (["-S", "+nosuchkey=1"], "params.yaml: unknown key 'nosuchkey'"),
    ]
    for args, says in cases:
        result = sweep(project, *args, check=False)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], (args, result.stderr)
        assert not (project.path / "data" / "pathlist").exists()  # nothing ran
        assert project.git("status", "--porcelain").stdout == ""  # params.yaml as it was
