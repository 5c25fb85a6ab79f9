"""python -m thesislab.show: every experiment's headline in a table that fits your terminal (at most 100 columns).

    python -m thesislab.show              # the workspace, each commit's baseline and its experiments
    python -m thesislab.show --width 80
    python -m thesislab.show --all        # every param that differs between the rows, however wide

It reads `dvc exp show --json` (and each row's metrics/comparison.json, for its verdict sentence) and keeps what a
reader compares: a row per experiment with the params that differ between the rows (the ones that tell most rows
apart first), the seeds and each schedule's mean test accuracy; under it, indented, its verdict sentence.
"""

import argparse
import functools
import json
import shutil
import subprocess
import sys
import textwrap

from thesislab.comparison import experiments
from thesislab.errors import UserError, stage_main

HEADLINE, PARAMS, COMPARISON = "metrics/headline.json", "params.yaml", "metrics/comparison.json"


def rows(shown, comparison_at=None) -> list:
    """[(name, params, headline)] per row of `dvc exp show --json`, baselines then their experiments; each
    headline with its verdict sentence, from the row's comparison.json (comparison_at(rev) reads it)."""
    comparison_at = comparison_at or _comparison_at
    out = []

    def add(entry, name, state=None):
        data = entry.get("data") or {}
        params = ((data.get("params") or {}).get(PARAMS) or {}).get("data") or {}
        metrics = data.get("metrics") or {}
        headline = (metrics.get(HEADLINE) or {}).get("data")
        older = (metrics.get(COMPARISON) or {}).get("data")  # a commit made before headline.json declared it
        if state in UNFINISHED:
            # No results of its own: its commit holds its parent's files (a failed one's too), never shown as its.
            headline, verdict = {}, f"({state})"
        elif headline:
            verdict = (comparison_at(entry.get("rev") or "workspace") or {}).get("verdict")
        elif older:
            headline = {"acc": older.get("mean_test_acc") or {}, "n_seeds": older.get("seeds")}
            verdict = older.get("verdict")
        else:
            headline, verdict = {}, None
        out.append((name, _flat(params), _checked({**headline, "verdict": verdict})))

    for base in shown:
        rev = base.get("rev") or "?"
        add(base, base.get("name") or (rev if rev == "workspace" else rev[:7]))
        for exp in base.get("experiments") or []:
            for rev in exp.get("revs") or []:
                # DVC marks a failed queued experiment by its executor's state and by an error on its row.
                state = (exp.get("executor") or {}).get("state") or ("failed" if rev.get("error") else None)
                add(rev, exp.get("name") or rev.get("name") or (rev.get("rev") or "?")[:7], state)
    return out


UNFINISHED = ("queued", "running", "failed")  # DVC's executor states of an experiment with no results of its own


def _checked(headline) -> dict:
    """A row's numbers as show prints them, or, from a damaged file, none and a note naming what is wrong."""
    acc, seeds, verdict = headline.get("acc"), headline.get("n_seeds"), headline.get("verdict")
    wrong = []
    if acc is not None and not (isinstance(acc, dict) and all(_number(v) or v is None for v in acc.values())):
        wrong.append("acc is not each schedule's accuracy")
    if seeds is not None and not _number(seeds):
        wrong.append("n_seeds is not a number")
    if verdict is not None and not isinstance(verdict, str):
        wrong.append("the verdict is not a sentence")
    if wrong:
        return {"verdict": f"(damaged results: {'; '.join(wrong)}; dvc exp show --json shows the files as they are)"}
    return headline


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _comparison_at(rev):
    """metrics/comparison.json as the workspace or a commit holds it (None where it has none or it is damaged)."""
    try:
        data = json.loads(experiments.Revision(rev, _top()).read(COMPARISON))
    except (OSError, ValueError, UserError):  # FileNotFoundError is an OSError
        return None
    return data if isinstance(data, dict) else None


@functools.cache
def _top():
    """The repository's top folder, so that the workspace's files are found from a subfolder too."""
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True).stdout.strip()
    return top or "."


def _flat(d, prefix=""):
    flat = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            flat.update(_flat(v, f"{prefix}{k}."))
        else:
            flat[prefix + k] = v
    return flat


def changed_params(table) -> list:
    """The params whose values differ between rows (seeds aside: its own column), those that tell most rows
    apart first (then in params.yaml's order)."""
    keys = list(dict.fromkeys(k for _, params, _ in table for k in params))
    distinct = {k: len({json.dumps(p.get(k)) for _, p, _ in table}) for k in keys if k != "seeds"}
    return sorted((k for k, n in distinct.items() if n > 1), key=lambda k: -distinct[k])


CELL = 18  # a longer param value is cut, unless --all
INDENT = "  "  # a row's verdict sentence: on the lines under it, indented, wrapped to the width


def render(table, width=100, everything=False) -> str:
    schedules = list(dict.fromkeys(s for _, _, h in table for s in (h.get("acc") or {})))
    cut = None if everything else CELL

    def column(title, cells):
        cells = [c if cut is None or len(c) <= cut else c[: cut - 3] + "..." for c in cells]
        return [title, *cells], max(len(title), *(len(c) for c in cells))

    fixed = [column("experiment", [name for name, _, _ in table]),
             column("seeds", [_cell(h.get("n_seeds")) for _, _, h in table]),
             *(column(f"{s} %", [_cell((h.get("acc") or {}).get(s), 2) for _, _, h in table]) for s in schedules)]
    used = sum(w + 2 for _, w in fixed)
    shown, hidden = [], []
    for key in changed_params(table):
        col = column(key, [_cell(p.get(key)) for _, p, _ in table])
        if everything or used + col[1] + 2 <= width:
            shown.append(col)
            used += col[1] + 2
        else:
            hidden.append(key)
    columns = [fixed[0], *shown, *fixed[1:]]
    lines = []
    for i in range(len(table) + 1):
        lines.append("  ".join(cells[i].ljust(w) for cells, w in columns).rstrip())
        if i:
            verdict = table[i - 1][2].get("verdict") or "no comparison"
            lines += [INDENT + line for line in textwrap.wrap(verdict, width - len(INDENT), break_on_hyphens=False)]
    if hidden:
        lines += textwrap.wrap(f"(also differ: {', '.join(hidden)}; --all shows them)", width)
    return "\n".join(lines)


def _cell(v, digits=None):
    if v is None:
        return "-"
    if digits is not None and isinstance(v, (int, float)):
        return f"{v:.{digits}f}"
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


@stage_main
def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m thesislab.show", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=min(100, shutil.get_terminal_size((100, 20)).columns))
    ap.add_argument("--all", action="store_true", help="every param that differs between the rows, uncut")
    args = ap.parse_args(argv)
    out = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        raise UserError(f"dvc exp show failed: {(out.stderr or out.stdout).strip().splitlines()[-1:]}")
    print(render(rows(json.loads(out.stdout)), args.width, args.all))


if __name__ == "__main__":
    main()
