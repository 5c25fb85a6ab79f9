"""A sequential design's record checked against itself: every field of the right type, the design recomputed
from its params (looks, seeds, boundaries, alpha spent: the calibration is deterministic), every look's
interval and decision recomputed from its mean and spread, and the summary fields (status, look, n, next seeds,
decisions) recomputed from the looks. comparison.json is a file anyone can edit: a record that does not agree
with what it says it is, is refused, never believed. What a look's mean and spread must be, the runs say:
looks.advance() checks that against them (runs_disagree).

problem(record) returns None, or the first disagreement in words, naming the field.
"""

import functools
import math

import numpy as np

from thesislab.comparison import sequential as sq

DESIGN_PARAM_TYPES = {"schedules": list, "baseline": str, "min_effect": float, "alpha": float, "spending": str,
                      "max_seeds": int, "every": int, "futility": bool}
LOOK_NUMBERS = ("mean", "std", "low", "high")


class Disagrees(Exception):
    """What in the record disagrees (a field and why)."""


def problem(record, decisions_words) -> str:
    """None when the record agrees with itself; else the first field that does not, and why."""
    try:
        _check(record, decisions_words)
    except Disagrees as err:
        return str(err)
    except (KeyError, TypeError, ValueError, IndexError) as err:  # a shape the checks above did not foresee
        return f"is malformed ({type(err).__name__}: {err})"
    return None


def _check(record, words):
    _require(isinstance(record, dict), "sequential", "is not an object")
    _field(record, "params", dict)
    _field(record, "runs", str)
    _field(record, "verdict", str)
    design = _field(record, "design", dict)
    params = _field(design, "params", dict, "design.")
    for key, kind in DESIGN_PARAM_TYPES.items():
        _field(params, key, kind, "design.params.")
    _require(params["spending"] in sq.SPENDING, "design.params.spending", f"is {params['spending']!r}")
    _require(params["max_seeds"] >= 1 and params["every"] >= 1, "design.params", "has a budget or batch under 1")
    names = [s for s in params["schedules"] if s != params["baseline"]]
    _require(all(isinstance(s, str) for s in params["schedules"]), "design.params.schedules",
             "holds a name that is not text")
    _require(names, "design.params.schedules", "names no challenger")
    seeds = _ints(design, "seeds", "design.")
    # Before anything is sized by it: an edited budget must not make the check itself run for hours.
    _require(len(seeds) == params["max_seeds"], "design.params.max_seeds", f"is not the {len(seeds)} seeds it plans")
    looks_at = _ints(design, "looks", "design.")
    _require(looks_at and 1 <= looks_at[0] <= len(seeds), "design.looks", "do not fit its seeds")
    first = seeds[:looks_at[0]]
    planned = first + list(range(max(first) + 1, max(first) + 1 + params["max_seeds"] - len(first)))
    _require(seeds == planned, "design.seeds", f"are not the design's ({_short(planned)})")
    alpha = _field(design, "alpha_per_comparison", float, "design.")
    _require(math.isclose(alpha, params["alpha"] / len(names), rel_tol=1e-12), "design.alpha_per_comparison",
             f"is not alpha / {len(names)}")
    made, numbers = _design(looks_at[0], params["every"], params["max_seeds"], alpha, params["spending"],
                            params["min_effect"], params["futility"])
    _same(looks_at, list(made.looks), "design.looks")
    _near(design.get("boundaries"), list(made.boundaries), "design.boundaries", 2e-6)
    for key, value in numbers.items():
        # Computed numbers, rounded: another machine's last bit may round the other way, never by more.
        tolerance = {"alpha_spent": 1e-3, "z_boundaries": 2e-4}.get(key)
        if tolerance is None:
            _same(design.get(key), value, f"design.{key}")
        else:
            _near(design.get(key), value, f"design.{key}", tolerance, relative=key == "alpha_spent")
    _check_seen(record, seeds)
    _check_looks(record, made, names, words)


def _check_seen(record, seeds):
    for key in ("seen_before", "started_on_compared_seeds"):
        value = record.get(key, [])
        _require(isinstance(value, list) and all(_is_int(s) for s in value), key, "is not a list of seeds")
    seen = record.get("seen_before", [])
    _require(not set(seen) & set(seeds), "seen_before", "shares seeds with the design (a design never starts on "
                                                        "seeds an earlier one looked at)")


def _check_looks(record, design, names, words):
    entries = _field(record, "looks", list)
    _require(0 < len(entries) <= len(design.looks), "looks", f"has {len(entries)} entries")
    decided = {}
    for k, entry in enumerate(entries):
        where = f"looks[{k}]"
        _require(isinstance(entry, dict), where, "is not an object")
        _require(entry.get("look") == k + 1, f"{where}.look", f"is not {k + 1}")
        _same(entry.get("n"), design.looks[k], f"{where}.n")
        _near(entry.get("boundary"), design.boundaries[k], f"{where}.boundary", 2e-6)
        challengers = _field(entry, "challengers", dict, f"{where}.")
        expected = [n for n in names if n not in decided]
        _require(sorted(challengers) == sorted(expected), f"{where}.challengers", f"are not {', '.join(expected)}")
        last = k == len(design.looks) - 1
        for name, e in challengers.items():
            at = f"{where}.challengers.{name}"
            _require(isinstance(e, dict), at, "is not an object")
            for key in LOOK_NUMBERS:
                _field(e, key, float, f"{at}.")
            low, high = sq.interval(e["mean"], e["std"], design.looks[k], design.boundaries[k])
            _close(e["low"], low, f"{at}.low")
            _close(e["high"], high, f"{at}.high")
            code = int(sq.settle(sq.decide(e["mean"], e["std"], design.looks[k], design.boundaries[k],
                                           design.min_effect), e["mean"], e["std"], design, last))
            # An interval within rounding of 0 or +-min_effect may be decided either way from the rounded numbers.
            edge = min(abs(b) for b in (e["low"], e["high"], e["low"] + design.min_effect,
                                        e["high"] - design.min_effect)) < 1e-5
            _require(e.get("decision") == words[code] or (edge and e.get("decision") in words.values()),
                     f"{at}.decision", f"is {e.get('decision')!r}, and its interval decides {words[code]!r}")
            code = next((c for c, w in words.items() if w == e["decision"]), code) if edge else code
            if code != sq.CONTINUE:
                decided[name] = {"decision": words[code], "look": k + 1, "n": design.looks[k],
                                 "futility": code == sq.INCONCLUSIVE and not last}
    _same(record.get("decisions"), decided, "decisions")
    going = len(decided) < len(names)  # the last look decides every challenger left (settle), so never past it
    summary = {"status": "continue" if going else "finished", "look": len(entries), "of": len(design.looks),
               "n": design.looks[len(entries) - 1],
               "next_seeds": record["design"]["seeds"][:design.looks[len(entries)]] if going else None}
    for key, value in summary.items():
        _same(record.get(key), value, key)


def runs_disagree(record, differences) -> str:
    """None when every recorded look's mean and spread are what the runs give over that look's seeds; else the
    first that is not. differences: {challenger: {seed: difference}} (the seeds of the current look)."""
    seeds = record["design"]["seeds"]
    for k, entry in enumerate(record["looks"]):
        for name, e in entry["challengers"].items():
            by_seed = differences.get(name, {})
            look_seeds = seeds[:entry["n"]]
            if not all(s in by_seed for s in look_seeds):
                continue  # a look over seeds these params no longer hold: checked when they are compared again
            d = np.array([by_seed[s] for s in look_seeds], dtype=float)
            mean, sd = float(d.mean()), float(d.std(ddof=1))
            if not (math.isclose(e["mean"], mean, abs_tol=1e-6) and math.isclose(e["std"], sd, abs_tol=1e-6)):
                return (f"looks[{k}].challengers.{name}: its mean {e['mean']:+.4f} and std {e['std']:.4f} are not what "
                        f"its {entry['n']} runs give ({mean:+.4f}, {sd:.4f})")
    return None


@functools.lru_cache(maxsize=8)
def _design(first, every, max_seeds, alpha, spending, min_effect, futility):
    """The design as make_design fixes it (deterministic: the calibration's RNG seed is fixed), made once."""
    design, numbers = sq.make_design(first, every, max_seeds, alpha, spending, min_effect, futility)
    return design, {k: v for k, v in numbers.items()}


def _field(holder, key, kind, prefix=""):
    value = holder.get(key) if isinstance(holder, dict) else None
    ok = (_is_int(value) if kind is int else isinstance(value, bool) if kind is bool else
          isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) if kind is float
          else isinstance(value, kind))
    _require(ok, f"{prefix}{key}", f"is {_short(value)}, not {'a number' if kind is float else kind.__name__}")
    return value


def _ints(holder, key, prefix):
    value = _field(holder, key, list, prefix)
    _require(all(_is_int(v) for v in value), f"{prefix}{key}", "holds a value that is not an integer")
    return value


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _same(value, expected, field):
    _require(value == expected, field, f"is {_short(value)}, not the design's {_short(expected)}")


def _near(value, expected, field, tolerance, relative=False):
    """A recorded number (or list of them) against its recomputed value, within its rounding."""
    def close(a, b):
        return (isinstance(a, (int, float)) and not isinstance(a, bool)
                and math.isclose(a, b, rel_tol=tolerance if relative else 0.0, abs_tol=0.0 if relative else tolerance))

    ok = (close(value, expected) if not isinstance(expected, list) else
          isinstance(value, list) and len(value) == len(expected) and all(map(close, value, expected)))
    _require(ok, field, f"is {_short(value)}, not the design's {_short(expected)}")


def _close(value, expected, field):
    """Recorded numbers are rounded to 6 decimals, and a bound recomputed from the rounded mean, std and boundary
    carries their rounding times the boundary over sqrt(n): a few 1e-6 (seen: 2.4e-6). 1e-5 still catches any
    edit that changes a shown digit."""
    _require(math.isclose(value, expected, rel_tol=1e-6, abs_tol=1e-5), field,
             f"is {value:g}, and its mean, std and boundary give {expected:g}")


def _require(ok, field, why):
    if not ok:
        raise Disagrees(f"{field} {why}".strip())


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
