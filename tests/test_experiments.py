"""End-to-end experiments: seeds added as an experiment, two experiments compared, the commands users type.

One tiny project (module scope) runs its baseline, then experiments build on it in order.
"""

import json
import sys

import pytest
from conftest import make_project, ran

# Slow as a whole (its tests share one project, each step a DVC run): make test-slow and CI run it after make test.
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def leaf_keys(d, prefix=""):
    return {k for key, v in d.items() for k in (leaf_keys(v, f"{prefix}{key}.") if isinstance(v, dict)
                                                 else [prefix + key])}


@pytest.fixture(scope="module")
def proj(tmp_path_factory):
    # dynamic cuts its LR as soon as its 2-epoch window fills (any slope is under 1000 points an epoch), so its runs
    # differ from static's and a comparison of two seeds has a p-value and an interval.
    proj = make_project(tmp_path_factory.mktemp("exps") / "proj", dynamic={"window": 2, "slope": 1000.0})
    proj.dvc("repro")
    proj.git("add", "-A")
    proj.git("commit", "-qm", "baseline run")
    return proj


def test_adding_seeds_trains_only_the_new_pairs(proj):
    result = proj.dvc("exp", "run", "-n", "two-seeds", "-S", "seeds=[0,1]")
    assert ran(result) == ["train@static-1", "train@dynamic-1", "compare"]
    result = proj.dvc("exp", "run", "-n", "three-seeds", "-S", "seeds=[0,1,2]")
    assert ran(result) == ["train@static-2", "train@dynamic-2", "compare"]
    comparison = json.loads(proj.read("metrics/comparison.json"))
    assert comparison["seeds"] == 3 and comparison["arms"]["dynamic"]["test_acc"]["n"] == 3
    assert comparison["paired"]["dynamic"]["test_acc"]["n"] == 3
    one_seed = json.loads(proj.git("show", "HEAD:metrics/comparison.json").stdout)
    assert one_seed["seeds"] == 1 and leaf_keys(comparison) == leaf_keys(one_seed)  # metrics diff lines up
    # exp show: the headline, not a copy of every column per run; the live file, once the runs are done, says
    # only which run trained last.
    shown = json.loads(proj.dvc("exp", "show", "--json").stdout)
    assert set(shown[0]["data"]["metrics"]) == {"metrics/headline.json", "metrics/live/metrics.json"}
    assert shown[0]["data"]["metrics"]["metrics/live/metrics.json"]["data"] == {"run": "dynamic-2", "step": 3}
    columns = proj.dvc("exp", "show", "--csv").stdout.splitlines()[0].split(",")
    headline = ["acc.static", "acc.dynamic", "dynamic.verdict", "dynamic.diff", "dynamic.p", "dynamic.ci_low",
                "dynamic.ci_high", "n_seeds"]
    assert columns[columns.index("parent") + 1:][:len(headline)] == headline
    diff = proj.dvc("metrics", "diff", "--all", "two-seeds", "three-seeds").stdout
    assert "dynamic.diff" in diff and "n_seeds" in diff and "arms." not in diff
    # The details are a file to name: where the README says they went.
    details = proj.dvc("metrics", "diff", "--targets", "metrics/comparison.json", "--", "two-seeds",
                       "three-seeds").stdout
    assert "arms.dynamic.test_acc.n" in details
    proj.git("checkout", "--", "params.yaml")
    proj.dvc("checkout", "-q", check=False)


def test_two_experiments_compared_paired_by_seed(proj):
    proj.dvc("exp", "run", "-n", "raw", "-S", "normalize=false", "-S", "seeds=[0,1]")
    out = proj.path / "raw-vs-two.json"
    result = proj.run(sys.executable, "-m", "thesislab.comparison", "two-seeds", "raw", "--out", str(out))
    assert result.stdout.startswith("static: ") and "\ndynamic: " in result.stdout
    both = json.loads(out.read_text())
    assert set(both) == {"static", "dynamic"}
    pair = both["static"]["paired"]["raw"]["test_acc"]
    a = [json.loads(proj.git("show", f"{_sha(proj, 'two-seeds')}:metrics/runs/static-{s}/metrics.json").stdout)
         for s in (0, 1)]
    b = [json.loads(proj.git("show", f"{_sha(proj, 'raw')}:metrics/runs/static-{s}/metrics.json").stdout)
         for s in (0, 1)]
    assert pair["n"] == 2 and pair["mean"] == pytest.approx(
        sum(y["test_acc"] - x["test_acc"] for x, y in zip(a, b)) / 2, abs=1e-5)
    missing = proj.run(sys.executable, "-m", "thesislab.comparison", "two-seeds", "no-such-exp", check=False)
    assert missing.returncode == 2
    assert missing.stderr.strip() == ("error: no-such-exp: no such experiment, commit or branch "
                                      "(dvc exp show lists experiments)")
    proj.git("checkout", "--", "params.yaml")
    proj.dvc("checkout", "-q", check=False)


def _sha(proj, name):
    refs = proj.git("for-each-ref", "--format=%(objectname) %(refname)", "refs/exps").stdout.split("\n")
    return next(line.split()[0] for line in refs if line.endswith("/" + name))


def test_experiments_as_typed(proj):
    table = proj.dvc("exp", "show", "--csv").stdout
    assert "verdict" in table.splitlines()[0] and "two-seeds" in table
    diff = proj.dvc("metrics", "diff", "--all", "two-seeds", "raw").stdout
    assert "acc.dynamic" in diff
    out = proj.path / "dvc_plots"
    proj.dvc("plots", "diff", "two-seeds", "raw", "-o", str(out))
    html = (out / "index.html").read_text()
    assert "two-seeds" in html and "raw" in html and '"schedule"' in html  # the mean-band template's field


def test_exp_show_is_readable_in_120_columns(proj):
    """`dvc exp show` with no flags, as a 120-column terminal shows it (DVC pages its table, lines cut at the
    screen's edge): each row's accuracies, verdict, difference and p in full, for the baseline and experiments."""
    # The workspace holds a two-seed comparison, as after a first experiment (a one-seed workspace has no p or
    # CI: DVC drops null metrics, and lists a column first seen in a later row after the others).
    proj.dvc("exp", "apply", "two-seeds")
    table = proj.dvc("exp", "show").stdout.splitlines()  # not a terminal: the table DVC hands its pager
    header = next(line for line in table if "Experiment" in line)
    end = header.index("dynamic.p ") + len("dynamic.p")  # metrics are right-aligned: each cell ends here too
    assert end <= 120, header[:end]
    screen = [line[:end] for line in table]
    assert screen[table.index(header)].split() == ["Experiment", "Created", "acc.static", "acc.dynamic",
                                                   "dynamic.verdict", "dynamic.diff", "dynamic.p"], header
    assert not [line for line in screen if "\u2026" in line], "a cell cut to an ellipsis in the first 120 columns"
    shown = json.loads(proj.dvc("exp", "show", "--json").stdout)
    named = {e.get("name"): r for b in shown for e in b.get("experiments") or [] for r in e["revs"]}
    rows = {"workspace": shown[0], shown[1]["name"]: shown[1], "[two-seeds]": named["two-seeds"],
            "[raw]": named["raw"]}
    for label, row in rows.items():
        h = row["data"]["metrics"]["metrics/headline.json"]["data"]
        p = h["dynamic"].get("p")  # a one-seed baseline has none: "-"
        cells = [f"{h['acc']['static']:.5g}", f"{h['acc']['dynamic']:.5g}", *h["dynamic"]["verdict"].split(),
                 f"{h['dynamic']['diff']:.5g}", "-" if p is None else f"{p:.5g}"]
        line = next(line for line in screen if label in line.split()[:3])
        assert line.split()[-len(cells):] == cells, (label, line)
    proj.git("checkout", "--", "params.yaml")
    proj.dvc("checkout", "-q", check=False)


def test_plots_show_only_the_runs_of_the_current_params(proj):
    proj.dvc("exp", "run", "-S", "schedules=[dynamic]", "-S", "compare.baseline=dynamic")
    for quantity in ("test_acc", "lr"):
        rows = proj.read(f"plots/curves/{quantity}.csv").splitlines()[1:]
        assert rows and all(r.split(",")[1] == "dynamic" for r in rows)
    comparison = json.loads(proj.read("metrics/comparison.json"))
    assert list(comparison["arms"]) == ["dynamic"]
    proj.git("checkout", "--", "params.yaml")
    proj.dvc("checkout", "-q", check=False)


def test_two_experiments_with_no_seed_in_common_are_one_line(proj):
    proj.dvc("exp", "run", "-n", "seed-five", "-S", "seeds=[5]", "-S", "epochs=1")
    result = proj.run(sys.executable, "-m", "thesislab.comparison", "two-seeds", "seed-five", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: two-seeds and seed-five share no seed for static (seeds [0, 1] vs [5]): "
                                     "nothing to pair")
    proj.git("checkout", "--", "params.yaml")
    proj.dvc("checkout", "-q", check=False)


@pytest.mark.slow  # CI runs it after make test (make test-slow)
def test_a_torchvision_model_by_name_runs_through_dvc(proj):
    result = proj.dvc("exp", "run", "-n", "resnet", "-S", "model=resnet18")
    assert "Running stage 'train@static-0'" in result.stdout and "resnet18 on cpu" in result.stdout
    metrics = json.loads(proj.read("metrics/runs/static-0/metrics.json"))
    assert metrics["model"] == "resnet18" and metrics["epochs"] == 3
    proj.git("checkout", "--", "params.yaml")
    proj.dvc("checkout", "-q", check=False)


def comparison_cli(proj, *args):
    return proj.run(sys.executable, "-m", "thesislab.comparison", *args, check=False)


def test_the_comparison_command_refuses_what_cannot_be_compared_in_one_line(proj):
    same = comparison_cli(proj, "two-seeds", "two-seeds")
    assert same.returncode == 2
    assert same.stderr.strip() == "error: two-seeds is both the baseline and the challenger: nothing to compare"
    (proj.path / "out-dir").mkdir(exist_ok=True)
    folder = comparison_cli(proj, "two-seeds", "raw", "--out", "out-dir")
    assert folder.returncode == 2
    assert folder.stderr.strip() == "error: --out out-dir: is a folder; name a JSON file to write"
    nowhere = comparison_cli(proj, "two-seeds", "raw", "--out", "/proc/no-such/cmp.json")
    assert nowhere.returncode == 2 and nowhere.stderr.startswith("error: --out /proc/no-such/cmp.json: cannot write")
    assert nowhere.stderr.count("\n") == 1


@pytest.mark.slow  # CI runs it after make test (make test-slow)
def test_experiments_on_different_test_sets_are_refused_unless_asked(proj):
    proj.dvc("exp", "run", "-n", "more-test", "-S", "speedsigns.test_per_class=5")
    refused = comparison_cli(proj, "HEAD", "more-test")
    assert refused.returncode == 2
    assert refused.stderr.strip() == ("error: HEAD and more-test were tested on different test sets (speedsigns, 11 "
                                      "classes, 44 test images vs speedsigns, 11 classes, 55 test images); "
                                      "--different-data compares them anyway")
    proj.dvc("exp", "run", "-n", "other-images", "-S", "speedsigns.test_per_class=4", "-S", "speedsigns.seed=1")
    same_labels = comparison_cli(proj, "HEAD", "other-images")
    assert same_labels.returncode == 2 and "(the same labels, other images: test sets " in same_labels.stderr
    asked = comparison_cli(proj, "HEAD", "more-test", "--different-data")
    assert asked.returncode == 0 and asked.stdout.startswith("static: ")
    # A workspace whose params changed after its runs trained is compared with a warning that says so.
    proj.set_params(lr=0.02)
    stale = comparison_cli(proj, "HEAD", "workspace", "--different-data")
    assert stale.returncode == 0
    assert "warning: workspace: its params differ from what its runs were trained with (train@" in stale.stderr
    proj.git("checkout", "--", "params.yaml")
    proj.dvc("checkout", "-q", check=False)


def test_show_prints_the_headline_of_every_experiment_within_100_columns(proj):
    out = proj.run(sys.executable, "-m", "thesislab.show").stdout
    lines = out.splitlines()
    assert lines[0].split()[0] == "experiment" and "static %" in lines[0]
    assert all(len(line) <= 100 for line in lines), max(lines, key=len)
    names = [line.split()[0] for line in lines[1:] if line[:1] not in (" ", "(")]
    assert "workspace" in names and "two-seeds" in names and "raw" in names
    # A param that differs between the rows gets a column, or, where none fits, a line that names it.
    assert "normalize" in lines[0] or "normalize" in out.split("(also differ: ")[-1]
    shown = json.loads(proj.dvc("exp", "show", "--json").stdout)
    exp = next(r for b in shown for e in b.get("experiments") or [] if e.get("name") == "two-seeds" for r in e["revs"])
    headline = exp["data"]["metrics"]["metrics/headline.json"]["data"]
    at = next(i for i, line in enumerate(lines) if line.startswith("two-seeds"))
    assert f"{headline['acc']['static']:.2f}" in lines[at] and f"{headline['acc']['dynamic']:.2f}" in lines[at]
    # Its verdict in full, wrapped on the indented lines under it rather than cut.
    under = []
    for line in lines[at + 1:]:
        if not line.startswith("  "):
            break
        under.append(line.strip())
    comparison = json.loads(proj.git("show", f"{exp['rev']}:metrics/comparison.json").stdout)
    assert " ".join(under) == " ".join(comparison["verdict"].split())
