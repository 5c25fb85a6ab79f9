"""A group-sequential comparison: seeds added in batches, a look after each, until the paired difference is
decided, with the chance of a wrong "better", "worse" or "equivalent" at most alpha however early it stops.

The design is fixed before any result is seen. Looks at n_1 < n_2 < ... < n_K = max_seeds seeds; information
fraction tau_k = n_k / max_seeds; the alpha spent by look k is a Lan-DeMets spending function of tau_k
(O'Brien-Fleming type: little early, almost all of it at the end; Pocock type: evenly). At look k the repeated
confidence interval (RCI) is mean(d) +- c_k s / sqrt(n_k), where c_k is the t-scale boundary: the value that
|t_k| crosses, for the first time at look k, with probability alpha_k when there is no difference. Because
(mean(d) - delta) / (s / sqrt(n)) has that same path whatever the true difference delta and spread sigma
(normal differences), every look's interval covers delta simultaneously with probability 1 - alpha: a
decision read off any look, at any stopping time, is wrong at most alpha of the time.

The first look's c_1 is the exact t quantile at alpha_1; the later c_k are calibrated once per design by
simulating that path (exact up to Monte-Carlo error; a fixed RNG seed makes them reproducible); where too few
simulated paths cross for a quantile, c_k is the t quantile at alpha_k (conservative). The known-variance z boundaries (recursive numerical integration) are the large-sample
limit and the published reference: tests reproduce Jennison & Turnbull's tables with them.
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from thesislab import config

BETTER, WORSE, EQUIVALENT, INCONCLUSIVE, NO_VERDICT, CONTINUE = 1, -1, 0, 2, 3, 4  # verdict codes
DECISIONS = {BETTER: "better", WORSE: "worse", EQUIVALENT: "equivalent", CONTINUE: "continue",
             INCONCLUSIVE: "inconclusive"}  # a look's decision, as comparison.json records it
SPENDING = config.SPENDING
SIMULATED_PATHS = 200_000  # paths that calibrate the t boundaries: 0.5 s for 10 looks here
CALIBRATION_SEED = 2020
MIN_CROSSINGS = 200  # fewer expected crossings than this at a look: the t quantile, not the simulation
GRID = 1001  # points of the recursive integration (z boundaries to 4 decimals)


def spent(spending, alpha, tau):
    """Cumulative two-sided alpha spent by information fraction tau (Lan & DeMets 1983)."""
    tau = np.asarray(tau, dtype=float)
    if spending == "obrien_fleming":
        return 4 * stats.norm.sf(stats.norm.isf(alpha / 4) / np.sqrt(tau))
    if spending == "pocock":
        return alpha * np.log1p((math.e - 1) * tau)
    raise ValueError(f"unknown spending function {spending!r}")


def look_sizes(first, every, max_seeds) -> tuple:
    """n at each look: the first look's seeds, then `every` more a look, the last at max_seeds."""
    sizes = list(range(first, max_seeds, every)) + [max_seeds]
    return tuple(sorted(set(sizes)))


# The least alpha a look spends. An O'Brien-Fleming first look at a small fraction of a large budget spends less
# than a double can hold (alpha 0.001, 5 of 1000 seeds: about 1e-530): as 0 its boundary would be infinite. At
# this floor the boundary is finite (z about 37) and the look still can never decide; the total is unchanged.
MIN_ALPHA_PER_LOOK = 1e-300


def alpha_per_look(looks, spending, alpha) -> np.ndarray:
    cumulative = spent(spending, alpha, np.asarray(looks, dtype=float) / looks[-1])
    return np.maximum(np.diff(cumulative, prepend=0.0), MIN_ALPHA_PER_LOOK)


def z_boundaries(fractions, spending, alpha) -> list:
    """Two-sided boundaries for a z statistic with known variance, by recursive numerical integration of the
    density of S_k = Z_k sqrt(tau_k) (a Brownian motion at time tau_k) over the region no earlier look
    crossed (Armitage, McPherson & Rowe 1969; Jennison & Turnbull 2000, ch. 19)."""
    tau = np.asarray(fractions, dtype=float)
    per_look = np.maximum(np.diff(spent(spending, alpha, tau), prepend=0.0), MIN_ALPHA_PER_LOOK)
    bounds, grid, density = [], None, None
    for k, (t, a) in enumerate(zip(tau, per_look)):
        if k == 0:
            c = stats.norm.isf(a / 2)
            grid = np.linspace(-c * math.sqrt(t), c * math.sqrt(t), GRID)
            density = stats.norm.pdf(grid, scale=math.sqrt(t))
        else:
            step = math.sqrt(t - tau[k - 1])
            mass = density * _trapezoid_weights(grid)  # the surviving probability at each grid point

            def crossing(c):
                edge = c * math.sqrt(t)
                return np.sum(mass * (stats.norm.cdf((-edge - grid) / step) + stats.norm.sf((edge - grid) / step))) - a

            c = optimize.brentq(crossing, 1e-6, 100.0, xtol=1e-10)
            edge = c * math.sqrt(t)
            new = np.linspace(-edge, edge, GRID)
            density = stats.norm.pdf((new[:, None] - grid[None, :]) / step) @ mass / step
            grid = new
        bounds.append(float(c))
    return bounds


def _trapezoid_weights(grid):
    w = np.full(len(grid), grid[1] - grid[0])
    w[0] = w[-1] = w[0] / 2
    return w


def t_boundaries(looks, per_look, known_sigma=False, paths=SIMULATED_PATHS, seed=CALIBRATION_SEED) -> list:
    """The boundaries c_k for |t_k| at looks of n_k seeds, alpha_k spent at look k: at each look, the value
    that exactly alpha_k * paths of the simulated null paths not yet stopped reach. known_sigma: the z
    statistic instead (sigma = 1 known), which reproduces z_boundaries (a check of this simulation)."""
    rng = np.random.default_rng(seed)
    total, squares = np.zeros(paths), np.zeros(paths)
    alive = np.ones(paths, dtype=bool)
    bounds, seen = [], 0
    for n, a in zip(looks, per_look):
        for start in range(seen, n, 8):  # draws in slices: memory paths x 8, whatever the look's size
            x = rng.standard_normal((paths, min(8, n - start)))
            total += x.sum(axis=1)
            squares += (x * x).sum(axis=1)
        seen = n
        mean = total / n
        scale = 1.0 if known_sigma else np.sqrt(np.maximum(squares - n * mean**2, 0.0) / (n - 1))
        statistic = np.abs(mean) / (scale / math.sqrt(n))
        crossings = a * paths
        if not bounds:  # the first look: no earlier look to condition on, so the exact quantile
            c = float(stats.norm.isf(a / 2) if known_sigma else stats.t.isf(a / 2, n - 1))
        elif crossings < MIN_CROSSINGS:
            c = float(stats.norm.isf(a / 2) if known_sigma else stats.t.isf(a / 2, n - 1))
        else:
            survivors = np.sort(statistic[alive])
            c = float(survivors[len(survivors) - int(round(crossings))])
        alive &= statistic < c
        bounds.append(c)
    return bounds


@dataclass(frozen=True)
class Design:
    """A sequential design, as fixed before the first look."""

    looks: tuple  # n at each look
    boundaries: tuple  # c_k: the RCI at look k is mean +- c_k s / sqrt(n_k)
    min_effect: float  # the equivalence margin (+-) and the effect the design is sized for
    futility: bool  # stop when the whole budget could not decide (non-binding)


def make_design(first, every, max_seeds, alpha, spending, min_effect, futility) -> tuple:
    """(Design, its numbers for the record: alpha spent and z boundaries per look, the calibration)."""
    looks = look_sizes(first, every, max_seeds)
    per_look = alpha_per_look(looks, spending, alpha)
    boundaries = t_boundaries(looks, per_look)
    fractions = [n / max_seeds for n in looks]
    numbers = {"alpha_spent": [float(f"{a:.4g}") for a in np.cumsum(per_look)],  # 4 digits, however small
               "z_boundaries": [round(c, 4) for c in z_boundaries(fractions, spending, alpha)],
               "calibration": {"paths": SIMULATED_PATHS, "rng_seed": CALIBRATION_SEED, "min_crossings": MIN_CROSSINGS}}
    return Design(looks, tuple(round(c, 6) for c in boundaries), min_effect, futility), numbers


def interval(mean, sd, n, c):
    half = c * sd / np.sqrt(n)
    return mean - half, mean + half


def decide(mean, sd, n, c, min_effect):
    """The decision at one look from its repeated CI (arrays broadcast): the interval above 0: BETTER; below:
    WORSE; inside +-min_effect: EQUIVALENT; else CONTINUE. No spread (sd 0 or undefined): CONTINUE."""
    low, high = interval(mean, sd, n, c)
    spread = np.isfinite(sd) & (sd > 0)
    code = np.where(low > 0, BETTER, np.where(high < 0, WORSE,
                    np.where((low > -min_effect) & (high < min_effect), EQUIVALENT, CONTINUE)))
    return np.where(spread, code, CONTINUE)


def futile(mean, sd, design):
    """Whether the whole budget would decide nothing if the mean and spread stayed as they are now: the last
    look's interval around today's mean would still hold 0 and reach past +-min_effect. Stopping then is
    non-binding (the boundaries ignore it), so it can only lower the error rates."""
    half = design.boundaries[-1] * sd / math.sqrt(design.looks[-1])
    return (np.abs(mean) - half <= 0) & (np.abs(mean) + half >= design.min_effect)


def settle(code, mean, sd, design, last):
    """A look's decision under the design's stopping rules (arrays broadcast): a "continue" at the last look,
    or one the budget could not turn into a decision (with futility), ends as INCONCLUSIVE."""
    stop = last or (design.futility and futile(mean, sd, design))
    return np.where((code == CONTINUE) & stop, INCONCLUSIVE, code)


def run_design(d, design):
    """Look by look over one sequence of paired differences d (at least design.looks[-1] long, or as far as
    it goes): [(n, c, low, high, decision)] up to the look that decided."""
    d = np.asarray(d, dtype=float)
    out = []
    for k, (n, c) in enumerate(zip(design.looks, design.boundaries)):
        if n > len(d):
            break
        x = d[:n]
        mean, sd = x.mean(), x.std(ddof=1)
        code = int(settle(decide(mean, sd, n, c, design.min_effect), mean, sd, design, k == len(design.looks) - 1))
        low, high = interval(mean, sd, n, c)
        out.append((n, c, float(low), float(high), code))
        if code != CONTINUE:
            break
    return out


def simulate(design, delta, sigma, sequences, rng) -> dict:
    """How often the design ends in each decision, and the seeds it takes on average, over `sequences`
    sequences of normal differences (mean delta, spread sigma): the same decide() as a real comparison."""
    total, squares = np.zeros(sequences), np.zeros(sequences)
    final = np.full(sequences, CONTINUE)
    used = np.zeros(sequences)
    seen = 0
    for k, (n, c) in enumerate(zip(design.looks, design.boundaries)):
        x = rng.normal(delta, sigma, (sequences, n - seen))
        total += x.sum(axis=1)
        squares += (x * x).sum(axis=1)
        seen = n
        mean = total / n
        sd = np.sqrt(np.maximum(squares - n * mean**2, 0.0) / (n - 1))
        code = settle(decide(mean, sd, n, c, design.min_effect), mean, sd, design, k == len(design.looks) - 1)
        fresh = (final == CONTINUE) & (code != CONTINUE)
        final[fresh], used[fresh] = code[fresh], n
    ends = [BETTER, WORSE, EQUIVALENT, INCONCLUSIVE]
    return {**{DECISIONS[code]: float(np.mean(final == code)) for code in ends}, "mean_seeds": float(used.mean())}
