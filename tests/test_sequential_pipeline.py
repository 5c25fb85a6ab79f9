"""A sequential design end to end on tiny data: `dvc repro` makes the first look and records it, the check stage
refuses seeds that are not the design's next look before any run trains, the sweep resumes at the next batch
(the first look kept as recorded), a design changed on seen seeds is refused, and a design that decides at the
first look trains no second batch."""

import json
import shutil
import sys

import numpy as np
import pytest
from conftest import make_project, ran
from PIL import Image

pytestmark = pytest.mark.slow  # 20 tiny runs: in make test-slow

# A learnable two-class folder (darker vs lighter 8-pixel images, overlapping): exp with gamma 1e-4 freezes after its
# first epoch while static keeps learning, so the two differ by a few points with some spread.
PARAMS = {"seeds": list(range(5)), "schedules": ["static", "exp"], "exp": {"gamma": 0.0001}, "epochs": 6,
          "lr": 0.0001, "loss_stop": 0, "model": "mlp", "dataset": "folder", "source": "data/sources/easy",
          "image_size": 8, "batch_size": 8,
          "compare": {"baseline": "static", "min_effect": 0.5, "sequential": {"max_seeds": 10, "every": 5}}}


def easy_images(root):
    rng = np.random.default_rng(0)
    for split, n in (("train", 200), ("test", 100)):
        for name, centre in {"dark": 100, "light": 156}.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                level = rng.normal(centre, 25)
                pixels = np.clip(rng.normal(level, 30, (8, 8, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")


def record(project):
    return json.loads(project.read("metrics/comparison.json"))["sequential"]


def sweep(project, *args, check=True):
    return project.run(sys.executable, "-m", "thesislab.sweep", "--jobs", "2", *args, check=check)


@pytest.fixture(scope="module")
def first_look(tmp_path_factory):
    """A project after `dvc repro` made the design's first look (5 seeds each), and that look's record."""
    project = make_project(tmp_path_factory.mktemp("seq") / "proj", **PARAMS)
    easy_images(project.path / "data" / "sources" / "easy")
    project.dvc("repro")
    return project, record(project)


def test_the_first_look_is_recorded_and_asks_for_the_next_batch(first_look):
    project, rec = first_look
    assert rec["look"] == 1 and rec["status"] == "continue" and rec["next_seeds"] == list(range(10))
    comparison = json.loads(project.read("metrics/comparison.json"))
    assert comparison["method"] == "sequential" and comparison["fixed_n"]["descriptive"]
    assert comparison["verdict"].startswith("continue: exp - static = ")
    assert "next look at 10 seeds (python -m thesislab.sweep runs it)" in comparison["verdict"]
    assert "| 1 of 2 | 5 |" in project.read("plots/comparison.md")
    assert (project.path / "plots" / "looks.png").read_bytes()[:4] == b"\x89PNG"


def test_seeds_off_the_design_and_a_changed_design_are_refused_before_any_run(first_look, tmp_path):
    project, rec = first_look
    copy = tmp_path / "copy"
    shutil.copytree(project.path, copy, symlinks=True)
    from conftest import Project

    other = Project(copy)
    other.set_params(seeds=list(range(7)))
    result = other.dvc("repro", check=False)
    assert result.returncode != 0 and ran(result) == []
    assert "seeds: the sequential design looks at 5, 10 seeds and its next look is at 10 seeds (0..9)" in (
        result.stdout + result.stderr)
    other.set_params(seeds=list(range(10)), compare={**PARAMS["compare"], "min_effect": 30})
    result = sweep(other, check=False)
    assert result.returncode == 2 and "Running stage 'train@" not in result.stdout
    assert "compare.sequential: the design changed after 1 look(s) on these seeds (min_effect 0.5 -> 30" in result.stderr
    assert record(other) == rec  # nothing recorded over it


def test_the_sweep_resumes_at_the_next_batch_keeping_the_first_look(first_look):
    project, rec = first_look
    out = sweep(project).stdout
    assert "sweep: look 1 of 2 says continue: look 2 needs 10 seeds; training the 5 new ones" in out
    assert "sweep: 10 runs to train" in out  # seeds 5-9 of each schedule: none of the first batch again
    after = record(project)
    assert after["looks"][0] == rec["looks"][0]
    assert after["look"] == 2 and after["status"] == "finished" and after["next_seeds"] is None
    assert after["decisions"]["exp"]["look"] == 2
    assert "up to date" in project.dvc("status").stdout
    again = sweep(project).stdout  # the design finished: a second call trains nothing and decides nothing anew
    assert "every train stage is up to date" in again and "says continue" not in again
    assert record(project) == after


def test_a_design_that_decides_at_the_first_look_trains_no_second_batch(first_look, tmp_path):
    project, _ = first_look
    copy = tmp_path / "decides"
    shutil.copytree(project.path, copy, symlinks=True)
    from conftest import Project

    other = Project(copy)
    (copy / "metrics" / "comparison.json").unlink()  # no design recorded yet: this is a new one
    # The same runs with a margin wide enough that their interval lies inside it: equivalent at look 1.
    other.set_params(seeds=list(range(5)), compare={**PARAMS["compare"], "min_effect": 30})
    out = sweep(other).stdout
    assert "says continue" not in out and "Running stage 'train@" not in out
    rec = record(other)
    assert rec["look"] == 1 and rec["status"] == "finished"
    assert rec["decisions"]["exp"] == {"decision": "equivalent", "look": 1, "n": 5, "futility": False}
    assert json.loads(other.read("metrics/comparison.json"))["verdict"].startswith("exp and static are equivalent")


def test_two_temp_experiments_cannot_start_two_designs_on_the_same_seeds(tmp_path):
    """Each --temp experiment runs in its own copy holding the baseline's comparison.json (no design): the second
    design is refused at its check stage, before any run trains, because the first one's experiment holds a
    design that has looked at the same seeds."""
    project = make_project(tmp_path / "proj", **PARAMS)
    easy_images(project.path / "data" / "sources" / "easy")
    project.dvc("add", "data/sources/easy")  # a --temp copy holds only what git (and DVC through git) tracks
    project.git("add", "-A")
    project.git("commit", "-qm", "the images, tracked")
    project.dvc("exp", "run", "--temp", "-n", "alpha-05", "-S", "epochs=2")  # 2 epochs: a look is all it needs
    second = project.dvc("exp", "run", "--temp", "-n", "alpha-10", "-S", "epochs=2", "-S", "compare.sequential.alpha=0.1",
                         check=False)
    said = second.stdout + second.stderr
    assert second.returncode != 0 and "Running stage 'train@" not in said, said
    assert ("compare.sequential: none is recorded here, so a new design would start, but its seeds (0..9) include "
            "seeds a design in experiment alpha-05 has looked at (0..4)") in said
    assert project.git("status", "--porcelain").stdout == ""  # the workspace untouched by either
