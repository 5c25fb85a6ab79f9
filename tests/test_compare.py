"""The comparison: verdicts on made-up runs, the layout of comparison.json, and the compare stage on run folders."""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import ROOT, TINY_PARAMS, default_params, fake_run, merge, tiny_config

from thesislab.comparison import compare as cmp
from thesislab.comparison import report
from thesislab.errors import UserError

SETTINGS = cmp.Settings(baseline="static", min_effect=0.5, target_acc=90, monitor="val", max_epochs=40)


def numbers(test_acc, lr_cuts=1, epochs_to_target=10, diverged=False):
    lrs = [0.1] * (30 - lr_cuts) + [0.1 * 0.1 ** (k + 1) for k in range(lr_cuts)]  # the cuts in the last epochs
    return {"test_acc": test_acc, "best_test_acc": None if test_acc is None else test_acc + 0.5, "epochs": 30,
            "train_seconds": 30.0, "lr_cuts": lr_cuts, "epochs_to_target": epochs_to_target, "lrs": lrs,
            "diverged": diverged}


def arms(static, dynamic, cuts=1):
    return {"static": {s: numbers(v, lr_cuts=0) for s, v in enumerate(static)},
            "dynamic": {s: numbers(v, lr_cuts=cuts) for s, v in enumerate(dynamic)}}


def verdict_of(static, dynamic, **kw):
    result = cmp.compare(arms(static, dynamic, **kw), SETTINGS)
    return result["paired"]["dynamic"]["verdict_code"], result["verdict"], result


def test_a_clear_gain_is_better_with_its_interval():
    code, text, result = verdict_of([95.0, 95.2, 94.8, 95.1, 94.9], [96.0, 96.1, 95.9, 96.2, 95.8])
    assert code == cmp.BETTER
    assert text.startswith("dynamic beats static by 1.00 points (95% CI +0.") and "5 seeds" in text
    assert result["difference"]["dynamic"]["verdict_code"] == cmp.BETTER
    assert result["difference"]["dynamic"]["p_value"] < 0.05


def test_a_clear_loss_is_worse():
    code, text, _ = verdict_of([96.0, 96.1, 95.9, 96.2, 95.8], [95.0, 95.2, 94.8, 95.1, 94.9])
    assert code == cmp.WORSE and text.startswith("dynamic trails static by 1.00 points")


def test_tiny_differences_on_many_seeds_are_equivalent():
    rng = np.random.default_rng(0)
    base = 95 + rng.normal(0, 0.5, 12)
    code, text, result = verdict_of(base.tolist(), (base + rng.normal(0, 0.05, 12)).tolist())
    assert code == cmp.EQUIVALENT and "equivalent within +-0.5 points" in text
    assert result["paired"]["dynamic"]["test_acc"]["p_equivalence"] < 0.05


def test_noise_on_three_seeds_is_inconclusive_and_says_how_many_would_do():
    code, text, result = verdict_of([95.0, 96.0, 94.5], [95.8, 95.4, 95.9])
    pair = result["paired"]["dynamic"]["test_acc"]
    assert code == cmp.INCONCLUSIVE
    assert f"3 seeds could detect {pair['mde']:.2f} points" in text
    assert f"about {pair['seeds_needed']} seeds would detect 0.5" in text and pair["seeds_needed"] > 3


def test_one_seed_gives_no_verdict():
    code, text, _ = verdict_of([95.0], [96.0])
    assert code == cmp.NO_VERDICT and text.startswith("one seed: no verdict (dynamic - static = +1.00 points")


def test_a_schedule_that_never_cut_its_lr_is_said_so_not_tested():
    code, text, result = verdict_of([95.0, 96.0, 94.5], [95.0, 96.0, 94.5], cuts=0)
    assert code == cmp.NO_VERDICT
    assert "dynamic never changed its LR before the runs stopped (0 LR cuts in 3 seeds)" in text
    assert result["paired"]["dynamic"]["test_acc"]["p_value"] is None


def test_the_same_lr_with_run_to_run_noise_is_still_not_tested():
    """On a GPU, two runs of one computation can differ in the last digits: with the LR never changed, that
    noise is not a difference between schedules, whatever a t-test would say of it."""
    code, text, result = verdict_of([95.0, 96.0, 94.5, 95.2], [95.1, 96.15, 94.58, 95.31], cuts=0)
    assert result["paired"]["dynamic"]["test_acc"]["p_value"] < 0.05  # a "significant" +0.1 from noise alone
    assert code == cmp.NO_VERDICT and "dynamic never changed its LR before the runs stopped" in text


def test_identical_accuracies_from_different_lrs_are_untestable_not_same_lr():
    code, text, _ = verdict_of([95.0, 96.0, 94.5], [95.0, 96.0, 94.5], cuts=1)
    assert code == cmp.NO_VERDICT and text == "dynamic and static gave identical test accuracy on all 3 seeds: nothing to test"


def test_one_schedule_in_two_experiments_is_compared_even_at_the_same_lr():
    a = arms([95.0, 95.2, 94.8, 95.1, 94.9], [96.0, 96.1, 95.9, 96.2, 95.8], cuts=0)  # two experiments' static runs
    result = cmp.compare(a, cmp.Settings("static", 0.5, 90, "val", 40, arms_are_schedules=False))
    assert result["paired"]["dynamic"]["verdict_code"] == cmp.BETTER


def test_several_challengers_are_holm_adjusted():
    a = arms([95.0, 95.2, 94.8, 95.1, 94.9], [96.0, 96.1, 95.9, 96.2, 95.8])
    a["cosine"] = {s: numbers(v) for s, v in enumerate([95.3, 95.0, 95.2, 95.0, 95.4])}
    result = cmp.compare(a, SETTINGS)
    raw = [result["paired"][c]["test_acc"]["p_value"] for c in ("dynamic", "cosine")]
    smaller, larger = sorted(raw)
    adjusted = {c: result["paired"][c]["test_acc"]["p_holm"] for c in ("dynamic", "cosine")}
    assert sorted(adjusted.values()) == pytest.approx([min(1, 2 * smaller), max(min(1, 2 * smaller), larger)])
    # the verdict quotes the adjusted p, not the raw one
    assert f"Holm-adjusted p = {adjusted['dynamic']:.3g}," in result["paired"]["dynamic"]["verdict"]
    assert adjusted["dynamic"] != pytest.approx(result["paired"]["dynamic"]["test_acc"]["p_value"])


def test_a_difference_no_realistic_number_of_seeds_detects_says_so():
    code, text, result = verdict_of([20.0, 90.0, 30.0, 85.0], [80.0, 30.0, 85.0, 35.0])
    assert code == cmp.INCONCLUSIVE and result["paired"]["dynamic"]["test_acc"]["seeds_needed"] is None
    assert text.endswith("more than 1,000 seeds would detect 0.5")


def test_numbers_no_one_can_read_are_said_in_words():
    """Two seeds far apart: the t interval (12.7 standard errors wide) runs past +-100 points, the detectable
    difference past 100, and the seeds needed into the thousands: each said in words, not as a number."""
    code, text, result = verdict_of([42.0, 44.0], [30.0, 2.0])
    acc = result["paired"]["dynamic"]["test_acc"]
    assert code == cmp.INCONCLUSIVE and acc["ci95_low"] < -100 and acc["mde"] > 100
    assert 1000 < acc["seeds_needed"] <= 100_000
    assert text == ("inconclusive: dynamic - static = -27.00 points (2 seeds are too few for a useful interval, "
                    f"p = {acc['p_value']:.3g}); 2 seeds could not detect even a 100-point difference, more than "
                    "1,000 seeds would detect 0.5")
    # readable numbers stay numbers: test_noise_on_three_seeds_is_inconclusive_and_says_how_many_would_do


def keys(tree, prefix=""):
    if isinstance(tree, dict):
        return {k for key, v in tree.items() for k in keys(v, f"{prefix}{key}.")} | {prefix}
    return {prefix}


def test_comparison_has_the_same_keys_for_one_seed_and_five():
    one = cmp.compare(arms([95.0], [96.0]), SETTINGS)
    five = cmp.compare(arms([95.0, 95.2, 94.8, 95.1, 94.9], [96.0, 96.1, 95.9, 96.2, 95.8]), SETTINGS)
    assert keys(one) == keys(five)
    json.dumps(one, allow_nan=False)  # null, never NaN
    needed = {"n", "mean", "std", "ci95_low", "ci95_high", "min", "max"}
    for q in ("test_acc", "best_test_acc", "epochs", "train_seconds", "epochs_to_target"):
        assert needed <= set(five["arms"]["static"][q])
    paired = five["paired"]["dynamic"]
    assert {"mean", "ci95_low", "ci95_high", "p_value", "p_wilcoxon", "wins", "cohens_dz", "mde", "seeds_needed",
            "p_equivalence", "p_holm"} <= set(paired["test_acc"])
    assert {"verdict", "verdict_code", "epochs_to_target"} <= set(paired)
    assert five["arms"]["dynamic"]["lr_cuts"]["mean"] == 1


def rows(accs, monitor="val"):
    return [{"epoch": e, f"{monitor}_acc": a} for e, a in enumerate(accs, 1)]


def test_epochs_to_target_counts_runs_that_never_reach_it():
    assert cmp.epochs_to_target(rows([50, 89.9, 90.0, 95]), SETTINGS) == 3
    assert cmp.epochs_to_target(rows([50, 80, 85]), SETTINGS) == 41  # behind every run that got there
    s = cmp.Settings("static", 0.5, 90, "test", 40)
    assert cmp.epochs_to_target(rows([91, 92], monitor="test"), s) == 1
    result = cmp.compare({"static": {0: numbers(95, 0, 41), 1: numbers(95, 0, 12)},
                          "dynamic": {0: numbers(95, 1, 20), 1: numbers(95, 1, 10)}}, SETTINGS)
    reach = result["arms"]["static"]["epochs_to_target"]
    assert (reach["reached"], reach["n"], reach["mean"]) == (1, 2, 26.5)
    assert result["paired"]["dynamic"]["epochs_to_target"]["mean"] == pytest.approx(-11.5)


# --- the compare stage on run folders ----------------------------------------------------------------------------


def write_run(runs_dir, schedule, seed, accs, lrs, config="c1"):
    rows = [{"lr": lr, "train_loss": 1.0 / e, "train_acc": a, "val_acc": a, "test_acc": a}
            for e, (a, lr) in enumerate(zip(accs, lrs), 1)]
    fake_run(runs_dir, schedule, seed, rows, config=config)


def compare_stage(tmp_path, seeds, **params):
    raw = merge(default_params(), merge(TINY_PARAMS, {"seeds": seeds, **params}))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    cmd = [sys.executable, "-m", "stages.compare", "--runs", "runs", "--out", "comparison.json", "--headline",
           "headline.json", "--plots", "plots", "--curves", "plots/curves"]
    return subprocess.run(cmd, cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


def test_compare_stage_reads_exactly_the_runs_params_name(tmp_path):
    for seed in (0, 1, 2):
        write_run(tmp_path / "runs", "static", seed, [80, 90, 91], [0.1] * 3)
        write_run(tmp_path / "runs", "dynamic", seed, [80, 90, 93 + seed], [0.1, 0.1, 0.01])
    write_run(tmp_path / "runs", "dynamic", 7, [10, 10, 10], [0.1] * 3)  # an earlier experiment's seed
    r = compare_stage(tmp_path, [0, 1, 2])
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "comparison.json").read_text())
    assert result["seeds"] == 3 and result["arms"]["dynamic"]["test_acc"]["mean"] == 94.0
    assert result["verdict"] in r.stdout
    headline = json.loads((tmp_path / "headline.json").read_text())
    assert headline["acc"] == {"static": 91.0, "dynamic": 94.0} and headline["n_seeds"] == 3
    for name in ("overview", "accuracy", "val_accuracy", "loss", "lr", "paired", "confusion"):
        assert (tmp_path / "plots" / f"{name}.png").stat().st_size > 0
    table = (tmp_path / "plots" / "comparison.md").read_text()
    assert "| dynamic | 94.00 +- 1.00 (3) |" in table and result["verdict"] in table
    curve = (tmp_path / "plots" / "curves" / "test_acc.csv").read_text().splitlines()
    assert curve[0] == "epoch,schedule,mean,std,low,high,running"
    assert "3,dynamic,94,1,93,95,3" in curve


def test_compare_stage_refuses_runs_of_two_configurations(tmp_path):
    write_run(tmp_path / "runs", "static", 0, [80, 90], [0.1] * 2, config="c1")
    write_run(tmp_path / "runs", "dynamic", 0, [80, 90], [0.1] * 2, config="c2")
    r = compare_stage(tmp_path, [0])
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: runs: the runs were made with different params or data; `dvc repro` reruns the stale ones"]


def test_compare_stage_names_a_missing_run(tmp_path):
    write_run(tmp_path / "runs", "static", 0, [80, 90], [0.1] * 2)
    r = compare_stage(tmp_path, [0])
    assert r.returncode == 2 and "run train@dynamic-0 first" in r.stderr and "Traceback" not in r.stderr


def test_comparison_json_has_exactly_the_documented_layout():
    """README documents these keys: a renamed key would break users' `dvc metrics diff` and scripts."""
    result = cmp.compare(arms([95.0, 95.2, 94.8], [96.0, 96.1, 95.9]), SETTINGS)
    assert list(result) == ["verdict", "seeds", "diverged", "mean_test_acc", "difference", "arms", "paired",
                            "settings"]
    assert result["seeds"] == 3 and result["mean_test_acc"] == {"static": 95.0, "dynamic": 96.0}
    assert list(result["difference"]["dynamic"]) == ["verdict_code", "mean", "ci95_low", "ci95_high", "p_value"]
    assert result["difference"]["dynamic"]["mean"] == pytest.approx(1.0)
    assert result["settings"] == {"baseline": "static", "min_effect": 0.5, "target_acc": 90, "monitor": "val",
                                  "alpha": 0.05, "power": 0.8}
    assert list(result["arms"]["static"]) == ["test_acc", "best_test_acc", "epochs", "train_seconds",
                                              "epochs_to_target", "lr_cuts"]
    assert list(result["paired"]["dynamic"]) == ["test_acc", "epochs_to_target", "verdict_code", "verdict"]


def test_the_headline_is_the_comparison_in_a_readers_words_and_digits():
    """headline.json (what `dvc exp show` lists): each number as comparison.json has it, rounded as a reader
    quotes it; each challenger's verdict in one word, from its code; the keys in the documented order."""
    result = cmp.compare(arms([95.0, 95.2, 94.8, 95.1, 94.9], [96.0, 96.13, 95.9, 96.2, 95.8]), SETTINGS)
    headline = report.headline(result)
    d = result["difference"]["dynamic"]
    assert list(headline) == ["acc", "dynamic", "n_seeds"]
    assert headline["acc"] == {"static": 95.0, "dynamic": round(result["mean_test_acc"]["dynamic"], 2)} == {
        "static": 95.0, "dynamic": 96.01}
    assert headline["dynamic"] == {"verdict": "beats", "diff": round(d["mean"], 2), "p": float(f"{d['p_value']:.3g}"),
                                   "ci_low": round(d["ci95_low"], 2), "ci_high": round(d["ci95_high"], 2)}
    assert headline["n_seeds"] == 5


@pytest.mark.parametrize("static, dynamic, word", [
    ([95.0, 95.2, 94.8, 95.1, 94.9], [96.0, 96.1, 95.9, 96.2, 95.8], "beats"),
    ([96.0, 96.1, 95.9, 96.2, 95.8], [95.0, 95.2, 94.8, 95.1, 94.9], "trails"),
    ([95.0, 96.0, 94.5], [95.8, 95.4, 95.9], "inconclusive"),
    ([95.0], [96.0], "no verdict"),
])
def test_the_headline_says_each_verdict_in_its_own_word(static, dynamic, word):
    headline = report.headline(cmp.compare(arms(static, dynamic), SETTINGS))
    assert headline["dynamic"]["verdict"] == word
    if len(static) == 1:
        assert headline["dynamic"]["p"] is None  # one seed: no test, shown as "-", not a made-up number


def test_a_runs_numbers_come_from_its_summary_and_log():
    run = fake_run_in_memory(
        rows=[{"epoch": 1, "lr": 0.1, "val_acc": 80.0, "test_acc": 79.0},
              {"epoch": 2, "lr": 0.01, "val_acc": 91.0, "test_acc": 90.0}],
        summary={"test_acc": 90.0, "best_test_acc": 90.5, "epochs": 2, "train_seconds": 3.5})
    assert cmp.run_numbers(run, SETTINGS) == {"test_acc": 90.0, "best_test_acc": 90.5, "epochs": 2,
                                               "train_seconds": 3.5, "lr_cuts": 1, "epochs_to_target": 2,
                                               "lrs": [r["lr"] for r in run.rows], "diverged": False}


def fake_run_in_memory(rows, summary):
    from thesislab import files

    return files.Run("dynamic-0", rows, summary, None)


def test_several_challengers_join_their_verdicts_and_one_is_not_holm_adjusted():
    one = cmp.compare(arms([95.0, 95.2, 94.8, 95.1, 94.9], [96.0, 96.1, 95.9, 96.2, 95.8]), SETTINGS)
    assert "Holm" not in one["verdict"]
    a = arms([95.0, 95.2, 94.8, 95.1, 94.9], [96.0, 96.1, 95.9, 96.2, 95.8])
    a["cosine"] = {s: numbers(v) for s, v in enumerate([95.3, 95.0, 95.2, 95.0, 95.4])}
    two = cmp.compare(a, SETTINGS)
    assert two["verdict"] == two["paired"]["dynamic"]["verdict"] + "; " + two["paired"]["cosine"]["verdict"]


def test_two_experiments_share_one_definition_of_each_compared_quantity():
    """Epochs to the target must mean the same in both experiments: one split, one censoring value."""
    import dataclasses

    from thesislab import config
    from thesislab.comparison.experiments import shared_settings

    a = config.Config()
    b = dataclasses.replace(a, monitor="test", epochs=60, compare=dataclasses.replace(a.compare, target_acc=50.0))
    s = shared_settings("exp-a", a, b)
    assert (s.baseline, s.monitor, s.max_epochs, s.target_acc, s.arms_are_schedules) == ("exp-a", "test", 60, 90.0,
                                                                                          False)
    assert shared_settings("exp-a", a, a).monitor == "val"
    never = [{"epoch": e, "val_acc": 10.0, "test_acc": 10.0} for e in (1, 2)]
    assert cmp.epochs_to_target(never, s) == 61  # the longer experiment's limit + 1, for runs of either


def test_one_schedule_says_there_is_nothing_to_compare():
    result = cmp.compare({"dynamic": arms([95.0, 96.0], [95.5, 96.5])["dynamic"]},
                         cmp.Settings("dynamic", 0.5, 90, "val", 40))
    assert result["verdict"] == "one schedule (dynamic): nothing to compare it with; add another to schedules"
    assert result["difference"] == {} and result["paired"] == {} and result["arms"]["dynamic"]["test_acc"]["n"] == 2


def test_a_challenger_that_stopped_sooner_without_a_cut_did_not_train_the_same():
    """dynamic with max_reductions 0 stops at its first plateau without cutting: its LR equalled static's in
    every epoch it ran, but it ran fewer, so the runs differ and are tested."""
    a = arms([80.0, 80.5, 79.5, 80.2, 79.8], [60.0, 61.0, 59.0, 60.5, 59.5], cuts=0)
    for numbers_ in a["dynamic"].values():
        numbers_["lrs"] = numbers_["lrs"][:12]
    code, text = cmp.compare(a, SETTINGS)["paired"]["dynamic"]["verdict_code"], cmp.compare(a, SETTINGS)["verdict"]
    assert code == cmp.WORSE and text.startswith("dynamic trails static by 20.00 points")


def test_ctrl_c_during_compare_leaves_every_output_as_it_was(tmp_path, monkeypatch):
    """The comparison, curves, figures and table change together: an interrupt while the table is being
    written (the last output) leaves the previous comparison.json and figures, not new ones beside old."""
    for seed in (0, 1):
        write_run(tmp_path / "runs", "static", seed, [80, 90], [0.1] * 2)
        write_run(tmp_path / "runs", "dynamic", seed, [80, 92 + seed], [0.1, 0.01])
    assert compare_stage(tmp_path, [0, 1]).returncode == 0
    def outputs():
        return {p: p.read_bytes() for p in sorted(tmp_path.rglob("*"))
                if p.is_file() and "runs" not in p.parts and p.name != "params.yaml"}

    before = outputs()
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["compare"]["min_effect"] = 3  # another comparison: every output would change
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    import stages.compare as stage
    from thesislab.comparison import report

    def interrupted(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "markdown", interrupted)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["compare", "--runs", "runs", "--out", "comparison.json", "--headline",
                                      "headline.json", "--plots", "plots", "--curves", "plots/curves"])
    with pytest.raises(SystemExit) as exit_:
        stage.main()
    assert exit_.value.code == 130
    assert outputs() == before


def test_a_p_too_small_to_print_reads_below_the_floor_not_zero():
    static = [90.0 + 0.01 * k for k in range(12)]
    a = arms(static, [v + 5.0 + 0.001 * (k % 3) for k, v in enumerate(static)])
    a["cosine"] = {s: numbers(v + 4.0 + 0.002 * (s % 2)) for s, v in enumerate(static)}
    result = cmp.compare(a, SETTINGS)
    assert result["paired"]["dynamic"]["test_acc"]["p_holm"] < 1e-6
    assert "Holm-adjusted p < 1e-06," in result["paired"]["dynamic"]["verdict"]
    assert "p = 0," not in result["verdict"] and "p = 0)" not in result["verdict"]


def _damage_metrics(folder, change):
    path = folder / "metrics.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


@pytest.mark.parametrize("damage, says", [
    (lambda f: (f / "plots/metrics/test_acc.tsv").write_text("epoch\ttest_acc\n1\t80\n"),
     "static-0/plots/metrics/test_acc.tsv: its header is ['epoch', 'test_acc'], not step<TAB>test_acc"),
    (lambda f: (f / "plots/metrics/lr.tsv").write_text("step\tlr\n1\tfast\n"), "static-0/plots/metrics/lr.tsv:2:"),
    (lambda f: (f / "predictions.csv").unlink(), "static-0/predictions.csv: missing or unreadable"),
    (lambda f: _damage_metrics(f, lambda m: {**m, "test_acc": "95"}), "static-0/metrics.json: test_acc is '95'"),
    (lambda f: _damage_metrics(f, lambda m: [m]), "static-0/metrics.json: holds a list, not a run's summary"),
    (lambda f: _damage_metrics(f, lambda m: {k: v for k, v in m.items() if k != "seed"}),
     "static-0/metrics.json: seed is 'missing'"),
    (lambda f: (f / "metrics.json").write_text("{"), "static-0/metrics.json: unreadable"),
])
def test_a_damaged_run_folder_is_one_line_naming_the_file_and_the_cure(tmp_path, damage, says):
    for s in ("static", "dynamic"):
        write_run(tmp_path / "runs", s, 0, [80, 90], [0.1] * 2)
    damage(tmp_path / "runs" / "static-0")
    r = compare_stage(tmp_path, [0])
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], lines
    assert lines[0].endswith("the run's folder is damaged: `dvc repro -f -s train@static-0` trains it again")
    assert not (tmp_path / "comparison.json").exists()


def test_diverged_runs_come_first_in_the_verdict():
    everything = {"static": {s: numbers(None, 0, 41, diverged=True) for s in range(3)},
                  "dynamic": {s: numbers(None, 0, 41, diverged=True) for s in range(3)}}
    result = cmp.compare(everything, SETTINGS)
    assert result["verdict"] == "all 6 runs diverged: no comparison (try a smaller lr)"
    assert result["diverged"] == {"static": 3, "dynamic": 3}
    some = arms([95.0, 95.2, 94.8, 95.1, 94.9], [96.0, 96.1, 95.9, 96.2, 95.8])
    for seed in (1, 3):
        some["dynamic"][seed] = numbers(None, 0, 41, diverged=True)
    result = cmp.compare(some, SETTINGS)
    assert result["verdict"].startswith("2 of 5 dynamic runs diverged; ")
    assert result["diverged"] == {"static": 0, "dynamic": 2}
    assert not cmp.compare(arms([95.0, 95.2], [96.0, 96.1]), SETTINGS)["verdict"].startswith(("all", "0 of"))


def test_runs_of_portable_and_native_arithmetic_are_refused_naming_the_arithmetic(tmp_path):
    """Not "params or data": the digests differ because the arithmetic does, and the line says how."""
    from thesislab import files

    for schedule, portable in (("static", True), ("dynamic", False)):
        write_run(tmp_path / "runs", schedule, 0, [80, 90], [0.1] * 2, config=f"c-{portable}")
        metrics = tmp_path / "runs" / f"{schedule}-0" / "metrics.json"
        metrics.write_text(json.dumps({**json.loads(metrics.read_text()),
                                       "computation": {"portable": portable, "threads": 1}}))
    runs = {s: [files.read_run(tmp_path / "runs", f"{s}-0")] for s in ("static", "dynamic")}
    with pytest.raises(UserError) as err:
        cmp.check_runs(runs, [0], "runs")
    assert str(err.value) == ("runs: the runs were made with another arithmetic (portable True in static-0, False in "
                              "dynamic-0); `dvc repro` reruns the stale ones")


def test_runs_of_one_schedule_made_with_different_knobs_are_refused(tmp_path):
    from thesislab import files

    for seed in (0, 1):
        write_run(tmp_path / "runs", "static", seed, [80, 90], [0.1] * 2)
        write_run(tmp_path / "runs", "dynamic", seed, [80, 90], [0.1] * 2)
    metrics = tmp_path / "runs" / "dynamic-1" / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "schedule_params": {"window": 4}}))
    runs = {s: [files.read_run(tmp_path / "runs", f"{s}-{seed}") for seed in (0, 1)] for s in ("static", "dynamic")}
    with pytest.raises(UserError, match="the dynamic runs were made with different dynamic params"):
        cmp.check_runs(runs, [0, 1], "runs")


# --- every decision the comparison makes, just on each side of its boundary --------------------------------------


def crafted_pair(p, p_equivalence=0.5, mean=1.0):
    acc = {"n": 5, "seeds": [0, 1, 2, 3, 4], "mean": mean, "ties": 0, "p_value": p, "p_holm": p,
           "ci95_low": mean - 1, "ci95_high": mean + 1, "p_equivalence": p_equivalence, "seeds_needed": 12, "mde": 1.2}
    return {"test_acc": acc}


@pytest.mark.parametrize("p, code", [(0.0499, cmp.BETTER), (0.05, cmp.INCONCLUSIVE), (0.0501, cmp.INCONCLUSIVE)])
def test_the_verdict_turns_on_p_at_alpha(p, code):
    a = arms([95.0] * 5, [96.0] * 5)
    assert cmp.verdict("dynamic", "static", crafted_pair(p), a, SETTINGS)[0] == code
    assert cmp.verdict("dynamic", "static", crafted_pair(p, mean=-1.0), a, SETTINGS)[0] == (
        cmp.WORSE if code == cmp.BETTER else code)


@pytest.mark.parametrize("p_eq, code", [(0.0499, cmp.EQUIVALENT), (0.0501, cmp.INCONCLUSIVE)])
def test_equivalence_turns_on_its_p_at_alpha(p_eq, code):
    a = arms([95.0] * 5, [96.0] * 5)
    assert cmp.verdict("dynamic", "static", crafted_pair(0.6, p_equivalence=p_eq, mean=0.1), a, SETTINGS)[0] == code


@pytest.mark.parametrize("inside", [True, False])
def test_equivalence_holds_exactly_when_the_90_percent_interval_is_inside_the_margin(inside):
    """TOST at alpha 0.05 is the 90% interval inside +-min_effect: a margin a hair wider than the interval's far
    end gives "equivalent", a hair narrower does not (real data through compare, not a crafted p)."""
    from scipy import stats

    static = [95.0, 95.2, 94.8, 95.1, 94.9, 95.3]
    diffs = np.array([0.30, -0.20, 0.10, -0.25, 0.20, -0.10])  # no real difference (p far above alpha)
    far = abs(diffs.mean()) + stats.t.ppf(0.95, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs))
    margin = round(far + (1e-3 if inside else -1e-3), 6)
    settings = cmp.Settings(baseline="static", min_effect=margin, target_acc=90, monitor="val", max_epochs=40)
    result = cmp.compare(arms(static, [s + d for s, d in zip(static, diffs)]), settings)
    assert result["paired"]["dynamic"]["test_acc"]["p_value"] > 0.5
    code = result["paired"]["dynamic"]["verdict_code"]
    assert code == (cmp.EQUIVALENT if inside else cmp.INCONCLUSIVE), result["verdict"]


def test_a_run_that_reaches_the_target_at_the_last_epoch_counts_and_one_just_under_does_not():
    s = cmp.Settings("static", 0.5, 90, "val", 3)
    assert cmp.epochs_to_target(rows([50, 80, 90.0]), s) == 3  # exactly the target, at the last epoch
    assert cmp.epochs_to_target(rows([50, 80, 89.9999]), s) == 4  # never: max_epochs + 1


def test_a_decision_on_far_from_normal_differences_says_so():
    """One seed far out (+4 points where the others gain about 1): "beats" by the t test, with the caution,
    naming the seed; normal-looking differences carry none."""
    base = [95.0, 95.2, 94.8, 95.1, 94.9, 95.0, 95.3, 94.7, 95.1, 94.9, 95.0, 95.2]
    gains = [1.0, 1.2, 0.9, 1.1, 0.8, 1.0, 1.1, 1.05, 0.95, 1.15, 0.85, 4.0]
    code, text, result = verdict_of(base, [b + g for b, g in zip(base, gains)])
    assert code == cmp.BETTER
    assert text.startswith("dynamic beats static") and "(caution: the seeds' differences look far from normal (" in text
    assert "seed 11 an outlier" in text and result["paired"]["dynamic"]["test_acc"]["outlier_seed"] == 11
    code, text, _ = verdict_of([95.0, 95.2, 94.8, 95.1, 94.9], [96.0, 96.1, 95.9, 96.2, 95.8])
    assert code == cmp.BETTER and "caution" not in text


def test_under_a_sequential_design_the_headline_is_the_looks_not_the_descriptive_p():
    """A design decides on its look's repeated CI: the headline shows that look's difference and interval, with
    the design's word (continue here), and no fixed-n p beside it (descriptive under a design)."""
    from conftest import tiny_config

    from thesislab.comparison import looks

    static, dynamic = [95.0, 96.0, 94.5, 95.5, 95.0], [95.8, 95.4, 95.9, 95.1, 96.2]
    a = arms(static, dynamic)
    cfg = tiny_config(seeds=list(range(5)), compare={"sequential": {"max_seeds": 15, "every": 5}})
    diffs = {"dynamic": {s: d - b for s, (b, d) in enumerate(zip(static, dynamic))}}
    record, _ = looks.advance({}, cfg, {"static": [], "dynamic": []}, diffs)
    result = cmp.with_design(cmp.compare(a, SETTINGS), record, a)
    headline = report.headline(result)["dynamic"]
    look = record["looks"][-1]["challengers"]["dynamic"]
    assert headline == {"verdict": "continue", "diff": round(look["mean"], 2), "p": None,
                        "ci_low": round(look["low"], 2), "ci_high": round(look["high"], 2)}
    assert (headline["ci_low"], headline["ci_high"]) != (round(result["difference"]["dynamic"]["ci95_low"], 2),
                                                         round(result["difference"]["dynamic"]["ci95_high"], 2))


class FilesAt:
    """An experiment's files as comparison.experiments reads them (Revision's interface)."""

    def __init__(self, name, files):
        self.name, self.files = name, files

    def must_read(self, path):
        if path not in self.files:
            raise UserError(f"{self.name}: no {path}")
        return self.files[path]


def test_two_experiments_that_computed_differently_are_compared_with_a_note_saying_how(capsys, monkeypatch):
    from thesislab.comparison import __main__ as cli
    from thesislab.comparison import experiments

    def experiment(name, portable):
        kernels = "portable (AVX2, MKL compatible)" if portable else "native (AVX512; AuthenticAMD)"
        return FilesAt(name, {
            "dvc.yaml": "stages:\n  compare:\n    cmd: python -m stages.compare --runs metrics/runs --out x\n",
            "metrics/runs/static-0/metrics.json": json.dumps({"computation": {
                "threads": 1, "portable": portable, "cpu_kernels": kernels}})})

    cfg = tiny_config(seeds=[0])
    a, b = experiment("portable-run", True), experiment("native-run", False)
    assert experiments.computation_difference(a, cfg, a, cfg) == {}
    differs = experiments.computation_difference(a, cfg, b, cfg)
    assert differs == {"cpu_kernels": ["portable (AVX2, MKL compatible)", "native (AVX512; AuthenticAMD)"],
                       "portable": [True, False]}
    monkeypatch.setattr(cli, "compare_experiments", lambda *args, **kw: {
        "static": {"verdict": "inconclusive", "computation_differs": differs}})
    cli.main(["portable-run", "native-run"])
    out, err = capsys.readouterr()
    assert out == "static: inconclusive\n"
    assert err == ("note: portable-run and native-run computed differently (cpu_kernels portable (AVX2, MKL "
                   "compatible) vs native (AVX512; AuthenticAMD), portable True vs False): the difference between "
                   "them is partly the arithmetic's, not only their params'\n")
