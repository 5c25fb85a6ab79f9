"""The comparison for readers: comparison.md, a table taken in at a glance with the verdict in words, and
headline.json, the few numbers `dvc exp show` and `dvc metrics diff` list per experiment."""

from thesislab.comparison import looks, statistics
from thesislab.comparison.sequential import BETTER, CONTINUE, EQUIVALENT, INCONCLUSIVE, NO_VERDICT, WORSE

# The verdict of each challenger in one word (the sentence, too wide for a table, is comparison.json's `verdict`).
VERDICT_WORDS = {BETTER: "beats", WORSE: "trails", EQUIVALENT: "equivalent", INCONCLUSIVE: "inconclusive",
                 NO_VERDICT: "no verdict", CONTINUE: "continue"}


def headline(comparison) -> dict:
    """headline.json: what `dvc exp show` lists first, readable in the first 120 columns of its table: each
    schedule's mean test accuracy (`acc.<schedule>`), each challenger's verdict word, difference from the
    baseline in points, p and 95% CI (`<challenger>.verdict`, `.diff`, `.p`, `.ci_low`, `.ci_high`), and the
    seeds compared. Rounded as a reader quotes them; comparison.json keeps every digit, the verdict sentence and
    the details. Under a sequential design the numbers are its deciding (or latest) look's: the difference and
    the repeated CI it decided on, and no p (the fixed-n p-values are descriptive there)."""
    out = {"acc": {arm: _rounded(mean, 2) for arm, mean in comparison["mean_test_acc"].items()}}
    sequential = comparison.get("sequential") if comparison.get("method") == "sequential" else None
    for name, d in comparison["difference"].items():
        mean, low, high, p = d["mean"], d["ci95_low"], d["ci95_high"], d["p_value"]
        if sequential:
            _, look = looks.latest(sequential, name)
            mean, low, high, p = look["mean"], look["low"], look["high"], None
        out[name] = {"verdict": VERDICT_WORDS[d["verdict_code"]], "diff": _rounded(mean, 2),
                     "p": _significant(p, 3), "ci_low": _rounded(low, 2), "ci_high": _rounded(high, 2)}
    out["n_seeds"] = comparison["seeds"]  # not `seeds`: a param has that name, and DVC would prefix both columns
    return out


def _rounded(x, digits):
    return None if x is None else round(x, digits)


def _significant(x, digits):
    return None if x is None else float(f"{x:.{digits}g}")


THESIS = {  # the thesis's own numbers, beside ours
    "speedsigns": "thesis (real signs): 97.6% train, 95.1% test",
    "cifar10": "thesis (VGG16, CIFAR-10): static plateaus at 60-70% test, dynamic > 85%",
}


def markdown(comparison, title, dataset=None) -> str:
    arms = comparison["arms"]
    settings = comparison["settings"]
    lines = [f"# {title}", "", f"**Verdict:** {comparison['verdict']}", "",
             "| | test acc (%) mean +- std (n) | 95% CI | best test acc (%) | epochs | epochs to "
             f"{settings['target_acc']:g}% {settings['monitor']} | LR cuts | train s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, a in arms.items():
        t = a["test_acc"]
        reach = a["epochs_to_target"]
        lines.append(f"| {name} | {_num(t['mean'])} +- {_num(t['std'])} ({t['n']}) | {_ci(t)} | "
                     f"{_num(a['best_test_acc']['mean'])} | {_num(a['epochs']['mean'], 1)} | "
                     f"{_num(reach['mean'], 1)} ({reach['reached']} of {reach['n']} reached) | "
                     f"{_num(a['lr_cuts']['mean'], 1)} | {_num(a['train_seconds']['mean'], 1)} |")
    lines += ["", f"Paired by seed, against {settings['baseline']}:", "",
              "| | difference (points) | 95% CI | p (t-test) | p (Wilcoxon) | wins/losses/ties | d_z | "
              f"detectable at 80% power | seeds for +-{settings['min_effect']:g} | epochs to target, difference |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, pair in comparison["paired"].items():
        d, e = pair["test_acc"], pair["epochs_to_target"]
        lines.append(f"| {name} | {_num(d['mean'], 2, sign=True)} | {_ci(d)} | {_p(d['p_holm'])} | "
                     f"{_p(d['p_wilcoxon'])} | {d['wins']}/{d['losses']}/{d['ties']} | {_num(d['cohens_dz'])} | "
                     f"{_num(d['mde'])} | {d['seeds_needed'] or '-'} | {_epochs_difference(e)} |")
    for name, pair in comparison["paired"].items():
        caution = statistics.normality_text(pair["test_acc"])
        if caution:
            lines += ["", f"{name}: {caution[0].upper()}{caution[1:]}."]
    if comparison.get("fixed_n", {}).get("descriptive"):
        lines += ["", f"The p-values above are descriptive: {comparison['fixed_n']['why']}."]
    if comparison.get("method") == "sequential":
        lines += looks_table(comparison["sequential"])
    note = THESIS.get(dataset)
    lines += ["", f"Reference: {note}." if note else "", ""]
    return "\n".join(lines)


def _epochs_difference(e) -> str:
    """The paired difference in epochs to the target, with its interval, or in words why there is none."""
    if e["mean"] is None:
        return "-"
    if e["ci95_low"] is not None:
        return f"{_num(e['mean'], 1, sign=True)} ({_ci(e, 1)})"
    return f"{_num(e['mean'], 1, sign=True)} (the same on every seed)" if e.get("std") == 0 else \
        _num(e["mean"], 1, sign=True)


def _num(v, digits=2, sign=False):
    if v is None:
        return "-"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _ci(d, digits=2):
    if d["ci95_low"] is None:
        return "-"
    return f"{d['ci95_low']:+.{digits}f} to {d['ci95_high']:+.{digits}f}" if "wins" in d else \
        f"{d['ci95_low']:.{digits}f} to {d['ci95_high']:.{digits}f}"


def _p(p):
    return "-" if p is None else statistics.p_text(p)


def looks_table(record) -> list:
    """The sequential design's looks: n, boundary, alpha spent, and each challenger's repeated CI and decision."""
    d, params = record["design"], record["design"]["params"]
    names = [s for s in params["schedules"] if s != params["baseline"]]
    spending = looks.SPENDING_NAMES[params["spending"]]
    lines = ["", f"Sequential design ({spending}-type alpha spending, alpha {params['alpha']:g} two-sided, looks at "
             f"{', '.join(map(str, d['looks']))} seeds, +-{params['min_effect']:g} points equivalent"
             f"{', futility stop' if params['futility'] else ''}): every look's interval covers the true difference "
             f"with {100 * (1 - params['alpha']):g}% together, so a decision at any look is wrong at most "
             f"{100 * params['alpha']:g}% of the time.", "",
             "| look | seeds | boundary c_k | alpha spent (each challenger) | " + " | ".join(f"{n}: difference, repeated CI, decision"
                                                                    for n in names) + " |",
             "|---:|---:|---:|---:|" + "---|" * len(names)]
    for look in record["looks"]:
        k = look["look"] - 1
        cells = []
        for name in names:
            e = look["challengers"].get(name)
            cells.append(f"{e['mean']:+.2f} ({looks.signed(e['low'])} to {looks.signed(e['high'])}): **{e['decision']}**"
                         if e else
                         "(decided earlier)")
        lines.append(f"| {look['look']} of {record['of']} | {look['n']} | {look['boundary']:.3f} | "
                     f"{d['alpha_spent'][k]:.2g} | " + " | ".join(cells) + " |")
    if record["status"] == "continue":
        lines.append(f"| next | {len(record['next_seeds'])} | {d['boundaries'][len(record['looks'])]:.3f} | | "
                     + " | ".join("" for _ in names) + " |")
    return lines + ["", "![the repeated CI at each look](looks.png)"]
