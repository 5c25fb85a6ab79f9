"""A sequential design's record in comparison.json: the design as fixed at its first look, every look since
(n, boundary, each challenger's repeated CI and decision) and the seeds the next look needs; and, for a plain
fixed-n comparison, which seed lists were compared before (a p-value after seeds grew is descriptive).

Nothing here re-decides. A look once recorded stays as it was; a design is never changed on seeds it has seen
(changing the plan after seeing data is what invalidates the error rate); seeds that are not the design's next
look are refused, in one line, by check(), which the check stage and the sweep call before any work.
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from thesislab.comparison import sequential as sq
from thesislab.errors import UserError

DECISIONS = {sq.BETTER: "better", sq.WORSE: "worse", sq.EQUIVALENT: "equivalent", sq.CONTINUE: "continue",
             sq.INCONCLUSIVE: "inconclusive"}
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


def recorded(previous, cfg):
    """The record of this experiment's design, or None (no record, or one made with other params). Compared key
    by key over the params both know, so that a param a later version adds (or an older one had) does not by
    itself start a new design over seeds the old one has seen."""
    record = previous.get("sequential")
    if not isinstance(record, dict) or not isinstance(record.get("params"), dict):
        return None
    now = run_params(cfg)
    return record if all(now[k] == v for k, v in record["params"].items() if k in now) else None


def _seen(record) -> set:
    return set(record["design"]["seeds"][:record["looks"][-1]["n"]])


def _changes(record, cfg) -> list:
    old, new = record["design"]["params"], design_params(cfg)
    return [f"{k} {old.get(k)} -> {new[k]}" for k in new if old.get(k) != new[k]]


def _allowed(record) -> list:
    """The seed lists this design can look at now: any look already made, and the next one while it runs."""
    seeds, sizes = record["design"]["seeds"], record["design"]["looks"]
    done = len(record["looks"])
    upto = done + (1 if record["status"] == "continue" else 0)
    return [seeds[:n] for n in sizes[:upto]]


def check(cfg, previous):
    """Before any work: a design changed on seeds it has seen, or seeds that are not one of its looks, is
    refused in one line. No record (or another experiment's): a new design starts at `seeds`."""
    if cfg.compare.sequential.max_seeds is None:
        return None
    record = recorded(previous, cfg)
    if record is None:
        return None
    changes = _changes(record, cfg)
    if changes:
        if _seen(record) & set(cfg.seeds):
            unseen = max(_seen(record) | set(record["design"]["seeds"])) + 1
            raise UserError(f"params.yaml: compare.sequential: the design changed after {len(record['looks'])} "
                            f"look(s) on these seeds ({'; '.join(changes)}); its error rate holds only for the plan "
                            f"fixed in advance: restore it, or start a new design on seeds it has not seen "
                            f"(seeds from {unseen})")
        return None  # a new design, on fresh seeds
    allowed = _allowed(record)
    if set(cfg.seeds) not in [set(a) for a in allowed]:
        state = (f"its next look is at {len(allowed[-1])} seeds ({_span(allowed[-1])})" if record["status"] ==
                 "continue" else f"it finished at look {len(record['looks'])} ({record['verdict']})")
        raise UserError(f"params.yaml: seeds: the sequential design looks at {', '.join(map(str, record['design']['looks']))} "
                        f"seeds and {state}; seeds has {len(cfg.seeds)}: python -m thesislab.sweep runs the looks")
    return record


def _span(seeds):
    return f"{seeds[0]}..{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else ", ".join(map(str, seeds))


def new_record(cfg, runs) -> dict:
    """A design fixed now, before its first look is decided: looks, seeds, boundaries."""
    s = cfg.compare.sequential
    challengers = len(cfg.schedules) - 1
    per_comparison = s.alpha / challengers  # Bonferroni: every challenger's intervals hold together with 1 - alpha
    design, numbers = sq.make_design(len(cfg.seeds), s.every, s.max_seeds, per_comparison, s.spending,
                                     cfg.compare.min_effect, s.futility)
    first = list(cfg.seeds)
    seeds = first + list(range(max(first) + 1, max(first) + 1 + s.max_seeds - len(first)))
    return {"status": "continue", "verdict": None, "look": 0, "of": len(design.looks), "n": 0, "next_seeds": first,
            "params": run_params(cfg), "runs": runs_key(runs),
            "design": {"params": design_params(cfg), "alpha_per_comparison": per_comparison, "seeds": seeds,
                       "looks": list(design.looks), "boundaries": list(design.boundaries), **numbers},
            "decisions": {}, "looks": []}


def design_of(record) -> sq.Design:
    d = record["design"]
    return sq.Design(tuple(d["looks"]), tuple(d["boundaries"]), d["params"]["min_effect"], d["params"]["futility"])


def advance(previous, cfg, runs, differences) -> tuple:
    """(the record after this comparison, a note or None). differences: {challenger: {seed: challenger -
    baseline test accuracy}} over params' seeds. A look already recorded is kept as it was; the design's next
    look is decided and appended."""
    check(cfg, previous)
    record, note = recorded(previous, cfg), None
    if record is None and isinstance(previous.get("sequential"), dict):
        note = "the recorded design's runs were made with other params: a new design starts at these seeds"
    if record is not None and (_changes(record, cfg) or record["runs"] != runs_key(runs)):
        note = ("the runs were made from other code or data than the recorded design's: a new design starts here"
                if not _changes(record, cfg) else "a new design, on seeds the earlier one had not seen")
        record = None
    if record is None:
        record = new_record(cfg, runs)
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
        code = int(sq.decide(mean, sd, n, c, design.min_effect))
        if code == sq.CONTINUE and (last or (design.futility and sq.futile(mean, sd, design))):
            code = sq.INCONCLUSIVE
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


def history(previous, key, seeds) -> tuple:
    """(the seed lists compared so far for these runs, this one added; whether an earlier comparison of these
    runs was made on fewer of these seeds: then a fixed-n p-value is descriptive, n was not fixed in advance)."""
    before = previous.get("looked") if isinstance(previous.get("looked"), dict) else {}
    lists = before.get("seeds", []) if before.get("runs") == key else []
    current = sorted(seeds)
    grew = [s for s in lists if set(s) < set(current)]
    if current not in lists:
        lists = (lists + [current])[-HISTORY:]
    return {"runs": key, "seeds": lists}, (min(grew, key=len) if grew else None)


def signed(v) -> str:
    """Points with a sign, two decimals, more where two would show a bound just above 0 as +0.00."""
    return f"{v:+.2f}" if round(v, 2) != 0 or v == 0 else f"{v:+.1g}"


def code(record, name) -> int:
    """The verdict code of one challenger: its decision, or CONTINUE while the design still looks."""
    decided = record["decisions"].get(name)
    return CODES[decided["decision"]] if decided else sq.CONTINUE


def _latest(record, name):
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
    level = f"repeated {100 * (1 - params['alpha']):g}% CI"
    of, budget = record["of"], params["max_seeds"]
    parts = []
    for name in [s for s in params["schedules"] if s != baseline]:
        look, e = _latest(record, name)
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
