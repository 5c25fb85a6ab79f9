"""The seed guard of sequential designs sees every design the project holds: its workspace, the copies queued and
--temp experiments run in, and every branch, tag and experiment of its git (thesislab.comparison.designs). Two
experiments that each start a design on the same seeds are two plans over one set of results: the second is refused,
in one line naming where the first is and how to go on."""

import json
import subprocess

import pytest
from test_sequential import NOISE, differences, fake_runs, first_look, seq_config

from thesislab.comparison import designs, looks
from thesislab.errors import UserError

COMPARISON = "metrics/comparison.json"
EXP_REF = "refs/exps/ab/cdef0123456789abcdef0123456789abcdef01/alpha-05"


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def write_design(folder, record):
    path = folder / COMPARISON
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"verdict": "continue", "sequential": record}))


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A project whose only design (alpha 0.05, seeds 0..4 looked at) lies in an experiment's commit: its
    workspace and its last commit hold none, as after `dvc exp run --temp`."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test")
    git(root, "config", "user.email", "test@example.com")
    (root / "params.yaml").write_text("seeds: [0]\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "baseline")
    _, record = first_look()
    write_design(root, record)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "an experiment's result")
    git(root, "update-ref", EXP_REF, "HEAD")
    git(root, "reset", "-q", "--hard", "HEAD~1")
    assert not (root / COMPARISON).exists()
    monkeypatch.chdir(root)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    return root


def refusal(cfg, here=".", previous=None):
    with pytest.raises(UserError) as err:
        looks.check(cfg, previous or {}, designs.elsewhere(COMPARISON, here))
    text = str(err.value)
    assert "\n" not in text
    return text


def test_a_new_design_on_seeds_an_experiment_looked_at_is_refused_naming_it(repo):
    text = refusal(seq_config(alpha=0.1))
    assert text == ("params.yaml: compare.sequential: none is recorded here, so a new design would start, but its "
                    "seeds (0..9) include seeds a design in experiment alpha-05 has looked at (0..4): its error rate "
                    "holds only for the plan fixed in advance: restore that, start the new design on seeds from 5 "
                    "(-S 'seeds=[5, 6, 7, 8, 9]'), or dvc exp remove alpha-05, to forget it")
    with pytest.raises(UserError, match="experiment alpha-05 has looked at"):
        designs.check_file(seq_config(alpha=0.1), COMPARISON)  # what the check stage and the sweep call


def test_the_same_plan_or_fresh_seeds_are_not_refused(repo):
    others = designs.elsewhere(COMPARISON)
    assert [o.where for o in others] == ["experiment alpha-05"]
    assert looks.check(seq_config(), {}, others) is None  # the experiment's own plan: the looks it made, again
    assert looks.check(seq_config(range(5, 10), alpha=0.1), {}, others) is None  # seeds 5..14: none seen
    # At the comparison, the same plan over other runs (retrained from other code) is another plan after all.
    with pytest.raises(UserError, match="experiment alpha-05 has looked at"):
        looks.advance({}, seq_config(), fake_runs(config="other code"), differences(NOISE), others=others)
    record, _ = looks.advance({}, seq_config(), fake_runs(), differences(NOISE), others=others)
    assert record["look"] == 1


def test_a_queued_or_temp_experiments_copy_sees_the_project_it_came_from(repo, tmp_path, monkeypatch):
    """DVC runs a queued or --temp experiment in a copy and sets DVC_ROOT to the project: the copy's own git
    knows nothing of the project's experiments."""
    copy = tmp_path / "copy"
    copy.mkdir()
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(repo))
    assert "experiment alpha-05 has looked at (0..4)" in refusal(seq_config(alpha=0.1))


def test_an_experiment_still_running_is_seen_in_its_copy(repo, tmp_path):
    """Two experiments of a queue run at once (-j 2): the first's look lies only in its copy under .dvc/tmp/exps
    until DVC saves it; the second, comparing after it (designs.one_look_at_a_time), sees it there."""
    git(repo, "update-ref", "-d", EXP_REF)
    assert designs.elsewhere(COMPARISON) == []
    _, record = first_look()
    running = repo / ".dvc" / "tmp" / "exps" / "tmpk2x9"
    write_design(running, record)
    assert f"a design in the experiment running in {running} has looked at (0..4)" in refusal(seq_config(alpha=0.1))
    # Its own copy is the file being checked, not another design.
    assert looks.check(seq_config(alpha=0.1), {}, designs.elsewhere(COMPARISON, running)) is None


def test_a_committed_design_is_seen_after_its_file_is_deleted_until_the_deletion_is_committed(repo):
    _, record = first_look()
    git(repo, "update-ref", "-d", EXP_REF)
    write_design(repo, record)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a design's first look")
    (repo / COMPARISON).unlink()
    text = refusal(seq_config(alpha=0.1))
    assert "a design in the last commit has looked at (0..4)" in text
    assert text.endswith("or git rm metrics/comparison.json && git commit, to forget it")
    git(repo, "commit", "-qam", "forget that design")
    assert looks.check(seq_config(alpha=0.1), {}, designs.elsewhere(COMPARISON)) is None
    git(repo, "branch", "kept", "HEAD~1")  # another branch's tip still holds it
    assert "a design in branch kept has looked at" in refusal(seq_config(alpha=0.1))


def test_damaged_files_elsewhere_are_not_this_comparisons_to_refuse(repo, tmp_path):
    (repo / COMPARISON).parent.mkdir(parents=True, exist_ok=True)
    running = repo / ".dvc" / "tmp" / "exps" / "tmpbad" / COMPARISON
    running.parent.mkdir(parents=True)
    running.write_text("{not json")
    (repo / COMPARISON).write_text(json.dumps({"sequential": {"status": "continue"}}))  # damaged record
    assert [o.where for o in designs.elsewhere(COMPARISON, tmp_path)] == ["experiment alpha-05"]
