"""A committed run trained again: identical to its committed model, or what differs (thesislab.reproduce), as a
fresh clone's `make run` and `python -m thesislab.verify` say it."""

import hashlib
import json
import os
import re
import shutil
import signal
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
    fresh.env["NPY_ENABLE_CPU_FEATURES"] = "AVX2"  # a shell's numpy choice: overridden, never a traceback
    out = fresh.run(sys.executable, "-m", "thesislab.sweep").stdout
    for run in ("static-0", "dynamic-0"):
        assert f"train@{run}: identical to the committed model, bit for bit (md5 {lock_md5(project, run)})" in out
    assert fresh.git("status", "--porcelain").stdout == ""  # the committed run folders and dvc.lock stand
    assert "Running stage" not in fresh.dvc("repro").stdout
    # A committed run whose folder was deleted (its inputs unchanged) is trained again in place and checked too.
    shutil.rmtree(fresh.path / "metrics" / "runs" / "dynamic-0")
    out = fresh.run(sys.executable, "-m", "thesislab.sweep").stdout
    assert (f"train@dynamic-0: identical to the committed model, bit for bit (md5 {lock_md5(project, 'dynamic-0')}); "
            "its outputs were missing or edited, and are written anew") in out
    fresh.git("reset", "-q", "--hard")  # its new timings aside
    # A committed model this machine does not make (the record says other bytes): said, and its result recorded,
    # where `git diff HEAD` shows it (DVC stages the dvc.lock it rewrites: a plain `git diff` would not).
    (fresh.path / "models" / "static-0.pt").unlink()
    set_lock_md5(fresh, "static-0", "f" * 32)  # all digits would read back as a YAML number
    fresh.git("commit", "-qam", "a record of other bytes")
    out = fresh.run(sys.executable, "-m", "thesislab.sweep").stdout
    assert re.search(r"train@static-0: differs from the committed model \(md5 \w+, committed f{32}\); every logged "
                     r"number the same .*; this machine's result is recorded in its place \(git diff HEAD shows it, "
                     r"dvc.lock's new md5 included\)", out)
    assert lock_md5(fresh, "static-0") == lock_md5(project, "static-0")
    assert lock_md5(project, "static-0") in fresh.git("diff", "HEAD", "--", "dvc.lock").stdout


@pytest.mark.slow
def test_a_clone_with_a_dvc_remote_pulls_the_models_instead_of_training(project, tmp_path):
    """The ordinary DVC team flow: a remote (a shared folder, as on a network disk) set with `dvc remote add -d` and
    committed, `dvc push` after the runs; a fresh clone's sweep (make run) pulls the model files and trains nothing,
    and verify still checks by retraining. A remote that does not answer leaves them to be trained, said so."""
    project.dvc("repro")
    project.dvc("remote", "add", "-d", "shared", str(tmp_path / "remote"))
    project.git("add", "-A")
    project.git("commit", "-qm", "runs, and the team's remote")
    project.dvc("push")
    fresh = clone(project, tmp_path / "fresh")
    out = fresh.run(sys.executable, "-m", "thesislab.sweep").stdout
    assert "sweep: 2 committed runs' model files are not here: pulling them from the DVC remote 'shared'" in out
    assert "sweep: every train stage is up to date" in out and "identical to the committed model" not in out
    for run in ("static-0", "dynamic-0"):
        assert hashlib.md5((fresh.path / "models" / f"{run}.pt").read_bytes()).hexdigest() == lock_md5(project, run)
    assert fresh.git("status", "--porcelain").stdout == ""
    assert "Data and pipelines are up to date" in fresh.dvc("status").stdout
    assert "verify: 2 of 2 runs reproduced bit for bit" in fresh.run(sys.executable, "-m", "thesislab.verify").stdout
    # The remote gone (unmounted), the model files and their cache entry gone: trained again, said so. (The tiny
    # runs' two models are the same bytes: dynamic-0 never cut its LR in 3 epochs, so one cache entry holds both.)
    fresh.dvc("remote", "modify", "--local", "shared", "url", str(tmp_path / "unmounted"))
    md5 = lock_md5(project, "static-0")
    assert lock_md5(project, "dynamic-0") == md5
    for run in ("static-0", "dynamic-0"):
        (fresh.path / "models" / f"{run}.pt").unlink()
    (fresh.path / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).unlink()
    out = fresh.run(sys.executable, "-m", "thesislab.sweep").stdout
    assert "sweep: the DVC remote 'shared' did not give 2 of them (" in out
    assert out.count(f"identical to the committed model, bit for bit (md5 {md5})") == 2


@pytest.mark.slow
def test_verify_retrains_in_a_clone_and_exits_1_when_a_run_differs(project):
    project.dvc("repro")
    project.git("add", "-A")
    project.git("commit", "-qm", "runs")
    models = {p.name: p.read_bytes() for p in (project.path / "models").glob("*.pt")}
    project.env["NPY_ENABLE_CPU_FEATURES"] = "AVX2"  # a shell's numpy choice: overridden, never a traceback
    ok = project.run(sys.executable, "-m", "thesislab.verify")
    assert "verify: static-0: identical to the committed model, bit for bit" in ok.stdout
    assert "verify: dynamic-0: identical" in ok.stdout
    assert "verify: 2 of 2 runs reproduced bit for bit on this machine" in ok.stdout
    # The workspace untouched: no file changed, no model rewritten, no scratch folder.
    assert project.git("status", "--porcelain").stdout == ""
    assert {p.name: p.read_bytes() for p in (project.path / "models").glob("*.pt")} == models
    assert not (project.path / ".sweep").exists()
    # dvc.lock recording a run the matrix no longer has (a committed experiment with fewer seeds): --all verifies the
    # matrix's runs and names the other, never counting it as a failure.
    lock = yaml.safe_load(project.read("dvc.lock"))
    lock["stages"]["train@static-1"] = lock["stages"]["train@static-0"]
    (project.path / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    project.git("commit", "-qam", "a lock that also records static-1")
    every = project.run(sys.executable, "-m", "thesislab.verify", "--all")
    assert "verify: not verified: static-1: dvc.lock still records them" in every.stdout
    assert "verify: 2 of 2 runs reproduced bit for bit on this machine" in every.stdout
    project.git("reset", "-q", "--hard", "HEAD~1")
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


# --- verify under hostile conditions: stale records, signals, a full disk, an empty repository -------------------

def lock_records(project, *runs):
    """Commit a dvc.lock that records these train runs (commands only: nothing here is trained)."""
    (project.path / "dvc.lock").write_text(yaml.safe_dump(
        {"schema": "2.0", "stages": {f"train@{r}": {"cmd": "true"} for r in runs}}, sort_keys=False))
    project.git("add", "-A")
    project.git("commit", "-qm", "a lock that records runs")


def verify(project, *args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "thesislab.verify", *args], cwd=project.path,
                          env={**project.env, **(env or {})}, capture_output=True, text=True, **kw)


def test_verify_names_runs_dvc_lock_records_but_the_matrix_no_longer_has(project):
    """After an experiment with fewer seeds was committed, dvc.lock still records the other seeds' runs, which no
    stage trains: named as such in one line, never counted as failures."""
    lock_records(project, "static-1", "dynamic-1")  # the project's matrix has seed 0 only
    named = verify(project, "static-1")
    assert named.returncode == 2 and named.stdout == ""
    assert named.stderr.splitlines() == [
        "error: static-1: dvc.lock records it, but the last commit's train matrix no longer has it (params.yaml: "
        "seeds [0], schedules [static, dynamic]), so no stage can train it as committed (verifiable: none)"]
    every = verify(project, "--all")
    assert every.returncode == 2
    assert every.stdout.splitlines() == [
        "verify: not verified: static-1, dynamic-1: dvc.lock still records them, but the last commit's train matrix "
        "(params.yaml: seeds [0], schedules [static, dynamic]) no longer has them"]
    assert every.stderr.splitlines() == ["error: the last commit records no trained runs of its train matrix "
                                         "(dvc.lock has none): nothing to verify"]


def test_verify_in_a_repository_with_no_commits_says_so(tmp_path):
    from conftest import make_project

    project = make_project(tmp_path / "proj")
    shutil.rmtree(project.path / ".git")
    project.git("init", "-q")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = verify(project, env={"TMPDIR": str(scratch)})
    assert done.returncode == 2 and done.stderr.splitlines() == [
        "error: this repository has no commits yet: verify trains the last commit's runs again; commit the results "
        "first (git add -A && git commit)"]
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("sigs", [[signal.SIGTERM], [signal.SIGHUP], [signal.SIGINT], [signal.SIGTERM, signal.SIGINT]],
                         ids=["term", "hup", "int", "term-then-int"])
def test_verify_stopped_by_a_signal_removes_its_clone_and_says_there_is_nothing_to_resume(project, tmp_path, sigs):
    """A second signal (a Ctrl-C after a kill) is ignored: the clean-up the first one started runs to its end."""
    lock_records(project, "static-0")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "thesislab.verify"], cwd=project.path,
                            env={**project.env, "TMPDIR": str(scratch)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # The event: its data stages have started in the clone (the line verify prints just before running them).
    first = proc.stdout.readline()
    assert first.startswith("verify: 1 committed runs (static-0)"), first + proc.stderr.read()
    for sig in sigs:
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=1800)  # a hang guard only: the clean-up takes seconds
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == ("verify: interrupted; its throwaway clone is removed and the workspace "
                                            "was never touched: nothing to resume (run verify again to start over)")
    assert "Traceback" not in err
    assert list(scratch.iterdir()) == []
    assert project.git("status", "--porcelain").stdout == ""


def test_a_failed_clone_or_copy_is_one_line_and_a_full_disk_says_so(tmp_path):
    from thesislab import verify as v

    into = tmp_path / "thesislab-verify-x"
    hinted = "Cloning into 'project'...\nerror: unable to write file x\nfatal: cannot store blob\nhint: try again\n"
    assert v._clone_failure(hinted, into) == "git clone of the last commit failed: fatal: cannot store blob"
    full = "fatal: could not create work tree dir 'project': No space left on device\nhint: something\n"
    assert v._clone_failure(full, into) == (f"no space left on the disk of {tmp_path} (the throwaway clone's folder; "
                                            "set TMPDIR to a folder on a disk with room); the workspace is untouched")
    errors = shutil.Error([("a.png", "b.png", "[Errno 28] No space left on device: 'b.png'"),
                           ("c.png", "d.png", "[Errno 28] No space left on device: 'd.png'")])
    assert v._copy_failure(errors, "data/raw/speedsigns", into) == v._no_space(into)
    other = shutil.Error([("a.png", "b.png", "[Errno 13] Permission denied: 'a.png'"), ("c", "d", "e")])
    assert v._copy_failure(other, "data/raw/speedsigns", into) == (
        "copying the images of data/raw/speedsigns into the throwaway clone failed: [Errno 13] Permission denied: "
        "'a.png' (and 1 more files)")


@pytest.mark.slow  # a real fault: a disk that fills, mounted for the test
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs (a disk that fills) needs root")
def test_verify_on_a_disk_that_fills_says_so_in_one_line_and_leaves_nothing(project, tmp_path):
    """The disk fills while cloning, then (a bigger disk) while copying the workspace's images into the clone."""
    lock_records(project, "static-0")
    raw = project.path / "data" / "raw" / "speedsigns"
    raw.mkdir(parents=True)
    (raw / "big.bin").write_bytes(os.urandom(8 << 20))  # git-ignored, copied into the clone as the images are
    measure = tmp_path / "measure"
    subprocess.run(["git", "clone", "-q", str(project.path), str(measure)], check=True)
    clone_kib = int(subprocess.run(["du", "-sk", str(measure)], capture_output=True, text=True).stdout.split()[0])
    for kib, fills in ((64, "clone"), (clone_kib + 2048, "copy")):
        disk = tmp_path / f"disk-{fills}"
        disk.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(disk)],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            pytest.skip(f"tmpfs cannot be mounted here: {mounted.stderr.strip()}")
        try:
            done = verify(project, env={"TMPDIR": str(disk)})
            assert done.returncode == 2, (fills, done.stdout, done.stderr)
            assert done.stderr.splitlines() == [
                f"error: no space left on the disk of {disk} (the throwaway clone's folder; set TMPDIR to a folder "
                "on a disk with room); the workspace is untouched"], fills
            assert list(disk.iterdir()) == [], fills
        finally:
            subprocess.run(["umount", str(disk)], check=True)
