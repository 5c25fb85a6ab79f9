"""The comparison's numbers against independent computations: statsmodels' implementations, exact enumeration
of the Wilcoxon null distribution, and hand arithmetic, on made-up inputs including ties and zero differences."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import DescrStatsW, ttost_paired

from thesislab.comparison import statistics

BASE = {0: 95.1, 1: 94.3, 2: 96.0, 3: 95.5, 4: 94.9}
CHALLENGER = {0: 96.0, 1: 95.5, 2: 96.1, 3: 96.4, 4: 95.2}
DIFFS = np.array([CHALLENGER[s] - BASE[s] for s in BASE])


def test_describe_matches_hand_arithmetic():
    d = statistics.describe([1.0, 2.0, 4.0, None])  # None: a run with no value is not a zero
    assert d["n"] == 3 and d["mean"] == pytest.approx(7 / 3) and d["min"] == 1.0 and d["max"] == 4.0
    sd = math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    assert d["std"] == pytest.approx(sd, abs=1e-6)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t(0.975, df=2), from a printed table
    assert d["ci95_low"] == pytest.approx(7 / 3 - half, abs=1e-5)
    assert d["ci95_high"] == pytest.approx(7 / 3 + half, abs=1e-5)


def test_two_values_have_a_spread_and_infinities_are_undefined():
    two = statistics.describe([1.0, 3.0])
    assert two["std"] == pytest.approx(math.sqrt(2)) and two["ci95_low"] == pytest.approx(2 - 12.7062 * 1, abs=1e-3)
    assert statistics.describe([1.0, float("inf")])["mean"] is None  # JSON has no infinity: null


def test_describe_of_one_value_has_no_spread_and_keeps_its_keys():
    one, none = statistics.describe([90.0]), statistics.describe([])
    assert one == {"n": 1, "mean": 90.0, "std": None, "ci95_low": None, "ci95_high": None, "min": 90.0, "max": 90.0}
    assert set(none) == set(one) and none["n"] == 0 and none["mean"] is None


def test_paired_difference_against_statsmodels():
    p = statistics.paired(BASE, CHALLENGER, min_effect=0.5)
    ref = DescrStatsW(DIFFS)
    assert p["n"] == 5 and p["mean"] == pytest.approx(DIFFS.mean(), abs=1e-6)
    assert p["std"] == pytest.approx(ref.std * math.sqrt(5 / 4), abs=1e-6)  # statsmodels' std is ddof=0
    low, high = ref.tconfint_mean(alpha=0.05)
    assert (p["ci95_low"], p["ci95_high"]) == pytest.approx((low, high), abs=1e-5)
    assert p["p_value"] == pytest.approx(ref.ttest_mean(0)[1], rel=1e-5)
    assert p["cohens_dz"] == pytest.approx(DIFFS.mean() / DIFFS.std(ddof=1), abs=1e-5)
    assert (p["wins"], p["losses"], p["ties"]) == (5, 0, 0)
    assert p["seeds"] == [0, 1, 2, 3, 4]
    assert p["p_wilcoxon"] == pytest.approx(exact_wilcoxon(DIFFS))
    assert p["p_equivalence"] == pytest.approx(ttost_paired(np.array(list(CHALLENGER.values())),
                                                            np.array(list(BASE.values())), -0.5, 0.5)[0], rel=1e-6)


def test_paired_keys_do_not_depend_on_the_number_of_seeds():
    keys = {n: set(statistics.paired({s: 90.0 + s for s in range(n)}, {s: 91.0 + s * s for s in range(n)}, 0.5))
            for n in (0, 1, 2, 5)}
    assert keys[0] == keys[1] == keys[2] == keys[5]


def test_wins_losses_and_ties_count_each_seed_once():
    p = statistics.paired({0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0}, {0: 2.0, 1: 1.0, 2: 0.5, 3: 1.5})
    assert (p["wins"], p["losses"], p["ties"]) == (2, 1, 1)


def exact_wilcoxon(d):
    """Two-sided p by enumerating every sign assignment, zeros dropped, ties given average ranks."""
    d = [x for x in d if x != 0]
    ranks = scipy_stats.rankdata(np.abs(d))
    observed = sum(r for r, x in zip(ranks, d) if x > 0)
    centre = ranks.sum() / 2
    sums = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product([0, 1], repeat=len(d))]
    return sum(abs(s - centre) >= abs(observed - centre) - 1e-12 for s in sums) / len(sums)


@pytest.mark.parametrize("d", [
    [0.9, 1.2, 0.1, 0.9, 0.3],  # all positive: the smallest p five seeds allow
    [0.5, 0.5, 1.0, -0.2, 2.0],  # tied magnitudes
    [0.0, 0.5, -1.0, 1.5, 2.0],  # a zero difference
    [0.0, 0.0, 0.7, -0.3, 0.7, 0.7, -1.1],
    [0.0, 0.0, 0.3],  # one difference that is not zero: p = 1
    [1.0, 1.0, 2.0, -1.0, 3.0],  # a tie across signs: scipy's "exact" table says 0.1875, the truth is 0.25
    [1.0, -1.0, 1.0, -1.0, 2.0, 2.0],
])
def test_wilcoxon_is_the_exact_signed_rank_test(d):
    assert statistics.wilcoxon_p(d) == pytest.approx(exact_wilcoxon(d), abs=1e-12)


def test_wilcoxon_with_five_seeds_cannot_go_under_1_in_16():
    assert statistics.wilcoxon_p([1, 2, 3, 4, 5]) == pytest.approx(2 / 32)


def test_all_zero_differences_define_no_test():
    same = {s: 90.0 for s in range(4)}
    p = statistics.paired(same, dict(same), min_effect=0.5)
    assert (p["mean"], p["std"], p["ties"]) == (0.0, 0.0, 4)
    for key in ("p_value", "p_wilcoxon", "ci95_low", "cohens_dz", "mde", "seeds_needed", "p_equivalence"):
        assert p[key] is None, key


def test_seeds_missing_on_one_side_are_not_paired():
    p = statistics.paired({0: 1.0, 1: 2.0, 2: None}, {1: 3.0, 2: 4.0, 3: 5.0})
    assert p["seeds"] == [1] and p["n"] == 1 and p["mean"] == 1.0 and p["std"] is None


@pytest.mark.parametrize("n", [2, 3, 5, 10, 30])
def test_minimal_detectable_effect_against_statsmodels(n):
    rng = np.random.default_rng(n)
    d = rng.normal(0.3, 0.8, n)
    mde = statistics.power_analysis(d, 0.5)["mde"]
    effect = TTestPower().solve_power(effect_size=None, nobs=n, alpha=0.05, power=0.8, alternative="two-sided")
    assert mde == pytest.approx(effect * d.std(ddof=1), rel=1e-4)


@pytest.mark.parametrize("sd, min_effect", [(0.8, 0.5), (0.3, 0.5), (2.0, 0.5), (0.5, 2.0)])
def test_seeds_needed_is_the_smallest_n_with_80_percent_power(sd, min_effect):
    d = np.array([-1.0, 1.0, 0.0]) * sd + 0.2  # sample std exactly sd
    needed = statistics.power_analysis(d, min_effect)["seeds_needed"]
    power = TTestPower()
    es = min_effect / sd
    assert isinstance(needed, int) and power.power(effect_size=es, nobs=needed, alpha=0.05) >= 0.8
    assert needed == 2 or power.power(effect_size=es, nobs=needed - 1, alpha=0.05) < 0.8


def test_a_huge_effect_needs_the_minimum_of_two_seeds():
    assert statistics.power_analysis(np.array([-1.0, 1.0, 0.0]) * 0.01, 5.0)["seeds_needed"] == 2


def test_power_function_against_statsmodels():
    for es, n in [(0.2, 10), (0.8, 5), (1.5, 3), (0.05, 200)]:
        assert statistics.t_test_power(es, n) == pytest.approx(TTestPower().power(es, n, 0.05), rel=1e-6)


@pytest.mark.parametrize("shift", [0.0, 0.3, 0.9])
def test_tost_against_statsmodels(shift):
    base = np.array(list(BASE.values()))
    challenger = base + np.array([0.1, -0.2, 0.15, 0.05, -0.1]) + shift
    ref_p = ttost_paired(challenger, base, -0.5, 0.5)[0]
    assert statistics.tost(challenger - base, 0.5) == pytest.approx(ref_p, rel=1e-6)
    two = ttost_paired(challenger[:2], base[:2], -0.5, 0.5)[0]
    assert statistics.tost(challenger[:2] - base[:2], 0.5) == pytest.approx(two, rel=1e-6)


def test_holm_against_statsmodels():
    for p in ([0.01, 0.04, 0.03, 0.2], [0.6, 0.7, 0.01]):  # the second: adjusted values capped at 1
        assert statistics.holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))
    assert statistics.holm([0.02, None, 0.04]) == pytest.approx([0.04, None, 0.04])


def test_ties_of_differences_with_float_noise_are_still_ties():
    """Differences of 4-decimal accuracies are not exactly equal in binary (80.22 - 80.12 != 75.41 - 75.31):
    they must still count as tied magnitudes, as the accuracies say."""
    d = [80.22 - 80.12, 75.41 - 75.31, 90.3 - 90.1, 60.5 - 60.3, 70.1 - 70.2]
    assert len(set(abs(x) for x in d)) > 2  # the noise is there
    assert statistics.wilcoxon_p(d) == pytest.approx(exact_wilcoxon([0.1, 0.1, 0.2, 0.2, -0.1]), abs=1e-12)


def exact_wilcoxon_by_counting(d):
    """Two-sided exact p for distinct magnitudes (ranks 1..n): the null distribution of the positive rank
    sum counted subset by subset (dynamic programming), so that n = 25 needs no 2**25 enumeration."""
    n = len(d)
    counts = [1] + [0] * (n * (n + 1) // 2)
    for r in range(1, n + 1):
        for s in range(len(counts) - 1, r - 1, -1):
            counts[s] += counts[s - r]
    ranks = scipy_stats.rankdata(np.abs(d))
    observed, centre = sum(r for r, x in zip(ranks, d) if x > 0), n * (n + 1) / 4
    return sum(c for s, c in enumerate(counts) if abs(s - centre) >= abs(observed - centre) - 1e-9) / 2**n


def normal_wilcoxon(d):
    """The normal approximation by hand: rank-sum mean n(n+1)/4, variance with the tie correction, no
    continuity correction."""
    ranks = scipy_stats.rankdata(np.abs(d))
    n = len(d)
    observed = sum(r for r, x in zip(ranks, d) if x > 0)
    _, tie_sizes = np.unique(np.abs(d), return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24 - sum(t**3 - t for t in tie_sizes) / 48
    return 2 * scipy_stats.norm.sf(abs(observed - n * (n + 1) / 4) / math.sqrt(var))


def distinct(n):
    return [(i + 1) * 0.1 * (-1 if i % 4 == 1 else 1) for i in range(n)]


def tied(n):
    return [round(0.1 * (1 + i // 2), 1) * (-1 if i % 5 == 3 else 1) for i in range(n)]


def test_wilcoxon_is_exact_up_to_25_differences_then_normal():
    assert statistics.wilcoxon_p(distinct(25)) == pytest.approx(exact_wilcoxon_by_counting(distinct(25)), abs=1e-12)
    assert statistics.wilcoxon_p(distinct(26)) == pytest.approx(normal_wilcoxon(distinct(26)), abs=1e-9)
    assert abs(normal_wilcoxon(distinct(26)) - exact_wilcoxon_by_counting(distinct(26))) > 1e-4  # they differ


def test_wilcoxon_with_tied_magnitudes_is_exact_up_to_12_then_normal():
    assert statistics.wilcoxon_p(tied(12)) == pytest.approx(exact_wilcoxon(tied(12)), abs=1e-12)
    assert statistics.wilcoxon_p(tied(13)) == pytest.approx(normal_wilcoxon(tied(13)), abs=1e-9)
    assert abs(normal_wilcoxon(tied(13)) - exact_wilcoxon(tied(13))) > 1e-4


def test_two_seeds_have_a_t_test_with_one_degree_of_freedom():
    p = statistics.paired({0: 90.0, 1: 91.0}, {0: 91.0, 1: 93.0})
    assert p["p_value"] == pytest.approx(scipy_stats.ttest_rel([91.0, 93.0], [90.0, 91.0]).pvalue, abs=1e-6)
    half = 12.706204736174707 * math.sqrt(0.5) / math.sqrt(2)  # t(0.975, df=1), sd of (1, 2)
    assert (p["ci95_low"], p["ci95_high"]) == (pytest.approx(1.5 - half, abs=1e-5), pytest.approx(1.5 + half, abs=1e-5))


def test_a_tiny_p_is_printed_as_below_the_floor_never_as_zero():
    from thesislab.comparison.statistics import p_text

    assert p_text(3e-9) == "< 1e-06" and p_text(3e-9, "= ") == "< 1e-06"
    assert p_text(1e-6, "= ") == "= 1e-06" and p_text(0.0123, "= ") == "= 0.0123"


# Shapiro and Wilk's own example (Biometrika 1965, section 4): eleven men's weights, W = 0.79, "significant at
# the 1% level"; 236 is the outlier by hand: median 162, MAD 8, robust z 0.6745 * 74 / 8 = 6.2 > 3.5.
WEIGHTS = [148, 154, 158, 160, 161, 162, 166, 170, 182, 195, 236]


def test_far_from_normal_differences_are_flagged_with_their_outlier_seed():
    seeds = list(range(100, 111))
    p = statistics.paired(dict.fromkeys(seeds, 0.0), dict(zip(seeds, map(float, WEIGHTS))))
    assert p["shapiro_p"] < 0.01 and p["far_from_normal"] is True
    assert p["outlier_seed"] == 110
    x = np.array(WEIGHTS, dtype=float)
    n, m2, m3 = len(x), ((x - x.mean()) ** 2).mean(), ((x - x.mean()) ** 3).mean()
    assert p["skew"] == pytest.approx(math.sqrt(n * (n - 1)) / (n - 2) * m3 / m2 ** 1.5, abs=1e-5)  # G1, by hand
    assert "seed 110 an outlier" in statistics.normality_text(p)


def test_normal_looking_differences_and_too_few_are_not_flagged():
    rng = np.random.default_rng(3)
    d = rng.normal(1.0, 0.5, 12)
    p = statistics.paired(dict.fromkeys(range(12), 90.0), {s: 90.0 + v for s, v in enumerate(d)})
    assert p["shapiro_p"] > 0.05 and p["outlier_seed"] is None and p["far_from_normal"] is False
    assert statistics.normality_text(p) == ""
    four = statistics.paired({s: BASE[s] for s in range(4)}, {s: CHALLENGER[s] for s in range(4)})
    assert four["far_from_normal"] is None and four["shapiro_p"] is None  # under NORMALITY_FROM: not judged
