"""The numbers of a comparison over seeds, each from scipy.stats, each edge case named.

Every function takes plain lists and returns a dict whose keys never depend on the data: a number that is
undefined for these inputs (a spread from one value, a test on identical runs) is None. Nothing here knows
about runs or files.
"""

import math

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05  # two-sided
POWER = 0.8  # for the minimal detectable effect and the seeds needed
MAX_SEEDS = 100_000  # "seeds needed" beyond this is reported as None (no realistic number of seeds)
EXACT_WILCOXON_UP_TO = 25  # nonzero differences; above this the normal approximation is used (and as good)
# With tied magnitudes scipy's "exact" table is not exact (it assumes distinct ranks); the exact test is then the
# enumeration of every sign assignment (2**n of them: 0.3 s at 12 on this project's CPU).
EXACT_WILCOXON_TIED_UP_TO = 12
# The t test (and the sequential design's t intervals) assume roughly normal paired differences. Checked from this
# many differences on: Shapiro-Wilk below NORMALITY_ALPHA is said beside the verdict (normal differences are
# flagged 5% of the time), naming the seed that stands out, if one does (a robust z over OUTLIER_Z from the median
# and MAD: Iglewicz and Hoaglin's rule; alone, that rule flags a fifth of normal samples of 5).
NORMALITY_FROM = 5
NORMALITY_ALPHA = 0.05
OUTLIER_Z = 3.5


def describe(values) -> dict:
    """n, mean, sample std, 95% t confidence interval, min and max of the defined values (None skipped)."""
    x = np.array([v for v in values if v is not None], dtype=float)
    out = dict.fromkeys(("mean", "std", "ci95_low", "ci95_high", "min", "max"))
    out = {"n": len(x), **out}
    if len(x) == 0:
        return out
    out.update(mean=x.mean(), min=x.min(), max=x.max())
    if len(x) >= 2:
        with np.errstate(invalid="ignore"):  # an infinite value: inf - inf is nan, reported as null, not warned
            std = x.std(ddof=1)
        low, high = _t_interval(x.mean(), std, len(x))
        out.update(std=std, ci95_low=low, ci95_high=high)
    return _rounded(out)


def paired(baseline: dict, challenger: dict, min_effect=None) -> dict:
    """challenger - baseline over the seeds both have a value for ({seed: value} each).

    mean, std, 95% CI and paired t-test p of the difference; the exact Wilcoxon signed-rank p (zero
    differences dropped, ties given average ranks; with 5 seeds it cannot go under 0.0625); wins, losses and
    ties; Cohen's d_z. With min_effect: the power analysis (power_analysis) and the equivalence test (tost)."""
    seeds = sorted(s for s in baseline if s in challenger and baseline[s] is not None and challenger[s] is not None)
    d = np.array([challenger[s] - baseline[s] for s in seeds], dtype=float)
    n = len(d)
    out = {"n": n, "seeds": seeds, "mean": None, "std": None, "ci95_low": None, "ci95_high": None, "p_value": None,
           "p_wilcoxon": None, "wins": int((d > 0).sum()), "losses": int((d < 0).sum()), "ties": int((d == 0).sum()),
           "cohens_dz": None}
    if n:
        out["mean"] = d.mean()
    if n >= 2:
        out["std"] = d.std(ddof=1)
    if n >= 2 and out["std"] > 0:
        out["ci95_low"], out["ci95_high"] = _t_interval(d.mean(), out["std"], n)
        out["p_value"] = stats.ttest_1samp(d, 0.0).pvalue
        out["cohens_dz"] = d.mean() / out["std"]
    out["p_wilcoxon"] = wilcoxon_p(d)
    out.update(normality(d, seeds))
    if min_effect is not None:
        out.update(power_analysis(d, min_effect))
        out["p_equivalence"] = tost(d, min_effect)
    return _rounded(out)


def normality(d, seeds) -> dict:
    """Whether the differences look far from normal (Shapiro-Wilk's p under NORMALITY_ALPHA), the p, the sample
    skewness, and in a sample so flagged the seed that stands out (the farthest from the median, if its robust z
    exceeds OUTLIER_Z). None under NORMALITY_FROM differences or with no spread."""
    d = np.asarray(d, dtype=float)
    out = {"shapiro_p": None, "skew": None, "outlier_seed": None, "far_from_normal": None}
    if len(d) < NORMALITY_FROM or np.ptp(d) == 0:
        return out
    out["shapiro_p"] = float(stats.shapiro(d).pvalue)
    out["skew"] = float(stats.skew(d, bias=False))
    out["far_from_normal"] = out["shapiro_p"] < NORMALITY_ALPHA
    mad = np.median(np.abs(d - np.median(d)))
    if out["far_from_normal"] and mad > 0:
        z = 0.6745 * np.abs(d - np.median(d)) / mad
        if z.max() > OUTLIER_Z:
            out["outlier_seed"] = seeds[int(z.argmax())]
    return out


def normality_text(pair) -> str:
    """The caution a verdict carries when its differences look far from normal, else ""."""
    if not pair.get("far_from_normal"):
        return ""
    why = [f"Shapiro-Wilk p {p_text(pair['shapiro_p'], '= ')}", f"skew {pair['skew']:+.1f}"]
    if pair["outlier_seed"] is not None:
        why.append(f"seed {pair['outlier_seed']} an outlier")
    return (f"caution: the seeds' differences look far from normal ({', '.join(why)}), so the t-based p-value and "
            "interval may be off; docs/statistics.md")


def wilcoxon_p(d):
    # Rounded first: differences of 4-decimal accuracies carry float noise (80.22 - 80.12 != 75.41 - 75.31), which
    # would hide their ties from the test and make a zero look like a difference.
    nonzero = np.round(np.asarray(d, dtype=float), 6)
    nonzero = nonzero[nonzero != 0]
    if len(nonzero) == 0:
        return None  # every pair tied: no signed ranks to test
    n, tied = len(nonzero), len(np.unique(np.abs(nonzero))) < len(nonzero)
    if not tied:
        method = "exact" if n <= EXACT_WILCOXON_UP_TO else "asymptotic"
    else:
        method = stats.PermutationMethod(n_resamples=np.inf) if n <= EXACT_WILCOXON_TIED_UP_TO else "asymptotic"
    return float(stats.wilcoxon(nonzero, method=method).pvalue)


def power_analysis(d, min_effect) -> dict:
    """For a two-sided paired t-test at ALPHA: the smallest true difference these n seeds detect with POWER
    (`mde`, in the data's units), and how many seeds would detect `min_effect` with POWER, both at the
    observed spread of the differences."""
    d = np.asarray(d, dtype=float)
    n = len(d)
    out = {"mde": None, "seeds_needed": None}
    if n < 2 or d.std(ddof=1) == 0:
        return out
    sd = d.std(ddof=1)
    out["mde"] = sd * _effect_size_detected(n)
    out["seeds_needed"] = _seeds_needed(min_effect / sd)
    return out


def t_test_power(effect_size, n) -> float:
    """Power of the two-sided one-sample (paired) t-test for a standardised effect with n pairs."""
    df = n - 1
    t_crit = stats.t.ppf(1 - ALPHA / 2, df)
    nc = effect_size * math.sqrt(n)
    wrong_side = stats.nct.cdf(-t_crit, df, nc)  # rejecting in the wrong tail; underflows to NaN for large nc
    return float(stats.nct.sf(t_crit, df, nc) + (wrong_side if math.isfinite(wrong_side) else 0.0))


def _effect_size_detected(n):
    """The standardised effect that n pairs detect with POWER: bracketed by doubling, then solved."""
    high = 1.0
    while t_test_power(high, n) < POWER:  # power grows with the effect; n = 2 needs about 5
        high *= 2
    return optimize.brentq(lambda es: t_test_power(es, n) - POWER, 1e-9, high, xtol=1e-10)


def _seeds_needed(effect_size):
    """The smallest n >= 2 whose power reaches POWER: doubling, then bisection (power grows with n)."""
    if t_test_power(effect_size, 2) >= POWER:
        return 2
    low, high = 2, 4
    while t_test_power(effect_size, high) < POWER:
        low, high = high, high * 2
        if high > MAX_SEEDS:
            return None
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if t_test_power(effect_size, mid) < POWER else (low, mid)
    return high


def tost(d, margin):
    """Two one-sided t-tests for equivalence within +-margin: the larger of the two p-values (small means
    the true difference is inside the margin)."""
    d = np.asarray(d, dtype=float)
    if len(d) < 2 or d.std(ddof=1) == 0:
        return None
    above_lower = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
    below_upper = stats.ttest_1samp(d, margin, alternative="less").pvalue
    return float(max(above_lower, below_upper))


def holm(p_values):
    """Holm's step-down adjustment of several p-values (None stays None)."""
    given = [(p, i) for i, p in enumerate(p_values) if p is not None]
    adjusted = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(given)):
        running = max(running, min(1.0, (len(given) - rank) * p))
        adjusted[i] = running
    return adjusted


def _t_interval(mean, std, n):
    half = stats.t.ppf(1 - ALPHA / 2, n - 1) * std / math.sqrt(n)
    return mean - half, mean + half


def _rounded(d, digits=6):
    """Plain floats (JSON), rounded so that files do not churn in the last bits."""
    def one(v):
        if isinstance(v, (float, np.floating)):
            return round(float(v), digits) if math.isfinite(v) else None
        if isinstance(v, np.integer):
            return int(v)
        return v

    return {k: one(v) for k, v in d.items()}


P_FLOOR = 1e-6  # a p below this is printed as "< 1e-06", never rounded to 0


def p_text(p, equals="") -> str:
    """A p-value as text: three significant digits, and "< 1e-06" for one too small to print so."""
    return f"< {P_FLOOR:.0e}" if p < P_FLOOR else f"{equals}{p:.3g}"
