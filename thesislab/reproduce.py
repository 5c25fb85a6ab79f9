"""Whether a committed run, trained again, came out the same: its model file's md5 against the one dvc.lock
records, and where they differ, the first epoch whose logged numbers differ and what the two computations
differed in (torch, device, portable arithmetic, threads, ...). The sweep (a fresh clone's missing models) and
`python -m thesislab.verify` both say it this way.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from thesislab import files

NOT_COMPARED = set(files.TIMING_KEYS)  # per-epoch seconds differ between identical runs


@dataclass(frozen=True)
class Committed:
    """A committed run: the md5 dvc.lock records for its model file, and where its files are."""

    md5: str
    model: Path
    run: Path


@dataclass(frozen=True)
class Verdict:
    name: str
    identical: bool
    text: str  # one line: "identical to the committed model, bit for bit (md5 ...)" or what differs


def judge(name, model, run, committed: Committed) -> Verdict:
    """The run trained again (its model file and run folder) against the committed one."""
    md5 = files.md5_of(model)
    if md5 == committed.md5:
        return Verdict(name, True, f"identical to the committed model, bit for bit (md5 {md5})")
    parts = [f"differs from the committed model (md5 {md5}, committed {committed.md5})",
             first_difference(files.read_epochs(committed.run), files.read_epochs(run))]
    parts.append(computation_difference(_computation(committed.run), _computation(run)))
    return Verdict(name, False, "; ".join(p for p in parts if p))


def judge_recorded(name, model, recorded_md5) -> Verdict:
    """A committed run retrained in place (an output of it was deleted or edited, its inputs unchanged) against the
    model md5 dvc.lock records: its committed run folder, if any, is what was replaced, so only the bytes are
    compared."""
    md5 = files.md5_of(model)
    if md5 == recorded_md5:
        return Verdict(name, True, f"identical to the committed model, bit for bit (md5 {md5}); its outputs were "
                                   "missing or edited, and are written anew")
    return Verdict(name, False, f"differs from the committed model (md5 {md5}, committed {recorded_md5}); its outputs "
                                "were missing or edited, and are written anew")


def first_difference(committed_rows, rows) -> str:
    """The first epoch whose logged numbers differ, each differing column with both values."""
    for old, new in zip(committed_rows, rows):
        changed = [c for c in files.EPOCH_COLUMNS[1:] if c not in NOT_COMPARED and old.get(c) != new.get(c)]
        if changed:
            diffs = ", ".join(f"{c} {_num(new.get(c))} vs {_num(old.get(c))}" for c in changed[:3])
            return f"first at epoch {old['epoch']}: {diffs}{' ...' if len(changed) > 3 else ''}"
    if len(committed_rows) != len(rows):
        return f"the same numbers for {min(len(rows), len(committed_rows))} epochs, then {len(rows)} epochs here " \
               f"vs {len(committed_rows)} committed"
    return "every logged number the same (the weights differ below the logged digits)"


def computation_difference(committed: dict, here: dict) -> str:
    if not committed:
        return "the committed run does not record how it computed (made before portable arithmetic)"
    changed = [k for k in sorted(set(committed) | set(here)) if committed.get(k) != here.get(k)]
    if not changed:
        return "computed alike (torch, device, kernels, threads): another CPU's arithmetic, or a bug to report"
    return "computed with " + ", ".join(f"{k} {here.get(k)} here vs {committed.get(k)}" for k in changed)


def _computation(run) -> dict:
    try:
        value = json.loads((Path(run) / files.METRICS).read_text()).get("computation")
    except (OSError, ValueError, AttributeError):
        return {}
    return value if isinstance(value, dict) else {}


def _num(v):
    return "none" if v is None else f"{v:g}"
