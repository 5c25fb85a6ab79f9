"""The sequential design: its boundaries against published tables, its error rates by simulation (and the
naive repeated test's, which it guards against), and the record that keeps a design's looks from being
re-decided or re-planned."""

import json
import math
import re

import numpy as np
import pytest
from conftest import tiny_config
from scipy import stats

from thesislab import config
from thesislab.comparison import looks
from thesislab.comparison import sequential as sq
from thesislab.errors import UserError

FIVE_EQUAL_LOOKS = [0.2, 0.4, 0.6, 0.8, 1.0]
# Two-sided alpha 0.05, five equally spaced looks (Jennison & Turnbull 2000, table 7.6; gsDesign, ldbounds agree).
OBRIEN_FLEMING = [4.877, 3.357, 2.680, 2.290, 2.031]
POCOCK = [2.438, 2.427, 2.410, 2.397, 2.386]

TEST_SEED = 12345  # not the calibration's seed: these simulations are new draws, not the ones c_k were fitted to
SEQUENCES = 20_000


def se(p, n=SEQUENCES):
    return math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("spending, published", [("obrien_fleming", OBRIEN_FLEMING), ("pocock", POCOCK)])
def test_z_boundaries_reproduce_the_published_ones(spending, published):
    assert np.round(sq.z_boundaries(FIVE_EQUAL_LOOKS, spending, 0.05), 3).tolist() == published


def test_spending_functions_spend_alpha_by_the_end_and_obrien_fleming_little_early():
    for spending in sq.SPENDING:
        assert sq.spent(spending, 0.05, 1.0) == pytest.approx(0.05)
    assert sq.spent("obrien_fleming", 0.05, 0.2) == pytest.approx(4 * stats.norm.sf(stats.norm.isf(0.0125) / math.sqrt(0.2)))
    assert sq.spent("obrien_fleming", 0.05, 0.2) < 1e-5 < sq.spent("pocock", 0.05, 0.2)


def test_the_simulation_that_calibrates_t_boundaries_reproduces_z_boundaries_with_sigma_known():
    looks_at = sq.look_sizes(10, 10, 50)
    per_look = sq.alpha_per_look(looks_at, "obrien_fleming", 0.05)
    simulated = sq.t_boundaries(looks_at, per_look, known_sigma=True, seed=7)
    assert simulated == pytest.approx(OBRIEN_FLEMING, abs=0.02)  # Monte-Carlo error of 200,000 paths


def test_t_boundaries_are_wider_than_z_and_approach_them_as_n_grows():
    per_look = sq.alpha_per_look((5, 10), "pocock", 0.05)
    small = sq.t_boundaries((5, 10), per_look)
    large = sq.t_boundaries((200, 400), per_look)
    z = sq.z_boundaries([0.5, 1.0], "pocock", 0.05)
    assert all(s > zz + 0.3 for s, zz in zip(small, z))
    assert large == pytest.approx(z, abs=0.05)


def test_a_first_look_too_early_for_the_simulation_takes_the_t_quantile():
    looks_at = sq.look_sizes(5, 5, 50)
    per_look = sq.alpha_per_look(looks_at, "obrien_fleming", 0.05)
    assert per_look[0] * sq.SIMULATED_PATHS < sq.MIN_CROSSINGS
    assert sq.t_boundaries(looks_at, per_look)[0] == pytest.approx(stats.t.isf(per_look[0] / 2, 4))


def test_the_first_boundary_is_the_exact_t_quantile():
    """No earlier look to condition on: the first look's c_1 is t's quantile at alpha_1, not a simulated one."""
    looks_, per_look = (5, 10, 15, 20, 25), sq.alpha_per_look((5, 10, 15, 20, 25), "pocock", 0.05)
    bounds = sq.t_boundaries(looks_, per_look, paths=20_000)
    assert bounds[0] == stats.t.isf(per_look[0] / 2, 4)


def test_a_look_that_spends_less_than_a_double_holds_still_has_a_finite_boundary():
    """alpha 0.001, first look at 5 of 1000 seeds (O'Brien-Fleming): about 1e-530 spent, 0 as a double. The
    design is made (its first look can never decide), and the total spent is still alpha."""
    design, numbers = sq.make_design(5, 53, 1000, 0.001, "obrien_fleming", 0.5, False)
    assert all(math.isfinite(c) for c in design.boundaries) and all(math.isfinite(z) for z in numbers["z_boundaries"])
    assert design.boundaries[0] > 1e6 and numbers["alpha_spent"][-1] == pytest.approx(0.001)
    assert sq.decide(3.0, 1.0, 5, design.boundaries[0], 0.5) == sq.CONTINUE


def test_look_sizes():
    assert sq.look_sizes(5, 5, 50) == (5, 10, 15, 20, 25, 30, 35, 40, 45, 50)
    assert sq.look_sizes(5, 4, 12) == (5, 9, 12)  # the last look is the budget
    assert sq.look_sizes(6, 5, 6) == (6,)


@pytest.mark.parametrize("low, high, expected", [(0.1, 2.0, sq.BETTER), (-3.0, -0.2, sq.WORSE),
                                                 (-0.4, 0.45, sq.EQUIVALENT), (-0.3, 0.6, sq.CONTINUE),
                                                 (-1.0, 1.0, sq.CONTINUE), (0.1, 0.3, sq.BETTER)])
def test_decide_reads_the_interval(low, high, expected):
    mean, half = (low + high) / 2, (high - low) / 2
    c, n = 2.0, 4
    sd = half * math.sqrt(n) / c
    assert sq.decide(mean, sd, n, c, 0.5) == expected


def test_no_spread_decides_nothing():
    assert sq.decide(1.0, 0.0, 5, 3.0, 0.5) == sq.CONTINUE
    assert sq.decide(0.0, float("nan"), 5, 3.0, 0.5) == sq.CONTINUE


@pytest.fixture(scope="module")
def design():
    return sq.make_design(5, 5, 50, 0.05, "obrien_fleming", 0.5, False)[0]


def naive_false_positives(sigma, rng):
    """The fixed-n t-test at every look (5, 10, ..., 50 seeds), stopping at the first p < 0.05."""
    x = rng.normal(0, sigma, (SEQUENCES, 50))
    hit = np.zeros(SEQUENCES, dtype=bool)
    for n in range(5, 51, 5):
        hit |= stats.ttest_1samp(x[:, :n], 0, axis=1).pvalue < 0.05
    return hit.mean()


@pytest.mark.parametrize("sigma", [0.3, 3.0])
def test_no_effect_is_called_better_or_worse_at_most_alpha_of_the_time(design, sigma):
    rates = sq.simulate(design, 0.0, sigma, SEQUENCES, np.random.default_rng(TEST_SEED))
    assert rates["better"] + rates["worse"] <= 0.05 + 3 * se(0.05)


def test_the_naive_repeated_test_is_what_the_design_guards_against():
    rate = naive_false_positives(1.0, np.random.default_rng(TEST_SEED))
    assert 0.17 < rate < 0.23  # about 0.19-0.20: four times the 5% it claims


@pytest.mark.parametrize("sigma", [0.3, 1.0])
@pytest.mark.parametrize("delta", [-0.5, 0.5])
def test_a_difference_of_min_effect_is_rarely_called_equivalent(design, delta, sigma):
    rates = sq.simulate(design, delta, sigma, SEQUENCES, np.random.default_rng(TEST_SEED))
    assert rates["equivalent"] <= 0.05 + 3 * se(0.05)


@pytest.mark.parametrize("sigma", [0.3, 1.0])  # 1.0: about the spread of the default run's differences
def test_a_difference_of_min_effect_is_found_within_the_budget(design, sigma):
    rates = sq.simulate(design, 0.5, sigma, SEQUENCES, np.random.default_rng(TEST_SEED))
    assert rates["better"] >= 0.85
    assert rates["worse"] == 0


def test_pocock_and_futility_keep_the_error_rate_and_stop_sooner(design):
    rng = np.random.default_rng(TEST_SEED)
    pocock = sq.make_design(5, 5, 50, 0.05, "pocock", 0.5, False)[0]
    futile = sq.make_design(5, 5, 50, 0.05, "obrien_fleming", 0.5, True)[0]
    for d in (pocock, futile):
        rates = sq.simulate(d, 0.0, 3.0, SEQUENCES, rng)
        assert rates["better"] + rates["worse"] <= 0.05 + 3 * se(0.05)
    plain = sq.simulate(design, 0.25, 1.0, SEQUENCES, rng)
    stopped = sq.simulate(futile, 0.25, 1.0, SEQUENCES, rng)
    assert stopped["mean_seeds"] < plain["mean_seeds"] - 5


@pytest.mark.slow
@pytest.mark.parametrize("sigma", [0.3, 1.0, 3.0])
def test_the_error_rate_over_many_more_sequences(design, sigma):
    n = 200_000
    rates = sq.simulate(design, 0.0, sigma, n, np.random.default_rng(TEST_SEED + 1))
    assert rates["better"] + rates["worse"] <= 0.05 + 3 * se(0.05, n)


def test_run_design_matches_the_simulation_on_one_sequence(design):
    rng = np.random.default_rng(3)
    d = rng.normal(0.5, 0.3, 50)
    steps = sq.run_design(d, design)
    n, c, low, high, code = steps[-1]
    assert code == sq.BETTER and low > 0
    assert all(s[4] == sq.CONTINUE for s in steps[:-1])
    half = c * d[:n].std(ddof=1) / math.sqrt(n)
    assert (low, high) == pytest.approx((d[:n].mean() - half, d[:n].mean() + half))


# --- the record ---------------------------------------------------------------------------------------


def seq_config(seeds=range(5), **sequential):
    return tiny_config(seeds=list(seeds), schedules=["static", "dynamic"],
                       compare={"sequential": {"max_seeds": 10, "every": 5, **sequential}})


class FakeRun:
    def __init__(self, config="c"):
        self.summary = {"config": config, "schedule_params": {}}


def fake_runs(config="c"):
    return {"static": [FakeRun(config)], "dynamic": [FakeRun(config)]}


def differences(values):
    return {"dynamic": dict(enumerate(values))}


NOISE = [0.9, -1.2, 0.3, 1.5, -0.6, 0.6, -0.3, 1.2, -0.9, 0.0]  # no effect: decides nothing at 5 or 10 seeds
CLEAR = [3.1, 2.9, 3.0, 3.2, 2.8]  # a big consistent effect: better at the first look


def first_look(values=NOISE, **sequential):
    cfg = seq_config(**sequential)
    record, note = looks.advance({}, cfg, fake_runs(), differences(values))
    return cfg, record


def test_a_first_look_that_does_not_decide_asks_for_the_next_batch():
    cfg, record = first_look()
    assert record["status"] == "continue" and record["look"] == 1 and record["of"] == 2
    assert record["next_seeds"] == list(range(10))
    assert record["design"]["seeds"] == list(range(10)) and record["design"]["looks"] == [5, 10]
    entry = record["looks"][0]["challengers"]["dynamic"]
    c = record["design"]["boundaries"][0]
    d = np.array(NOISE[:5])
    half = c * d.std(ddof=1) / math.sqrt(5)
    assert (entry["low"], entry["high"]) == pytest.approx((d.mean() - half, d.mean() + half), abs=1e-6)
    assert entry["decision"] == "continue"


def test_a_big_effect_decides_at_the_first_look():
    cfg, record = first_look(CLEAR)
    assert record["status"] == "finished" and record["next_seeds"] is None
    assert record["decisions"]["dynamic"] == {"decision": "better", "look": 1, "n": 5, "futility": False}
    text = looks.verdict(record)
    assert text.startswith("dynamic beats static by 3.00 points (repeated 95% CI +")
    assert "decided at look 1 of 2, 5 seeds" in text


def test_the_second_look_is_decided_and_the_first_kept_as_recorded():
    cfg, record = first_look()
    previous = {"sequential": record}
    cfg2 = seq_config(range(10))
    later, _ = looks.advance(previous, cfg2, fake_runs(), differences(NOISE))
    assert later["looks"][0] == record["looks"][0]
    assert later["look"] == 2 and later["status"] == "finished"
    assert later["decisions"]["dynamic"]["decision"] == "inconclusive"  # the budget is spent
    # A second call on the same seeds (the stage rerun) never re-decides: the look stands as recorded. (The same
    # runs giving other numbers is a record that disagrees with its runs: refused, see below.)
    again, _ = looks.advance({"sequential": later}, cfg2, fake_runs(), differences(NOISE))
    assert again == later


def test_a_changed_design_on_seen_seeds_is_refused_in_one_line():
    cfg, record = first_look()
    for change in ({"max_seeds": 20}, {"every": 3}, {"spending": "pocock"}, {"alpha": 0.1}):
        with pytest.raises(UserError) as err:
            looks.check(seq_config(range(10), **change), {"sequential": record})
        text = str(err.value)
        assert "\n" not in text and "compare.sequential: the design changed after 1 look(s)" in text
        assert "seeds from 5" in text  # 0-4 were looked at
    margin = tiny_config(seeds=list(range(10)), compare={"min_effect": 1.0, "sequential": {"max_seeds": 10}})
    with pytest.raises(UserError, match="min_effect 0.5 -> 1.0"):
        looks.check(margin, {"sequential": record})


def test_a_new_design_on_unseen_seeds_starts_afresh():
    cfg, record = first_look()
    fresh = seq_config(range(10, 15), max_seeds=20)
    assert looks.check(fresh, {"sequential": record}) is None
    new, note = looks.advance({"sequential": record}, fresh, fake_runs(), {"dynamic": dict(zip(range(10, 15), NOISE))})
    assert new["design"]["seeds"][:5] == list(range(10, 15)) and new["design"]["looks"] == [5, 10, 15, 20]
    assert "no earlier design has looked at" in note
    assert new["seen_before"] == [0, 1, 2, 3, 4]


def test_a_design_cannot_be_restarted_on_seen_seeds_by_way_of_fresh_ones():
    cfg, a = first_look()
    b, _ = looks.advance({"sequential": a}, seq_config(range(50, 55), alpha=0.1), fake_runs(),
                         {"dynamic": dict(zip(range(50, 55), NOISE))})
    with pytest.raises(UserError, match=r"include seeds an earlier one has looked at \(0\.\.4\)"):
        looks.check(seq_config(range(5)), {"sequential": b})  # design A's seeds, through B's record


def test_a_new_design_whose_later_looks_would_reuse_seen_seeds_is_refused():
    """Every seed a new design will use is checked, not only its first look's: design A looked at 10..19; a
    design B starting at 5..9 with 15 seeds would take 10..14 at its second look."""
    cfg = seq_config(range(10, 15))
    a, _ = looks.advance({}, cfg, fake_runs(), {"dynamic": dict(zip(range(10, 20), NOISE))})
    a, _ = looks.advance({"sequential": a}, seq_config(range(10, 20)), fake_runs(),
                         {"dynamic": dict(zip(range(10, 20), NOISE))})
    assert a["status"] == "finished"
    late = seq_config(range(5, 10), alpha=0.04, max_seeds=15)
    with pytest.raises(UserError) as err:
        looks.check(late, {"sequential": a})
    text = str(err.value)
    assert "its seeds (5..19) include seeds an earlier one has looked at (10..19)" in text
    assert "-S 'seeds=[20, 21, 22, 23, 24]'" in text and "\n" not in text
    assert looks.check(seq_config(range(20, 25), alpha=0.04, max_seeds=15), {"sequential": a}) is None


def test_a_finished_design_runs_again_on_fresh_seeds_and_says_how():
    cfg, finished = first_look(CLEAR)
    with pytest.raises(UserError, match=r"it finished at look 1 .*; seeds has 5: to run it again on fresh seeds: "
                                        r"-S 'seeds=\[5, 6, 7, 8, 9\]'"):
        looks.check(seq_config(range(3, 8)), {"sequential": finished})
    assert looks.check(seq_config(range(5, 10)), {"sequential": finished}) is None  # a replication: a new design
    again, note = looks.advance({"sequential": finished}, seq_config(range(5, 10)), fake_runs(),
                                {"dynamic": dict(zip(range(5, 10), CLEAR))})
    assert again["design"]["seeds"] == list(range(5, 15)) and again["seen_before"] == [0, 1, 2, 3, 4]


def test_advance_leaves_the_previous_record_as_it_was():
    cfg, record = first_look()
    before = json.loads(json.dumps(record))
    later, _ = looks.advance({"sequential": record}, seq_config(range(10)), fake_runs(), differences(NOISE))
    assert record == before and later is not record and len(later["looks"]) == 2


def test_a_record_of_another_format_is_refused_in_one_line():
    cfg, record = first_look()
    for damaged in ({**record, "params": "7d2758221aa31325"}, {"looks": []}, "not a record"):
        with pytest.raises(UserError, match=r"^metrics/comparison.json: its sequential design record is damaged"):
            looks.check(seq_config(range(10)), {"sequential": damaged})


def test_a_design_on_seeds_compared_before_says_so():
    cfg = seq_config()
    record, note = looks.advance({}, cfg, fake_runs(), differences(NOISE), compared={0, 1, 2})
    assert record["started_on_compared_seeds"] == [0, 1, 2] and "compared before with a fixed n (0..2)" in note


def test_seeds_that_are_not_a_look_are_refused_naming_seeds():
    cfg, record = first_look()
    with pytest.raises(UserError, match=r"^params.yaml: seeds: the sequential design looks at 5, 10 seeds and its "
                                        r"next look is at 10 seeds \(0\.\.9\); seeds has 7"):
        looks.check(seq_config(range(7)), {"sequential": record})
    cfg, finished = first_look(CLEAR)
    with pytest.raises(UserError, match=r"it finished at look 1 \(dynamic beats static"):
        looks.check(seq_config(range(10)), {"sequential": finished})
    assert looks.check(seq_config(range(5)), {"sequential": finished}) is not None  # the look made: shown again


def test_runs_trained_again_never_restart_a_design_on_its_seeds():
    cfg, record = first_look()
    with pytest.raises(UserError, match=r"the runs were trained again, from other code or data.*seeds from 5"):
        looks.advance({"sequential": record}, seq_config(range(10)), fake_runs("other"), differences(NOISE))


def test_the_history_says_when_a_fixed_n_p_value_is_descriptive():
    history, grew = looks.history({}, "k", [0, 1, 2])
    assert grew is None and history == {"runs": "k", "seeds": [[0, 1, 2]]}
    history, grew = looks.history({"looked": history}, "k", [0, 1, 2])
    assert grew is None  # the same comparison again
    history, grew = looks.history({"looked": history}, "k", [4, 3, 2, 1, 0])
    assert grew == [0, 1, 2] and history["seeds"] == [[0, 1, 2], [0, 1, 2, 3, 4]]
    assert looks.history({"looked": history}, "k", [0, 1, 2, 3, 4])[1] == [0, 1, 2]  # stays descriptive
    assert looks.history({"looked": history}, "other runs", [0, 1, 2, 3, 4])[1] is None


@pytest.mark.parametrize("over, key", [
    ({"schedules": ["static"], "compare": {"sequential": {"max_seeds": 10}}}, "compare.sequential.max_seeds"),
    ({"seeds": [0, 1, 2], "compare": {"sequential": {"max_seeds": 10}}}, "seeds"),
    ({"seeds": list(range(8)), "compare": {"sequential": {"max_seeds": 6}}}, "compare.sequential.max_seeds"),
    ({"compare": {"sequential": {"max_seeds": 10, "every": 0}}}, "compare.sequential.every"),
    ({"compare": {"sequential": {"max_seeds": 1000, "every": 5}}}, "compare.sequential.every"),  # 200 looks
])
def test_bad_designs_are_one_line_naming_the_key(over, key):
    with pytest.raises(UserError) as err:
        tiny_config(**{"seeds": list(range(5)), **over})
    assert "\n" not in str(err.value) and f"params.yaml: {key}:" in str(err.value)


def test_a_fixed_n_verdict_after_seeds_grew_says_it_is_descriptive():
    from thesislab.comparison.compare import with_history

    result = with_history({"verdict": "dynamic beats static by 1.00 points (...)", "seeds": 5},
                          {"runs": "k", "seeds": [[0, 1, 2], [0, 1, 2, 3, 4]]}, [0, 1, 2])
    assert result["fixed_n"] == {"descriptive": True, "why": "seeds grew from 3 to 5 after a comparison on 3 was "
                                 "seen: the p-value assumes n was fixed in advance"}
    assert result["verdict"].endswith("(descriptive: seeds grew from 3 to 5 after a comparison on 3 was seen: the "
                                      "p-value assumes n was fixed in advance; compare.sequential plans looks in advance)")
    plain = with_history({"verdict": "v", "seeds": 3}, {"runs": "k", "seeds": [[0, 1, 2]]}, None)
    assert plain["verdict"] == "v" and plain["fixed_n"]["descriptive"] is False


def test_a_damaged_record_is_refused_only_where_a_design_needs_it(tmp_path):
    damaged = tmp_path / "comparison.json"
    damaged.write_text('{"sequential": {"look')
    assert looks.read(damaged, strict=False) == {}
    with pytest.raises(UserError, match=r"comparison.json: not readable JSON; it holds the sequential design's looks"):
        looks.read(damaged)
    assert looks.read(tmp_path / "absent.json") == {}


def test_other_params_start_a_new_design_only_on_fresh_seeds():
    cfg, record = first_look()
    other = dict(schedules=["static", "dynamic"], lr=0.02, compare={"sequential": {"max_seeds": 10, "every": 5}})
    with pytest.raises(UserError, match=r"^params.yaml: compare.sequential: the runs' params changed since the "
                                        r"design's look\(s\) \(lr 0.01 -> 0.02\)"):
        looks.check(tiny_config(seeds=list(range(10)), **other), {"sequential": record})
    fresh = tiny_config(seeds=list(range(20, 25)), **other)
    assert looks.check(fresh, {"sequential": record}) is None
    new, note = looks.advance({"sequential": record}, fresh, fake_runs(), {"dynamic": dict(zip(range(20, 25), NOISE))})
    assert new["design"]["seeds"][:5] == list(range(20, 25)) and "no earlier design" in note


def test_a_challenger_decided_early_stays_decided_while_another_goes_on():
    three = dict(schedules=["static", "dynamic", "cosine"], compare={"sequential": {"max_seeds": 10, "every": 5}})
    record, _ = looks.advance({}, tiny_config(seeds=list(range(5)), **three), fake_runs(),
                              {"dynamic": dict(enumerate(CLEAR + [-9.0] * 5)), "cosine": dict(enumerate(NOISE))})
    assert record["design"]["alpha_per_comparison"] == pytest.approx(0.025)  # two challengers share alpha
    assert record["decisions"] == {"dynamic": {"decision": "better", "look": 1, "n": 5, "futility": False}}
    assert record["status"] == "continue"
    later, _ = looks.advance({"sequential": record}, tiny_config(seeds=list(range(10)), **three), fake_runs(),
                             {"dynamic": dict(enumerate(CLEAR + [-9.0] * 5)), "cosine": dict(enumerate(NOISE))})
    assert list(later["looks"][1]["challengers"]) == ["cosine"]  # seeds 5-9 would have said worse: not asked
    assert later["decisions"]["dynamic"]["decision"] == "better" and later["status"] == "finished"
    assert looks.code(later, "dynamic") == sq.BETTER and looks.code(later, "cosine") == sq.INCONCLUSIVE


def test_a_bound_just_above_zero_never_prints_as_zero():
    assert [looks.signed(v) for v in (0.003399, -0.004, 0.0, 1.875, -391.7, -3.87e55)] == [
        "+0.003", "-0.004", "+0.00", "+1.88", "-391.70", "-3.87e+55"]


def test_a_record_without_a_param_this_version_added_is_still_the_same_experiment():
    cfg, record = first_look()
    older = {**record, "params": {k: v for k, v in record["params"].items() if k != "engine.threads"}}
    assert looks.recorded({"sequential": older}, seq_config(range(10))) is older
    later, note = looks.advance({"sequential": older}, seq_config(range(10)), fake_runs(), differences(NOISE))
    assert note is None and later["looks"][0] == record["looks"][0] and later["look"] == 2


def test_the_recorded_looks_decide_as_the_simulated_design_does(design):
    """The record's own look-by-look path (what a real comparison writes) against run_design, on sequences
    with and without an effect: the same stopping look and decision every time."""
    import copy

    cfg = tiny_config(seeds=list(range(5)), schedules=["static", "dynamic"],
                      compare={"sequential": {"max_seeds": 50, "every": 5}})
    start = looks.new_record(cfg, fake_runs())
    assert tuple(start["design"]["boundaries"]) == design.boundaries  # one calibration, fixed by its seed
    rng = np.random.default_rng(TEST_SEED)
    outcomes = set()
    for _ in range(150):
        d = rng.normal(rng.choice([0.0, 0.5, 1.0]), rng.choice([0.3, 1.0, 3.0]), 50)
        record = copy.deepcopy(start)
        while record["status"] == "continue":
            record = looks._look(record, {"dynamic": dict(enumerate(d))})
        n, _, _, _, expected = sq.run_design(d, design)[-1]
        decided = record["decisions"]["dynamic"]
        assert (decided["n"], looks.CODES[decided["decision"]]) == (n, expected)
        outcomes.add(decided["decision"])
    assert outcomes == {"better", "equivalent", "inconclusive"}  # each path exercised


def test_a_design_near_the_top_of_the_seed_range_is_judged_by_its_last_seed_at_every_look():
    """Accepted at its first look means accepted at every later one: the bound is the design's last seed."""
    top = config.SEED_MAX
    first = range(top - 9, top - 4)  # 5 seeds; the design's 10th and last seed is SEED_MAX itself
    assert seq_config(first).seeds[-1] == top - 5
    assert seq_config(range(top - 9, top + 1)).seeds[-1] == top  # the second look: still accepted
    with pytest.raises(UserError, match=rf"its last would be {top + 1}, over {top}: start it at {top - 9} or below"):
        seq_config(range(top - 8, top - 3))


# --- a record checked against itself and its runs (audit.py) ------------------------------------------------------


def _leaves(value, path=()):
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            yield from _leaves(v, path + (i,))
    else:
        yield path, value


def _perturbed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1 if isinstance(value, int) else value * 1.01 + 0.01
    if isinstance(value, str):
        return value + "x"
    return [1] if isinstance(value, list) else None if isinstance(value, dict) else 0


def _set(record, path, value):
    holder = record
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value


def two_records():
    """A design still looking (two looks of three, nothing decided) and one decided at its first look."""
    cfg = seq_config(max_seeds=15)
    going, _ = looks.advance({}, cfg, fake_runs(), differences(NOISE + NOISE[:5]))
    going, _ = looks.advance({"sequential": going}, seq_config(range(10), max_seeds=15), fake_runs(),
                             differences(NOISE + NOISE[:5]))
    assert going["status"] == "continue" and going["look"] == 2
    return [(going, seq_config(range(15), max_seeds=15), differences(NOISE + NOISE[:5])),
            (first_look(CLEAR)[1], seq_config(range(5)), differences(CLEAR))]


@pytest.mark.parametrize("which", [0, 1])
def test_every_field_of_a_record_edited_by_hand_is_refused_in_one_line(which):
    """Each leaf of the record changed in turn (a number nudged, a word altered, a flag flipped, a list or
    object emptied or nulled): the comparison refuses it in one line, whatever the field, never a traceback
    and never a verdict built on it."""
    record, cfg, diffs = two_records()[which]
    looks.advance({"sequential": record}, cfg, fake_runs(), diffs)  # as recorded: accepted
    fields = list(_leaves(record))
    assert len(fields) > 60
    for path, value in fields:
        damaged = json.loads(json.dumps(record))
        _set(damaged, path, _perturbed(value))
        with pytest.raises(UserError) as err:
            looks.advance({"sequential": damaged}, cfg, fake_runs(), diffs)
        assert "\n" not in str(err.value), path


def test_the_red_teams_edits_are_refused_naming_the_field():
    record, cfg, diffs = two_records()[0]
    for path, value, named in [(("design", "seeds"), None, "design.seeds is None, not list"),
                               (("design", "boundaries", 0), 1.0, "design.boundaries is [1.0"),
                               (("looks", 1, "challengers", "dynamic", "decision"), "better",
                                "looks[1].challengers.dynamic.decision is 'better', and its interval decides "
                                "'continue'")]:
        damaged = json.loads(json.dumps(record))
        _set(damaged, path, value)
        with pytest.raises(UserError, match=r"^metrics/comparison.json: the sequential design record disagrees with "
                                            r"itself: " + re.escape(named)):
            looks.check(cfg, {"sequential": damaged})


def test_a_record_whose_looks_are_not_what_its_runs_give_is_refused():
    record, cfg, diffs = two_records()[0]
    other = {"dynamic": {s: d + 0.5 for s, d in diffs["dynamic"].items()}}
    with pytest.raises(UserError, match=r"disagrees with its runs: looks\[0\]\.challengers\.dynamic: its mean \+0\.1800 "
                                        r"and std 1\.0\d+ are not what its 5 runs give \(\+0\.6800"):
        looks.advance({"sequential": record}, cfg, fake_runs(), other)


def test_a_bound_off_by_its_rounding_is_accepted_and_one_off_by_a_shown_digit_is_not():
    """Seen on a GPU machine's numpy: a recorded bound 2.4e-6 from the one recomputed from the rounded mean, std and
    boundary (each rounded to 6 decimals, the std's error times c/sqrt(n)) was refused as an edit."""
    record, cfg, diffs = two_records()[0]
    entry = record["looks"][0]["challengers"]["dynamic"]
    for off, refused in ((8e-6, False), (-8e-6, False), (1e-4, True)):  # |low| 6.14: rel_tol alone allows 6e-6
        damaged = json.loads(json.dumps(record))
        damaged["looks"][0]["challengers"]["dynamic"]["low"] = round(entry["low"] + off, 6)
        if refused:
            with pytest.raises(UserError, match=r"looks\[0\]\.challengers\.dynamic\.low is "):
                looks.check(cfg, {"sequential": damaged})
        else:
            looks.check(cfg, {"sequential": damaged})


def test_an_edited_budget_is_refused_before_it_sizes_any_work():
    """A budget of ten million seeds would make the design's recomputation run for hours: refused from the record's
    own seed list first."""
    record, cfg, diffs = two_records()[0]
    damaged = json.loads(json.dumps(record))
    damaged["design"]["params"]["max_seeds"] = 10**7
    with pytest.raises(UserError, match=r"design\.params\.max_seeds is not the 15 seeds it plans"):
        looks.check(cfg, {"sequential": damaged})
