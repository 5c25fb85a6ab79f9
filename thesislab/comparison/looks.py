"""A sequential design's record in comparison.json: the design as fixed at its first look, every look since
(n, boundary, each challenger's repeated CI and decision) and the seeds the next look needs; and, for a plain
fixed-n comparison, which seed lists were compared before (a p-value after seeds grew is descriptive).

Nothing here re-decides. A look once recorded stays as it was; a design is never changed on seeds it has seen
(changing the plan after seeing data is what invalidates the error rate); seeds that are not the design's next
look are refused, in one line, by check(), which the check stage and the sweep call before any work
(designs.check_file: with every other design the project holds).
"""

import copy
import hashlib
import json
from pathlib import Path

import numpy as np

from thesislab.comparison import audit
from thesislab.comparison import sequential as sq
from thesislab.errors import UserError

DECISIONS = sq.DECISIONS
CODES = {word: code for code, word in DECISIONS.items()}
SPENDING_NAMES = {"obrien_fleming": "O'Brien-Fleming", "pocock": "Pocock"}
HISTORY = 50  # seed lists remembered for the "descriptive" note


def read(path, strict=True) -> dict:
    """The comparison.json an earlier compare wrote ({} when there is none). strict: a damaged file is refused
    (it holds a sequential design's looks, which must never silently start over); else it counts as none."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        if not strict:
            return {}
        raise UserError(f"{path}: not readable JSON; it holds the sequential design's looks: restore it "
                        f"(git checkout {path}) or delete it to start afresh") from None
    return data if isinstance(data, dict) else {}


def design_params(cfg) -> dict:
    """What fixes a design: changing any of it after a look is refused."""
    s = cfg.compare.sequential
    return {"schedules": list(cfg.schedules), "baseline": cfg.compare.baseline, "min_effect": cfg.compare.min_effect,
            "alpha": s.alpha, "spending": s.spending, "max_seeds": s.max_seeds, "every": s.every,
            "futility": s.futility}


def run_params(cfg) -> dict:
    """The params the runs are made from (not which seeds or schedules, not how they are compared), flattened
    to dotted keys: recorded with a design, and compared key by key."""
    return _flat({k: v for k, v in cfg.to_dict().items()
                  if k not in ("seeds", "schedules", "compare", "checkpoint_every")})  # schedules: the design's


def _flat(d, prefix="") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def runs_key(runs) -> str:
    """What the runs were made from: their shared config digest (params, data, arithmetic) and each schedule's
    knobs; runs retrained from other code or data give another key."""
    return _digest({s: sorted({json.dumps([r.summary.get("config"), r.summary.get("schedule_params")],
                                          sort_keys=True) for r in per_seed}) for s, per_seed in runs.items()})


RECORD_KEYS = ("status", "verdict", "look", "of", "n", "next_seeds", "params", "runs", "design", "decisions", "looks")


RESTORE = ("restore it (git checkout metrics/comparison.json), or delete its \"sequential\" key to forget that "
           "design")


def record_of(previous):
    """comparison.json's design record, checked to be one this version reads and to agree with itself: its
    design recomputed from its params, its looks from their numbers (audit.py). None: there is none."""
    record = previous.get("sequential")
    if record is None:
        return None
    if not (isinstance(record, dict) and all(k in record for k in RECORD_KEYS) and isinstance(record["params"], dict)
            and record["looks"]):
        raise UserError(f"metrics/comparison.json: its sequential design record is damaged or of an older format; "
                        f"{RESTORE}")
    wrong = audit.problem(record, DECISIONS)
    if wrong is None and record["verdict"] != verdict(record):
        wrong = "verdict is not what its looks say"
    if wrong:
        raise UserError(f"metrics/comparison.json: the sequential design record disagrees with itself: {wrong}; "
                        f"{RESTORE}")
    return record


def recorded(previous, cfg):
    """The record of this experiment's design, or None (no record, or one made with other params). Compared key
    by key over the params both know, so that a param a later version adds (or an older one had) does not by
    itself count as another experiment."""
    record = record_of(previous)
    if record is None:
        return None
    now = run_params(cfg)
    return record if not _param_changes(record, now) else None


def _param_changes(record, now) -> list:
    return [f"{k} {v} -> {now[k]}" for k, v in record["params"].items() if k in now and now[k] != v]


def _seen(record) -> set:
    return set(record["design"]["seeds"][:record["looks"][-1]["n"]])


def ever_seen(record) -> set:
    """Every seed a design in this file has looked at: this design's and the ones before it."""
    return set(record.get("seen_before", [])) | _seen(record)


def _changes(record, cfg) -> list:
    """What differs from the design as recorded (a key it did not record, from an older version, is not a change;
    schedules in another order are the same comparisons)."""
    old, new = record["design"]["params"], design_params(cfg)
    return [f"{k} {old[k]} -> {new[k]}" for k in new if k in old and
            (sorted(old[k]) != sorted(new[k]) if k == "schedules" else old[k] != new[k])]


def _allowed(record) -> list:
    """The seed lists this design can look at now: any look already made, and the next one while it runs."""
    seeds, sizes = record["design"]["seeds"], record["design"]["looks"]
    done = len(record["looks"])
    upto = done + (1 if record["status"] == "continue" else 0)
    return [seeds[:n] for n in sizes[:upto]]


def check(cfg, previous, others=()):
    """Before any work: seeds that are not one of the design's looks, and a new design (none recorded here, or the
    design or the runs' params changed) on seeds an earlier design has looked at, here or anywhere else in the
    project (`others`: designs.Elsewhere), are refused in one line. Returns the record this comparison
    continues, or None (a new design starts at `seeds`)."""
    if cfg.compare.sequential.max_seeds is None:
        return None
    record = record_of(previous)
    if record is None:
        refuse_seen(None, cfg, "none is recorded here", others)
        return None
    changed = _param_changes(record, run_params(cfg))
    if changed:
        refuse_seen(record, cfg, f"the runs' params changed since the design's look(s) ({'; '.join(changed[:3])})",
                    others)
        return None
    changes = _changes(record, cfg)
    if changes:
        refuse_seen(record, cfg, f"the design changed after {len(record['looks'])} look(s) on these seeds "
                                 f"({'; '.join(changes)})", others)
        return None
    allowed = _allowed(record)
    if set(cfg.seeds) in [set(a) for a in allowed]:
        return record
    if record["status"] != "continue" and not ever_seen(record) & set(planned_seeds(cfg)):
        # The same design again, on seeds it has not seen: a replication, a design of its own.
        refuse_seen(record, cfg, "the recorded design finished", others)
        return None
    fresh = max(ever_seen(record)) + 1
    first = len(record["design"]["seeds"][:record["design"]["looks"][0]])
    state, then = ((f"its next look is at {len(allowed[-1])} seeds ({_span(allowed[-1])})",
                    "python -m thesislab.sweep runs the looks") if record["status"] == "continue" else
                   (f"it finished at look {len(record['looks'])} ({record['verdict']})",
                    f"to run it again on fresh seeds: -S 'seeds={list(range(fresh, fresh + first))}'"))
    raise UserError(f"params.yaml: seeds: the sequential design looks at {', '.join(map(str, record['design']['looks']))} "
                    f"seeds and {state}; seeds has {len(cfg.seeds)}: {then}")


def planned_seeds(cfg) -> list:
    """Every seed a design starting at `seeds` would use, look by look: seeds, then the next integers after
    max(seeds) up to max_seeds in all."""
    first, budget = list(cfg.seeds), cfg.compare.sequential.max_seeds
    return first + list(range(max(first) + 1, max(first) + 1 + budget - len(first)))


def refuse_seen(record, cfg, why, others=(), runs=None):
    """A new design may start only on seeds no design has looked at, at any of its looks, in this file (`record`,
    or None) or anywhere else in the project (`others`, less those of this very plan: the same design, params and
    seeds, and, once known, the same runs, whose looks this one would repeat number for number): otherwise the
    plan would be made after seeing those seeds' results, which is what the error rate cannot survive."""
    planned = set(planned_seeds(cfg))
    here = ever_seen(record) if record else set()
    there = [(o, ever_seen(o.record)) for o in others if not same_plan(o.record, cfg, runs)]
    clash = [(o, seen & planned) for o, seen in there if seen & planned]
    if not here & planned and not clash:
        return
    fresh = max(here.union(*(seen for _, seen in there))) + 1
    if here & planned:
        whose, forget = f"an earlier one has looked at ({_span(sorted(here & planned))})", \
            "delete metrics/comparison.json to forget the earlier design"
    else:
        other, seeds = clash[0]
        whose = f"a design in {other.where} has looked at ({_span(sorted(seeds))})"
        forget = other.forget or f"keep {other.where}'s design"
    raise UserError(f"params.yaml: compare.sequential: {why}, so a new design would start, but its seeds "
                    f"({_span(planned_seeds(cfg))}) include seeds {whose}: its error rate holds only for the plan "
                    f"fixed in advance: restore that, start the new design on seeds from {fresh} "
                    f"(-S 'seeds={list(range(fresh, fresh + len(cfg.seeds)))}'), or {forget}")


def same_plan(record, cfg, runs=None) -> bool:
    """Whether `record` is the design these params would start (the same design params, run params and seeds; and
    the same runs, where known): its looks are the ones this design would make."""
    return (not _changes(record, cfg) and not _param_changes(record, run_params(cfg))
            and record["design"]["seeds"] == planned_seeds(cfg) and (runs is None or record["runs"] == runs_key(runs)))


def _span(seeds):
    return f"{seeds[0]}..{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else ", ".join(map(str, seeds))


def new_record(cfg, runs, seen_before=()) -> dict:
    """A design fixed now, before its first look is decided: looks, seeds, boundaries."""
    s = cfg.compare.sequential
    challengers = len(cfg.schedules) - 1
    per_comparison = s.alpha / challengers  # Bonferroni: every challenger's intervals hold together with 1 - alpha
    design, numbers = sq.make_design(len(cfg.seeds), s.every, s.max_seeds, per_comparison, s.spending,
                                     cfg.compare.min_effect, s.futility)
    first, seeds = list(cfg.seeds), planned_seeds(cfg)
    return {"status": "continue", "verdict": None, "look": 0, "of": len(design.looks), "n": 0, "next_seeds": first,
            "params": run_params(cfg), "runs": runs_key(runs),
            "design": {"params": design_params(cfg), "alpha_per_comparison": per_comparison, "seeds": seeds,
                       "looks": list(design.looks), "boundaries": list(design.boundaries), **numbers},
            "decisions": {}, "looks": [], "seen_before": sorted(seen_before)}


def design_of(record) -> sq.Design:
    d = record["design"]
    return sq.Design(tuple(d["looks"]), tuple(d["boundaries"]), d["params"]["min_effect"], d["params"]["futility"])


def advance(previous, cfg, runs, differences, compared=(), others=()) -> tuple:
    """(the record after this comparison, a note or None). differences: {challenger: {seed: challenger -
    baseline test accuracy}} over params' seeds; compared: seeds these runs were compared on before, fixed-n;
    others: the project's other designs (designs.elsewhere). A look already recorded is kept as it was; the
    design's next look is decided and appended."""
    record = check(cfg, previous, others)
    earlier = record_of(previous)
    if record is not None and record["runs"] != runs_key(runs):
        refuse_seen(record, cfg, "the runs were trained again, from other code or data, since the design's looks",
                    others, runs)
        record = None
    note = None
    if record is None:
        refuse_seen(None, cfg, "a new design starts here", others, runs)  # other runs than a same plan's elsewhere
        seen = ever_seen(earlier) if earlier else set()
        record = new_record(cfg, runs, seen)
        if earlier:
            note = "a new sequential design, on seeds no earlier design has looked at"
        peeked = sorted(set(compared) & set(cfg.seeds))
        if peeked:
            record["started_on_compared_seeds"] = peeked
            note = (f"the design's first look includes seeds compared before with a fixed n ({_span(peeked)}): "
                    "its plan was made after seeing them; a design on fresh seeds is cleaner")
    else:
        wrong = audit.runs_disagree(record, differences)
        if wrong:
            raise UserError(f"metrics/comparison.json: the sequential design record disagrees with its runs: {wrong}; "
                            f"{RESTORE}")
        record = copy.deepcopy(record)  # the previous comparison's content stays as it was read
    if record["status"] != "continue" or set(cfg.seeds) != set(record["next_seeds"]):
        return record, note  # a look already made: shown as recorded
    return _look(record, differences), note


def _look(record, differences) -> dict:
    design = design_of(record)
    k = len(record["looks"])
    n, c = design.looks[k], design.boundaries[k]
    seeds = record["design"]["seeds"][:n]
    last = k == len(design.looks) - 1
    entry = {"look": k + 1, "n": n, "boundary": c, "challengers": {}}
    for name, by_seed in differences.items():
        if name in record["decisions"]:
            continue  # decided at an earlier look: never decided again
        d = np.array([by_seed[s] for s in seeds], dtype=float)
        mean, sd = float(d.mean()), float(d.std(ddof=1))
        code = int(sq.settle(sq.decide(mean, sd, n, c, design.min_effect), mean, sd, design, last))
        low, high = sq.interval(mean, sd, n, c)
        entry["challengers"][name] = {"mean": round(mean, 6), "std": round(sd, 6), "low": round(float(low), 6),
                                      "high": round(float(high), 6), "decision": DECISIONS[code]}
        if code != sq.CONTINUE:
            record["decisions"][name] = {"decision": DECISIONS[code], "look": k + 1, "n": n,
                                         "futility": code == sq.INCONCLUSIVE and not last}
    going = len(record["decisions"]) < len(differences)
    record.update(looks=record["looks"] + [entry], look=k + 1, n=n, status="continue" if going else "finished",
                  next_seeds=record["design"]["seeds"][:design.looks[k + 1]] if going else None)
    record["verdict"] = verdict(record)
    return record


def _compared_lists(previous, key) -> list:
    """The seed lists these runs (key: runs_key) were compared on before, as the earlier comparison recorded."""
    before = previous.get("looked") if isinstance(previous.get("looked"), dict) else {}
    return before.get("seeds", []) if before.get("runs") == key else []


def compared_before(previous, key) -> set:
    """The seeds these runs were compared on in earlier comparisons."""
    return {s for seeds in _compared_lists(previous, key) for s in seeds}


def history(previous, key, seeds) -> tuple:
    """(the seed lists compared so far for these runs, this one added; whether an earlier comparison of these
    runs was made on fewer of these seeds: then a fixed-n p-value is descriptive, n was not fixed in advance)."""
    lists = _compared_lists(previous, key)
    current = sorted(seeds)
    grew = [s for s in lists if set(s) < set(current)]
    if current not in lists:
        lists = (lists + [current])[-HISTORY:]
    return {"runs": key, "seeds": lists}, (min(grew, key=len) if grew else None)


def signed(v) -> str:
    """Points with a sign, two decimals, more where two would show a bound just above 0 as +0.00."""
    if abs(v) >= 1e4:  # an early O'Brien-Fleming look's interval: its size, not its digits
        return f"{v:+.3g}"
    return f"{v:+.2f}" if round(v, 2) != 0 or v == 0 else f"{v:+.1g}"


def code(record, name) -> int:
    """The verdict code of one challenger: its decision, or CONTINUE while the design still looks."""
    decided = record["decisions"].get(name)
    return CODES[decided["decision"]] if decided else sq.CONTINUE


def latest(record, name):
    """(the look, its numbers for `name`): the look that decided, or the last one."""
    for look in reversed(record["looks"]):
        if name in look["challengers"]:
            return look, look["challengers"][name]
    raise KeyError(name)


def verdict(record, fixed_n=None) -> str:
    """The design's answer in one sentence per challenger. fixed_n: {challenger: (code, sentence)} of the plain
    comparison, whose reason is given when a design ends undecided because the runs never differed."""
    params, fixed_n = record["design"]["params"], fixed_n or {}
    baseline = params["baseline"]
    # Each challenger's interval is at alpha / challengers, so that all of them hold together at alpha.
    level = f"repeated {100 * (1 - record['design']['alpha_per_comparison']):g}% CI"
    of, budget = record["of"], params["max_seeds"]
    parts = []
    for name in [s for s in params["schedules"] if s != baseline]:
        look, e = latest(record, name)
        ci = f"{level} {signed(e['low'])} to {signed(e['high'])}"
        where = f"look {look['look']} of {of}, {look['n']} seeds"
        decision = e["decision"]
        diff = f"{name} - {baseline} = {e['mean']:+.2f} points"
        if decision == "continue":
            parts.append(f"continue: {diff} ({ci}, {where})")
        elif decision in ("better", "worse"):
            word = "beats" if decision == "better" else "trails"
            parts.append(f"{name} {word} {baseline} by {abs(e['mean']):.2f} points ({ci}; decided at {where})")
        elif decision == "equivalent":
            parts.append(f"{name} and {baseline} are equivalent within +-{params['min_effect']:g} points "
                         f"(difference {e['mean']:+.2f}, {ci}; decided at {where})")
        elif record["decisions"][name]["futility"]:
            parts.append(f"inconclusive: stopped for futility at {where}: {diff} ({ci}); at this spread the "
                         f"budget of {budget} seeds could not decide")
        elif fixed_n.get(name, (None,))[0] == sq.NO_VERDICT:
            parts.append(f"inconclusive after the whole budget of {budget} seeds: {fixed_n[name][1]}")
        else:
            parts.append(f"inconclusive after the whole budget of {budget} seeds: {diff} ({ci})")
    text = "; ".join(parts)
    if record["status"] == "continue":
        text += f"; next look at {len(record['next_seeds'])} seeds (python -m thesislab.sweep runs it)"
    return text
