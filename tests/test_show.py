"""python -m thesislab.show's table: the params that tell rows apart first, each verdict wrapped under its row,
--all."""

import pytest

from thesislab import show

LONG = ("inconclusive: dynamic - static = +1.70 points (95% CI -0.40 to +3.80, p = 0.0736); 3 seeds could "
        "detect 2.76 points, about 25 seeds would detect 0.5")


def row(name, verdict=LONG, **params):
    return (name, {"seeds": [0, 1, 2], "normalize": True, "lr": 0.05, "model": "signnet", **params},
            {"acc": {"static": 94.39, "dynamic": 96.09}, "n_seeds": 3, "verdict": verdict})


def test_the_params_that_tell_most_rows_apart_come_first():
    table = [row("workspace"), row("a", lr=0.01), row("b", lr=0.02, normalize=False), row("c", lr=0.03)]
    header = show.render(table, width=200).splitlines()[0].split()
    # lr has 4 values, normalize 2 (and comes first in params.yaml): lr first; model and seeds never differ.
    assert header[:3] == ["experiment", "lr", "normalize"] and "model" not in header
    assert header[3:] == ["seeds", "static", "%", "dynamic", "%"]


def test_each_verdict_is_wrapped_under_its_row_not_cut():
    other = "dynamic beats static by 1.00 points (95% CI +0.50 to +1.50, p = 0.01, 5 seeds)"
    lines = show.render([row("workspace"), row("main", verdict=other)], width=70).splitlines()
    assert all(len(line) <= 70 for line in lines)
    assert lines[1].split() == ["workspace", "3", "94.39", "96.09"]
    at = lines.index(next(line for line in lines if line.startswith("main")))
    under_workspace, under_main = lines[2:at], lines[at + 1:]
    assert len(under_workspace) > 1 and all(line.startswith(show.INDENT + line.strip()) for line in under_workspace)
    assert " ".join(line.strip() for line in under_workspace) == LONG
    assert " ".join(line.strip() for line in under_main) == other


def test_params_that_do_not_fit_are_named_and_all_shows_them():
    wide = {f"augmentation.knob_{i}": i for i in range(3)}
    table = [row("workspace"), row("x", **{k: v + 10 for k, v in wide.items()})]
    narrow = show.render(table, width=80)
    assert "(also differ: " in narrow and "--all shows them" in narrow
    hidden = narrow.split("(also differ: ")[1].split(";")[0].replace("\n", " ").split(", ")
    assert hidden and all(k in wide for k in hidden)
    assert all(k not in narrow.splitlines()[0] for k in hidden)
    everything = show.render(table, width=80, everything=True)
    assert all(k in everything.splitlines()[0] for k in wide) and "also differ" not in everything


def test_each_row_gets_its_own_verdict_and_older_commits_and_queued_runs_say_what_they_have():
    """The verdict sentence comes from the row's own comparison.json; a commit made before headline.json (its
    comparison.json was the declared metric) shows its accuracies, seeds and verdict from that metric; a queued
    experiment has no results (DVC gives it none), so it shows its state, not its parent's numbers."""
    headline = {"metrics/headline.json": {"data": {"acc": {"static": 94.0, "dynamic": 96.5}, "n_seeds": 3}}}
    older = {"metrics/comparison.json": {"data": {"verdict": "dynamic beats static by 1.00 points", "seeds": 5,
                                                  "mean_test_acc": {"static": 95.0, "dynamic": 96.0}}}}
    shown = [{"rev": "workspace", "data": {"params": {"params.yaml": {"data": {"lr": 0.02}}}, "metrics": headline}},
             {"rev": "abcdef1234", "data": {"params": {"params.yaml": {"data": {"lr": 0.05}}}, "metrics": older},
              "experiments": [{"name": "later", "executor": {"state": "queued"},
                               "revs": [{"rev": "5555555555", "data": {"params": {"params.yaml": {
                                   "data": {"lr": 0.1}}}, "metrics": {}}}]}]}]
    comparisons = {"workspace": {"verdict": "dynamic beats static by 2.50 points", "seeds": 3},
                   "5555555555": {"verdict": "the parent's verdict, not this experiment's"}}
    table = show.rows(shown, comparisons.get)
    assert table == [
        ("workspace", {"lr": 0.02}, {"acc": {"static": 94.0, "dynamic": 96.5}, "n_seeds": 3,
                                     "verdict": "dynamic beats static by 2.50 points"}),
        ("abcdef1", {"lr": 0.05}, {"acc": {"static": 95.0, "dynamic": 96.0}, "n_seeds": 5,
                                   "verdict": "dynamic beats static by 1.00 points"}),
        ("later", {"lr": 0.1}, {"verdict": "(queued)"})]
    lines = show.render(table).splitlines()
    assert lines[3].split() == ["abcdef1", "0.05", "5", "95.00", "96.00"]
    assert lines[4] == show.INDENT + "dynamic beats static by 1.00 points"
    assert lines[5].split() == ["later", "0.1", "-", "-", "-"] and lines[6] == show.INDENT + "(queued)"


def test_a_failed_experiment_shows_that_it_failed_not_its_parents_results():
    """As `dvc exp show --json` gives it (captured from DVC 3.67 after a queued `-S lr=0` failed at the check
    stage): its row holds its parent's headline.json, and only the executor's state and the error say it failed."""
    parent = {"metrics/headline.json": {"data": {"acc": {"static": 94.0, "dynamic": 96.5}, "n_seeds": 3}}}
    shown = [{"rev": "abcdef1234", "data": {"params": {"params.yaml": {"data": {"lr": 0.01}}}, "metrics": parent},
              "experiments": [{"name": "badlr", "executor": {"state": "failed", "name": None,
                                                             "local": {"returncode": 255}},
                               "revs": [{"rev": "c24b87282f", "name": "badlr",
                                         "error": {"msg": "Experiment run failed", "type": ""},
                                         "data": {"params": {"params.yaml": {"data": {"lr": 0}}},
                                                  "metrics": parent}}]}]}]
    comparisons = {"abcdef1234": {"verdict": "the parent's verdict"}, "c24b87282f": {"verdict": "the parent's verdict"}}
    table = show.rows(shown, comparisons.get)
    assert table[1] == ("badlr", {"lr": 0}, {"verdict": "(failed)"})
    # The error alone (an executor DVC no longer knows) says so too.
    del shown[0]["experiments"][0]["executor"]
    assert show.rows(shown, comparisons.get)[1] == ("badlr", {"lr": 0}, {"verdict": "(failed)"})


@pytest.mark.parametrize("headline, verdict, wrong", [
    ({"acc": [94.0, 96.5], "n_seeds": 3}, "fine", "acc is not each schedule's accuracy"),
    ({"acc": {"static": "high"}, "n_seeds": 3}, "fine", "acc is not each schedule's accuracy"),
    ({"acc": {"static": 94.0}, "n_seeds": "three"}, "fine", "n_seeds is not a number"),
    ({"acc": {"static": 94.0}, "n_seeds": 3}, {"text": "not a sentence"}, "the verdict is not a sentence"),
    ({"acc": {"static": 94.0}, "n_seeds": 3}, 42, "the verdict is not a sentence")])
def test_a_damaged_results_file_is_one_note_on_its_row_never_a_crash(headline, verdict, wrong):
    shown = [{"rev": "workspace", "data": {"params": {"params.yaml": {"data": {"lr": 0.02}}},
                                           "metrics": {"metrics/headline.json": {"data": headline}}}}]
    table = show.rows(shown, lambda rev: {"verdict": verdict})
    assert table == [("workspace", {"lr": 0.02}, {"verdict": f"(damaged results: {wrong}; dvc exp show --json shows "
                                                             "the files as they are)"})]
    lines = show.render(table).splitlines()
    assert lines[1].split() == ["workspace", "-"] and "damaged results" in lines[2]
