"""A committed run trained again: identical to its committed model, or what differs (thesislab.reproduce), as a
fresh clone's `make run` and `python -m thesislab.verify` say it."""

import json
import re
import subprocess
import sys

import pytest
import yaml
from conftest import Project, fake_run

from thesislab import files
from thesislab.reproduce import Committed, first_difference, judge


def test_first_difference_names_the_epoch_and_the_numbers(tmp_path):
    old = fake_run(tmp_path / "a", "static", 0, [{"lr": 0.01, "test_acc": a} for a in (50.0, 60.0, 70.0)])
    new = fake_run(tmp_path / "b", "static", 0, [{"lr": 0.01, "test_acc": 50.0}, {"test_acc": 61.5, "lr": 0.5},
                                                  {"lr": 0.01, "test_acc": 70.0}])
    assert first_difference(old.rows, new.rows) == "first at epoch 2: lr 0.5 vs 0.01, test_acc 61.5 vs 60"
    assert first_difference(old.rows, old.rows[:2]) == "the same numbers for 2 epochs, then 2 epochs here vs 3 committed"
    seconds = [{**r, "seconds": 99.0} for r in old.rows]  # timings differ between identical runs: not a difference
    assert first_difference(old.rows, seconds).startswith("every logged number the same")


def test_judge_compares_the_model_bytes_and_says_how_the_computations_differ(tmp_path):
    run = fake_run(tmp_path / "runs", "static", 0, [{"lr": 0.01, "test_acc": 50.0}])
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    md5 = "0cd0c4ea3a3e4d5ee1b8d0b0d8aa6f0a"
    same = judge("static-0", model, run.folder, Committed(_md5(model), model, run.folder))
    assert same.identical and same.text == f"identical to the committed model, bit for bit (md5 {_md5(model)})"
    summary = json.loads((run.folder / files.METRICS).read_text())
    committed = tmp_path / "committed"
    fake_run(committed, "static", 0, [{"lr": 0.01, "test_acc": 50.0}])
    theirs = json.loads((committed / "static-0" / files.METRICS).read_text())
    summary["computation"] = {"threads": 1, "portable": True, "torch": "2.14.1"}
    theirs["computation"] = {"threads": 2, "portable": True, "torch": "2.14.1"}
    (run.folder / files.METRICS).write_text(json.dumps(summary))
    (committed / "static-0" / files.METRICS).write_text(json.dumps(theirs))
    other = judge("static-0", model, run.folder, Committed(md5, model, committed / "static-0"))
    assert not other.identical
    assert other.text == (f"differs from the committed model (md5 {_md5(model)}, committed {md5}); every logged "
                          "number the same (the weights differ below the logged digits); computed with threads 1 "
                          "here vs 2")


def _md5(path):
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()


def clone(project, dest) -> Project:
    subprocess.run(["git", "clone", "-q", str(project.path), str(dest)], check=True)
    copy = Project(dest)
    copy.git("config", "user.name", "Test")
    copy.git("config", "user.email", "test@example.com")
    return copy


def lock_md5(project, run):
    lock = yaml.safe_load(project.read("dvc.lock"))
    return next(o["md5"] for o in lock["stages"][f"train@{run}"]["outs"] if o["path"].endswith(".pt"))


def set_lock_md5(project, run, md5):
    text = project.read("dvc.lock").replace(lock_md5(project, run), md5, 1)
    (project.path / "dvc.lock").write_text(text)


@pytest.mark.slow
def test_a_fresh_clone_trains_its_missing_models_and_says_they_reproduce(project, tmp_path):
    project.dvc("repro")
    project.git("add", "-A")
    project.git("commit", "-qm", "runs")
    fresh = clone(project, tmp_path / "fresh")
    out = fresh.run(sys.executable, "-m", "thesislab.sweep").stdout
    for run in ("static-0", "dynamic-0"):
        assert f"train@{run}: identical to the committed model, bit for bit (md5 {lock_md5(project, run)})" in out
    assert fresh.git("status", "--porcelain").stdout == ""  # the committed run folders and dvc.lock stand
    assert "Running stage" not in fresh.dvc("repro").stdout
    # A committed model this machine does not make (the record says other bytes): said, and its result recorded.
    (fresh.path / "models" / "static-0.pt").unlink()
    set_lock_md5(fresh, "static-0", "f" * 32)  # all digits would read back as a YAML number
    out = fresh.run(sys.executable, "-m", "thesislab.sweep").stdout
    assert re.search(r"train@static-0: differs from the committed model \(md5 \w+, committed f{32}\); every logged "
                     r"number the same .*; this machine's result is recorded in its place", out)
    assert lock_md5(fresh, "static-0") == lock_md5(project, "static-0")


@pytest.mark.slow
def test_verify_retrains_in_a_clone_and_exits_1_when_a_run_differs(project):
    project.dvc("repro")
    project.git("add", "-A")
    project.git("commit", "-qm", "runs")
    models = {p.name: p.read_bytes() for p in (project.path / "models").glob("*.pt")}
    ok = project.run(sys.executable, "-m", "thesislab.verify")
    assert "verify: static-0: identical to the committed model, bit for bit" in ok.stdout
    assert "verify: dynamic-0: identical" in ok.stdout
    assert "verify: 2 of 2 runs reproduced bit for bit on this machine" in ok.stdout
    # The workspace untouched: no file changed, no model rewritten, no scratch folder.
    assert project.git("status", "--porcelain").stdout == ""
    assert {p.name: p.read_bytes() for p in (project.path / "models").glob("*.pt")} == models
    assert not (project.path / ".sweep").exists()
    # A committed run said to have other bytes, made with 2 threads: named, exit 1.
    set_lock_md5(project, "static-0", "f" * 32)
    metrics = project.path / "metrics" / "runs" / "static-0" / files.METRICS
    summary = json.loads(metrics.read_text())
    summary["computation"]["threads"] = 2
    metrics.write_text(json.dumps(summary))
    project.git("commit", "-qam", "a run made elsewhere")
    bad = project.run(sys.executable, "-m", "thesislab.verify", "static-0", check=False)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert re.search(r"verify: static-0: differs from the committed model \(md5 \w+, committed f{32}\); .*computed "
                     r"with threads 1 here vs 2", bad.stdout)
    assert "verify: 0 of 1 runs reproduced" in bad.stdout
    wrong = project.run(sys.executable, "-m", "thesislab.verify", "static-9", check=False)
    assert wrong.returncode == 2 and wrong.stderr.strip() == (
        "error: static-9: not a committed run (committed: static-0, dynamic-0)")
