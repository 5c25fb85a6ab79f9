"""From finished runs to a comparison: each arm summarised over seeds, each challenger paired with the baseline
by seed, and a verdict that says "better", "worse", "equivalent", "inconclusive" or why there is none.

An arm is a schedule (the compare stage: static vs dynamic) or an experiment (thesislab.comparison.experiments:
normalize off vs on); either way it is {seed: the run's numbers}.
"""

import json
import math
from dataclasses import dataclass

from thesislab.comparison import looks, statistics
from thesislab.comparison.sequential import BETTER, EQUIVALENT, INCONCLUSIVE, NO_VERDICT, WORSE
from thesislab.errors import UserError
from thesislab.train.log import lr_cut_epochs

QUANTITIES = ("test_acc", "best_test_acc", "epochs", "train_seconds")  # summarised per arm
# verdict_code (so that metrics diff can show it): BETTER 1, WORSE -1, EQUIVALENT 0, INCONCLUSIVE 2, NO_VERDICT 3,
# CONTINUE 4 (a sequential design still looking)


@dataclass(frozen=True)
class Settings:
    baseline: str  # the arm every other is compared with
    min_effect: float  # accuracy points worth detecting; also the equivalence margin
    target_acc: float  # for epochs to reach it on the monitored split
    monitor: str  # "val" or "test"
    max_epochs: int  # a run that never reaches target_acc counts as max_epochs + 1
    # The arms are schedules of one experiment (the compare stage), not one schedule in two experiments: only then
    # does "trained at the baseline's LR throughout" mean "the same computation".
    arms_are_schedules: bool = True


def check_runs(runs, seeds, where):
    """runs: {schedule: [files.Run per seed]}. Refuse a folder holding another run than its name says, or runs of
    different params, data or code (their summaries' config digests differ): a comparison of one configuration."""
    digests = set()
    for schedule, per_seed in runs.items():
        for seed, run in zip(seeds, per_seed):
            if (run.summary.get("schedule"), run.summary.get("seed")) != (schedule, seed):
                raise UserError(f"{run.folder}: holds schedule {run.summary.get('schedule')!r} seed "
                                f"{run.summary.get('seed')!r}, not {schedule} seed {seed}; rerun train@{run.name}")
            digests.add(run.summary.get("config"))
        knobs = {json.dumps(run.summary.get("schedule_params"), sort_keys=True) for run in per_seed}
        if len(knobs) > 1:
            raise UserError(f"{where}: the {schedule} runs were made with different {schedule} params; "
                            "`dvc repro` reruns the stale ones")
    if len(digests) > 1:
        raise UserError(f"{where}: the runs were made with {_what_differs(runs)}; `dvc repro` reruns the stale ones")


def _what_differs(runs) -> str:
    """The arithmetic, named key by key between the first run and the first that computed otherwise (portable
    against native, another torch or thread count); else the params or data."""
    every = [run for per_seed in runs.values() for run in per_seed]
    first = every[0].summary.get("computation") or {}
    for run in every[1:]:
        other = run.summary.get("computation") or {}
        changed = [k for k in sorted(set(first) | set(other)) if first.get(k) != other.get(k)]
        if changed:
            return "another arithmetic (" + ", ".join(f"{k} {first.get(k)} in {every[0].name}, {other.get(k)} in "
                                                       f"{run.name}" for k in changed[:3]) + ")"
    return "different params or data"


def run_numbers(run, settings) -> dict:
    """The numbers of one finished run (files.Run) that a comparison uses."""
    s = run.summary
    return {
        "test_acc": s["test_acc"], "best_test_acc": s["best_test_acc"], "epochs": s["epochs"],
        "train_seconds": s["train_seconds"], "lr_cuts": len(lr_cut_epochs(run.rows)),
        "epochs_to_target": epochs_to_target(run.rows, settings), "lrs": [r["lr"] for r in run.rows],
        "diverged": s.get("stop_reason") == "diverged",
    }


def epochs_to_target(rows, settings):
    """The first epoch whose monitored accuracy reached target_acc; a run that never did counts as
    max_epochs + 1, so that it ranks behind every run that did (it is not dropped)."""
    column = f"{settings.monitor}_acc"
    for row in rows:
        if row[column] is not None and row[column] >= settings.target_acc:
            return int(row["epoch"])
    return settings.max_epochs + 1


def compare(arms: dict, settings: Settings) -> dict:
    """arms: {name: {seed: run_numbers}}, the baseline among them. Returns comparison.json's content."""
    challengers = [a for a in arms if a != settings.baseline]
    base = arms[settings.baseline]
    pairs = {c: _paired(base, arms[c], settings) for c in challengers}
    adjusted = statistics.holm([pairs[c]["test_acc"]["p_value"] for c in challengers])
    for c, p in zip(challengers, adjusted):
        pairs[c]["test_acc"]["p_holm"] = p
        pairs[c]["verdict_code"], pairs[c]["verdict"] = verdict(c, settings.baseline, pairs[c], arms, settings,
                                                                holm=len(challengers) > 1)
    seeds = sorted({s for arm in arms.values() for s in arm})
    text = "; ".join(_cautioned(pairs[c]) for c in challengers) or (
        f"one schedule ({settings.baseline}): nothing to compare it with; add another to schedules")
    diverged = {a: sum(_values(arms[a], "diverged")) for a in arms}
    return {
        # The headline first: `dvc exp show` lists these columns before the details below.
        "verdict": divergence_first(diverged, {a: len(arms[a]) for a in arms}, text),
        "seeds": len(seeds),
        "diverged": diverged,
        "mean_test_acc": {a: statistics.describe(_values(arms[a], "test_acc"))["mean"] for a in arms},
        "difference": {c: _headline(pairs[c]) for c in challengers},
        "arms": {a: _summary(arms[a], settings) for a in arms},
        "paired": pairs,
        "settings": {"baseline": settings.baseline, "min_effect": settings.min_effect,
                     "target_acc": settings.target_acc, "monitor": settings.monitor, "alpha": statistics.ALPHA,
                     "power": statistics.POWER},
    }


def with_design(result, record, arms) -> dict:
    """The comparison as a sequential design decides it (the record of its looks, thesislab.comparison.looks):
    the design's verdict and codes; the plain p-values of its seeds are kept, as descriptive numbers."""
    fixed_n = {c: (pair["verdict_code"], pair["verdict"]) for c, pair in result["paired"].items()}
    text = looks.verdict(record, fixed_n)
    cautions = [f"{c}: {t}" for c, pair in result["paired"].items() if (t := statistics.normality_text(pair["test_acc"]))]
    if cautions:
        text += "; " + "; ".join(cautions)
    runs = {a: len(arms[a]) for a in arms}
    for c in result["difference"]:
        result["difference"][c]["verdict_code"] = looks.code(record, c)
    result.update(verdict=divergence_first(result["diverged"], runs, text), method="sequential", sequential=record,
                  fixed_n={"descriptive": True, "why": "a sequential design decides; these p-values assume a fixed n"})
    return result


def with_history(result, history, grew) -> dict:
    """A plain comparison, saying when its p-value is descriptive: these runs were compared before on fewer of
    these seeds, so n grew after a result was seen (compare.sequential plans that in advance)."""
    result["looked"], result["method"] = history, "fixed_n"
    result["fixed_n"] = {"descriptive": bool(grew), "why": None}
    if grew:
        why = (f"seeds grew from {len(grew)} to {result['seeds']} after a comparison on {len(grew)} was seen: "
               "the p-value assumes n was fixed in advance")
        result["fixed_n"]["why"] = why
        result["verdict"] += f" (descriptive: {why}; compare.sequential plans looks in advance)"
    return result


def divergence_first(diverged, runs, verdict_text) -> str:
    """Diverged runs come before anything else the verdict says: when every run diverged there is no
    comparison at all (its numbers are undefined or meaningless); when some did, say which arm lost how many."""
    total, lost = sum(runs.values()), sum(diverged.values())
    if lost == 0:
        return verdict_text
    if lost == total:
        return f"all {total} runs diverged: no comparison (try a smaller lr)"
    parts = [f"{diverged[a]} of {runs[a]} {a} runs diverged" for a in runs if diverged[a]]
    return f"{', '.join(parts)}; {verdict_text}"


def trained_alike(base, challenger) -> bool:
    """Whether, on every seed both ran, the challenger trained as many epochs as the baseline, each at the
    baseline's LR: the same schedule in effect. (A run that stopped sooner, at a plateau it was not allowed to
    cut, or one that cut only after the baseline's last epoch, did not train the same.)"""
    seeds = [s for s in base if s in challenger]
    return bool(seeds) and all(
        len(base[s]["lrs"]) == len(challenger[s]["lrs"])
        and all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(base[s]["lrs"], challenger[s]["lrs"]))
        for s in seeds)


def _cautioned(pair) -> str:
    """A decision (beats, trails, equivalent) on differences far from normal says so: the error rate it states
    assumes normal differences."""
    caution = statistics.normality_text(pair["test_acc"])
    decided = pair["verdict_code"] in (BETTER, WORSE, EQUIVALENT)
    return f"{pair['verdict']} ({caution})" if caution and decided else pair["verdict"]


def _values(arm, key):
    return [numbers[key] for numbers in arm.values()]


def _by_seed(arm, key):
    return {seed: numbers[key] for seed, numbers in arm.items()}


def _summary(arm, settings):
    out = {q: statistics.describe(_values(arm, q)) for q in QUANTITIES}
    reached = [e for e in _values(arm, "epochs_to_target") if e <= settings.max_epochs]
    out["epochs_to_target"] = {**statistics.describe(_values(arm, "epochs_to_target")), "reached": len(reached)}
    out["lr_cuts"] = statistics.describe(_values(arm, "lr_cuts"))
    return out


def _paired(base, challenger, settings):
    """test_acc with the power analysis and equivalence test; epochs_to_target as the "converges faster"
    quantity (negative: the challenger gets there sooner)."""
    acc = statistics.paired(_by_seed(base, "test_acc"), _by_seed(challenger, "test_acc"), settings.min_effect)
    speed = statistics.paired(_by_seed(base, "epochs_to_target"), _by_seed(challenger, "epochs_to_target"))
    return {"test_acc": acc, "epochs_to_target": speed}


def _headline(pair):
    acc = pair["test_acc"]
    return {"verdict_code": pair["verdict_code"], "mean": acc["mean"], "ci95_low": acc["ci95_low"],
            "ci95_high": acc["ci95_high"], "p_value": acc["p_holm"]}


def verdict(name, baseline, pair, arms, settings, holm=False):
    """(verdict_code, one sentence). Order of questions: is there anything to test; is the difference real;
    is it inside +-min_effect; else how far from deciding the data are."""
    acc = pair["test_acc"]
    n, diff = acc["n"], acc["mean"]
    if n == 0:
        return NO_VERDICT, f"{name} vs {baseline}: no seed has a result for both: no verdict"
    if n == 1:
        return NO_VERDICT, (f"one seed: no verdict ({name} - {baseline} = {diff:+.2f} points on seed "
                            f"{acc['seeds'][0]}; run more seeds, e.g. -S 'seeds=[0,1,2,3,4]')")
    if settings.arms_are_schedules and trained_alike(arms[baseline], arms[name]):
        # Not keyed on identical accuracies: on a GPU two runs of one computation can differ in the last digits.
        if sum(_values(arms[name], "lr_cuts")) == 0:
            return NO_VERDICT, (f"{name} never changed its LR before the runs stopped (0 LR cuts in {n} seeds), so it "
                                f"trained exactly as {baseline}: nothing to compare")
        return NO_VERDICT, (f"{name} trained at {baseline}'s LR in every epoch of all {n} seeds: the same "
                            "computation, nothing to compare")
    if acc["ties"] == n:
        return NO_VERDICT, f"{name} and {baseline} gave identical test accuracy on all {n} seeds: nothing to test"
    if acc["p_value"] is None:
        return NO_VERDICT, f"{name} - {baseline} is {diff:+.2f} points on every one of {n} seeds: no spread to test"
    p = acc["p_holm"] if holm else acc["p_value"]
    p_text = f"{'Holm-adjusted ' if holm else ''}p {statistics.p_text(p, '= ')}"
    ci = _ci_text(acc)
    if p < statistics.ALPHA:
        code, word = (BETTER, "beats") if diff > 0 else (WORSE, "trails")
        return code, f"{name} {word} {baseline} by {abs(diff):.2f} points ({ci}, {p_text}, {n} seeds)"
    if acc["p_equivalence"] is not None and acc["p_equivalence"] < statistics.ALPHA:
        return EQUIVALENT, (f"{name} and {baseline} are equivalent within +-{settings.min_effect:g} points "
                            f"(difference {diff:+.2f}, {ci}, equivalence p {statistics.p_text(acc['p_equivalence'], '= ')}, {n} seeds)")
    return INCONCLUSIVE, (f"inconclusive: {name} - {baseline} = {diff:+.2f} points ({ci}, {p_text}); "
                          f"{_power_text(acc, n, settings.min_effect)}")


# Beyond these, a number is true but cannot be read as written: an interval of a difference of accuracies past
# +-100 points, or a seed count no experiment would run. Said in words instead.
POSSIBLE_POINTS = 100
READABLE_SEEDS = 1000


def _ci_text(acc) -> str:
    if max(abs(acc["ci95_low"]), abs(acc["ci95_high"])) > POSSIBLE_POINTS:
        return f"{acc['n']} seeds are too few for a useful interval"
    return f"95% CI {acc['ci95_low']:+.2f} to {acc['ci95_high']:+.2f}"


def _power_text(acc, n, min_effect) -> str:
    needed, mde = acc["seeds_needed"], acc["mde"]
    could = (f"{n} seeds could detect {mde:.2f} points" if mde <= POSSIBLE_POINTS else
             f"{n} seeds could not detect even a {POSSIBLE_POINTS}-point difference")
    more = (f"about {needed} seeds" if needed and needed <= READABLE_SEEDS else
            f"more than {READABLE_SEEDS:,} seeds")
    return f"{could}, {more} would detect {min_effect:g}"
